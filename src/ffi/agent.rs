//! The guest agent: `qm_set_agent`, `qm_agent_*`, `qm_exec_result`.

use std::ffi::{c_char, c_int};

use super::boundary::{status_call, value_call};
use super::bytes::qm_bytes;
use super::error::qm_error;
use super::input::{
    bytes, non_empty_str, optional_arguments, optional_str, put, put_string, required_str, timeout,
};
use super::machine::{enter, qm_machine};
use super::status::qm_status;
use crate::agent::ExecResult;
use crate::error::{Error, Result};

/// Give the machine a channel for the QEMU guest agent (`qemu-ga`), on a
/// socketpair the library owns (no paths, no accept race). `device_type`
/// NULL: a virtio-serial bus with a port named `org.qemu.guest_agent.0`
/// (the guest runs `qemu-ga -m virtio-serial`); otherwise
/// `-device DEVICE_TYPE,chardev=...`, e.g. "isa-serial" for one more ISA
/// serial port (the guest runs `qemu-ga -m isa-serial -p /dev/ttySN`).
///
/// Statuses: QM_OK; QM_ERR_INVALID_ARGUMENT (`m` NULL, empty or bad
/// string); QM_ERR_STATE (launched).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_set_agent(
    m: *mut qm_machine,
    device_type: *const c_char,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let device_type = optional_str(device_type, "device_type")?;
        enter(m)?.try_configure(|c| c.agent(device_type).map(drop))
    })
}

/// Wait up to `timeout_ms` until the guest agent answers: a
/// `guest-sync-delimited` handshake (a random id, the 0xFF sentinel,
/// everything before the answer discarded), retried within the deadline,
/// since the agent starts late in the guest's boot.
///
/// Statuses: QM_OK; QM_ERR_TIMEOUT (the message says no agent answered on
/// the channel); QM_ERR_DISCONNECTED (QEMU gone); QM_ERR_ADD_DEVICE (no
/// qm_set_agent()); QM_ERR_STATE (not running); QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_agent_wait_ready(
    m: *mut qm_machine,
    timeout_ms: i64,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let t = timeout(timeout_ms, "timeout_ms")?;
        enter(m)?.agent_wait_ready(t)
    })
}

/// Run guest agent command `cmd` with arguments `args_json` (a JSON object
/// or NULL) and wait up to `timeout_ms` for it. On QM_OK `*return_json` (if
/// not NULL) receives its `return` value as JSON text; free it with
/// qm_string_free(). The channel is synchronized first whenever its state
/// is not known (first use, after a timeout or garbage), so a late reply
/// is never taken for this one. Commands that never reply
/// (`guest-shutdown`, `guest-suspend-*`) return `{}` once QEMU reports the
/// effect (SHUTDOWN, RESET, SUSPEND) or exits. Calls from several threads
/// take turns: one command is on the wire at a time, and each caller's
/// timeout covers its wait for its turn.
///
/// Statuses: QM_OK; QM_ERR_COMMAND (the agent's error: qm_error_qmp_class()
/// and qm_error_qmp_desc()); QM_ERR_TIMEOUT; QM_ERR_PROTOCOL (the agent
/// sent garbage: the next call resynchronizes); QM_ERR_DISCONNECTED;
/// QM_ERR_ADD_DEVICE (no agent channel); QM_ERR_STATE;
/// QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_agent_cmd(
    m: *mut qm_machine,
    cmd: *const c_char,
    args_json: *const c_char,
    timeout_ms: i64,
    return_json: Option<&mut *mut c_char>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let cmd = non_empty_str(cmd, "cmd")?;
        let args = optional_arguments(args_json, "args_json")?;
        let t = timeout(timeout_ms, "timeout_ms")?;
        let value = enter(m)?.agent_cmd(cmd, args.as_ref(), t)?;
        put_string(return_json, value);
        Ok(())
    })
}

/// How a program run with qm_agent_exec() ended, and its output. Free with
/// qm_exec_result_free(). Immutable: readable from any thread.
pub struct qm_exec_result {
    exit_code: c_int,
    /// NUL-terminated (the NUL not counted).
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    truncated: bool,
}

impl qm_exec_result {
    fn new(result: ExecResult) -> qm_exec_result {
        let terminated = |mut bytes: Vec<u8>| {
            bytes.push(0);
            bytes
        };
        qm_exec_result {
            exit_code: result.exit_code,
            stdout: terminated(result.stdout),
            stderr: terminated(result.stderr),
            truncated: result.truncated,
        }
    }
}

/// Collect a NULL-terminated argv.
///
/// # Safety
/// `argv` is NULL or points to an array of string pointers ending with
/// NULL, each a NUL-terminated string, valid for the call.
unsafe fn argv_strings<'a>(argv: *const *const c_char) -> Result<Vec<&'a str>> {
    if argv.is_null() {
        return Err(Error::invalid("`argv` is NULL"));
    }
    let mut out = Vec::new();
    for i in 0.. {
        // SAFETY: NULL-terminated array (this fn's contract); `i` stays
        // below the terminator.
        let p = unsafe { *argv.add(i) };
        if p.is_null() {
            break;
        }
        out.push(required_str(p, &format!("argv[{i}]"))?);
    }
    match out.first().copied() {
        None => Err(Error::invalid("`argv` is empty: it must name a program")),
        Some("") => Err(Error::invalid(
            "`argv[0]` must not be empty: it names the program",
        )),
        Some(_) => Ok(out),
    }
}

/// Run a program in the guest through the agent: `argv` is a
/// NULL-terminated array whose first element is the program (a path, or a
/// name the guest's PATH finds). `input` (`input_len` bytes; NULL with 0
/// for none) is fed to its standard input. The call runs `guest-exec`
/// with captured output, then polls `guest-exec-status` (backing off from
/// 1 ms, no fixed sleep) until the program exits, all within `timeout_ms`.
/// On QM_OK `*result` receives the outcome (exit code or signal, standard
/// output and error as bytes); free it with qm_exec_result_free().
///
/// Statuses: QM_OK (whatever the program's exit status); QM_ERR_TIMEOUT
/// (the program is left running; the message gives its pid in the guest);
/// QM_ERR_COMMAND (the agent could not start it, e.g. no such program);
/// others as qm_agent_cmd().
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_agent_exec(
    m: *mut qm_machine,
    argv: *const *const c_char,
    input: *const u8,
    input_len: usize,
    timeout_ms: i64,
    result: Option<&mut *mut qm_exec_result>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let argv = argv_strings(argv)?;
        let input = if input.is_null() && input_len == 0 {
            None
        } else {
            Some(bytes(input, input_len, "input")?)
        };
        let t = timeout(timeout_ms, "timeout_ms")?;
        let outcome = enter(m)?.agent_exec(&argv, input, t)?;
        if let Some(out) = result {
            *out = Box::into_raw(Box::new(qm_exec_result::new(outcome)));
        }
        Ok(())
    })
}

/// The exit code (>= 0), or minus the signal that ended the program
/// (< 0, e.g. -9). `r` NULL: -1.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_exec_result_exit_code(r: *const qm_exec_result) -> c_int {
    value_call(|| {
        // SAFETY: NULL or a result from qm_agent_exec(), not yet freed.
        unsafe { r.as_ref() }.map_or(-1, |r| r.exit_code)
    })
}

/// The program's standard output: `*len` (if `len` is not NULL) receives
/// its length; the bytes (NUL-terminated too, and possibly holding NULs)
/// are borrowed from `r` until qm_exec_result_free(). `r` NULL: NULL and 0.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_exec_result_stdout(
    r: *const qm_exec_result,
    len: Option<&mut usize>,
) -> *const u8 {
    // SAFETY: NULL or a result from qm_agent_exec(), not yet freed.
    value_call(|| output(unsafe { r.as_ref() }.map(|r| &r.stdout), len))
}

/// The program's standard error, as qm_exec_result_stdout() gives its
/// standard output.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_exec_result_stderr(
    r: *const qm_exec_result,
    len: Option<&mut usize>,
) -> *const u8 {
    // SAFETY: NULL or a result from qm_agent_exec(), not yet freed.
    value_call(|| output(unsafe { r.as_ref() }.map(|r| &r.stderr), len))
}

/// Borrowed NUL-terminated bytes for C, and their length without the NUL.
fn output(bytes: Option<&Vec<u8>>, len: Option<&mut usize>) -> *const u8 {
    match bytes {
        Some(b) => {
            put(len, b.len() - 1);
            b.as_ptr()
        }
        None => {
            put(len, 0);
            std::ptr::null()
        }
    }
}

/// Whether the agent cut the output (it keeps at most 16 MiB per stream).
/// `r` NULL: false.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_exec_result_truncated(r: *const qm_exec_result) -> bool {
    value_call(|| {
        // SAFETY: NULL or a result from qm_agent_exec(), not yet freed.
        unsafe { r.as_ref() }.is_some_and(|r| r.truncated)
    })
}

/// Free a result of qm_agent_exec(). NULL is a no-op.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_exec_result_free(r: *mut qm_exec_result) {
    value_call(|| {
        if !r.is_null() {
            // SAFETY: a pointer from qm_agent_exec(), freed once.
            drop(unsafe { Box::from_raw(r) });
        }
    })
}

/// Read the whole guest file `guest_path` through the agent
/// (`guest-file-open/read/close` in chunks; any size, any bytes). On QM_OK
/// `*data` (if not NULL) receives the bytes; release them with
/// qm_bytes_free(). The guest file is closed whatever happens, also on
/// error or timeout.
///
/// Statuses: QM_OK; QM_ERR_COMMAND (e.g. no such file: the agent's class
/// and description); others as qm_agent_cmd().
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_agent_file_read(
    m: *mut qm_machine,
    guest_path: *const c_char,
    timeout_ms: i64,
    data: Option<&mut qm_bytes>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let path = non_empty_str(guest_path, "guest_path")?;
        let t = timeout(timeout_ms, "timeout_ms")?;
        let content = enter(m)?.agent_file_read(path, t)?;
        put(data, qm_bytes::new(content));
        Ok(())
    })
}

/// Write `len` bytes at `data` (any bytes; NULL with 0 for an empty file)
/// to the guest file `guest_path` (created, or truncated) through the
/// agent, in chunks. The guest file is closed whatever happens.
///
/// Statuses: as qm_agent_file_read().
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_agent_file_write(
    m: *mut qm_machine,
    guest_path: *const c_char,
    data: *const u8,
    len: usize,
    timeout_ms: i64,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let path = non_empty_str(guest_path, "guest_path")?;
        let data = bytes(data, len, "data")?;
        let t = timeout(timeout_ms, "timeout_ms")?;
        enter(m)?.agent_file_write(path, data, t)
    })
}
