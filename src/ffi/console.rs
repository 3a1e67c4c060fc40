//! The serial console.

use std::ffi::{c_char, c_uint};

use super::boundary::status_call;
use super::bytes::qm_bytes;
use super::error::qm_error;
use super::input::{
    non_empty_str, optional_non_empty_str, optional_str, put, put_string, required_str, timeout,
};
use super::machine::{enter, qm_machine, set_text};
use super::status::qm_status;
use crate::error::Error;

/// Give the machine a serial console, as QEMU's `QEMUMachine.set_console`:
/// `device_type` NULL adds `-serial chardev:console` (the machine's default
/// serial device); otherwise `-device DEVICE_TYPE,chardev=console` (e.g.
/// "isa-serial", "virtio-serial" needs a bus). `console_index` N adds N
/// `-serial null` first, so the console is the N-th serial port.
///
/// The console is a socketpair created before QEMU starts and drained by a
/// library thread at all times: no output is lost before the first read,
/// and QEMU never blocks on a full console. Up to 64 MiB of output is kept
/// in memory (the oldest is dropped beyond that, see qm_console_dropped()).
///
/// Statuses: QM_OK, QM_ERR_INVALID_ARGUMENT (`console_index` above 64, bad
/// string), QM_ERR_STATE (launched).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_set_console(
    m: *mut qm_machine,
    device_type: *const c_char,
    console_index: c_uint,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let device_type = optional_str(device_type, "device_type")?;
        enter(m)?.try_configure(|c| c.console(device_type, console_index).map(drop))
    })
}

/// Also append the console output to the file at `path` as it arrives
/// (created if missing, appended to otherwise). Enables the default console
/// if qm_set_console() was not called.
///
/// Statuses: QM_OK, QM_ERR_INVALID_ARGUMENT, QM_ERR_STATE (launched). A
/// file that cannot be opened makes qm_launch() fail with QM_ERR_LAUNCH.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_set_console_log(
    m: *mut qm_machine,
    path: *const c_char,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    set_text(m, path, "path", err, |c, v| {
        c.console_log(v);
    })
}

/// Wait up to `timeout_ms` for `success` to appear in the console output
/// after the read cursor. Matching is byte-wise, so a prompt without a
/// newline matches. On QM_OK `*output` (if not NULL) receives the output
/// from the cursor up to and including the match (invalid UTF-8 replaced
/// by U+FFFD; free with qm_string_free()), and the cursor moves past it.
///
/// Statuses: QM_OK; QM_ERR_CONSOLE_FAILURE (`failure`, if not NULL,
/// appeared first: the message holds the output up to it, and the cursor
/// moves past it); QM_ERR_TIMEOUT (the message holds the output seen so
/// far; the cursor stays); QM_ERR_DISCONNECTED (QEMU is gone and the
/// remaining output does not match; the message holds QEMU's exit status);
/// QM_ERR_STATE (never launched, no console); QM_ERR_INVALID_ARGUMENT
/// (empty pattern, bad string, bad timeout). Output stays readable after
/// QEMU has exited, until the next launch.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_console_wait(
    m: *mut qm_machine,
    success: *const c_char,
    failure: *const c_char,
    timeout_ms: i64,
    output: Option<&mut *mut c_char>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let success = non_empty_str(success, "success")?;
        let failure = optional_non_empty_str(failure, "failure")?;
        let t = timeout(timeout_ms, "timeout_ms")?;
        let text = enter(m)?.console_wait(success, failure, t)?;
        put_string(output, text);
        Ok(())
    })
}

/// Send `len` bytes at `data` (any bytes, NUL included) to the console.
/// Blocks only while QEMU is not reading its console and the socket buffer
/// is full; QEMU exiting, or qm_kill() from another thread, ends the wait.
///
/// Statuses: QM_OK; QM_ERR_DISCONNECTED; QM_ERR_STATE (not running, no
/// console); QM_ERR_INVALID_ARGUMENT (`m` or `data` NULL).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_console_write(
    m: *mut qm_machine,
    data: *const c_char,
    len: usize,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        if data.is_null() {
            return Err(Error::invalid("`data` is NULL"));
        }
        // SAFETY: not NULL; the caller's contract is `len` readable bytes.
        let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) };
        enter(m)?.console_write(bytes)
    })
}

/// Type `command` followed by a carriage return on the console, then wait
/// as qm_console_wait() does; one deadline of `timeout_ms` covers both.
/// The output returned includes the echo of the command.
///
/// Statuses: as qm_console_wait().
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_console_exec(
    m: *mut qm_machine,
    command: *const c_char,
    success: *const c_char,
    failure: *const c_char,
    timeout_ms: i64,
    output: Option<&mut *mut c_char>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let command = required_str(command, "command")?;
        let success = non_empty_str(success, "success")?;
        let failure = optional_non_empty_str(failure, "failure")?;
        let t = timeout(timeout_ms, "timeout_ms")?;
        let text = enter(m)?.console_exec(command, success, failure, t)?;
        put_string(output, text);
        Ok(())
    })
}

/// The console output after the read cursor, without waiting (possibly
/// ""); the cursor moves to the end. On QM_OK `*output` (if not NULL)
/// receives it; free with qm_string_free().
///
/// Statuses: QM_OK, QM_ERR_STATE (never launched, no console),
/// QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_console_read(
    m: *mut qm_machine,
    output: Option<&mut *mut c_char>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let text = enter(m)?.console_read()?;
        put_string(output, text);
        Ok(())
    })
}

/// As qm_console_read(), byte-exact: the console output after the read
/// cursor, NUL bytes and invalid UTF-8 included, without waiting; the
/// cursor moves to the end. On QM_OK `*out` (if not NULL) receives the
/// bytes (possibly none); release them with qm_bytes_free().
///
/// Statuses: QM_OK, QM_ERR_STATE (never launched), QM_ERR_ADD_DEVICE (no
/// console), QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_console_read_bytes(
    m: *mut qm_machine,
    out: Option<&mut qm_bytes>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let bytes = enter(m)?.console_read_bytes()?;
        put(out, qm_bytes::new(bytes));
        Ok(())
    })
}

/// How many console bytes this run dropped because more than 64 MiB of
/// output was waiting to be read. On QM_OK `*bytes` (if not NULL) receives
/// the count.
///
/// Statuses: QM_OK, QM_ERR_INVALID_ARGUMENT (`m` NULL).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_console_dropped(
    m: *const qm_machine,
    bytes: Option<&mut u64>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        put(bytes, enter(m)?.console_dropped());
        Ok(())
    })
}
