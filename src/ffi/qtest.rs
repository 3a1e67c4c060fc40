//! qtest: `qm_set_qtest` and the `qm_qtest_*` calls. Every call is bounded
//! by the machine's qtest timeout (qm_set_qtest_timeout(), default 30 s).

use std::ffi::{c_char, c_int, c_uint};

use super::boundary::status_call;
use super::error::qm_error;
use super::input::{bytes, non_empty_str, put, put_string, required_str, timeout};
use super::machine::{enter, qm_machine};
use super::status::qm_status;
use crate::error::Error;

/// Run QEMU under qtest, QEMU's device-test protocol: no guest code runs,
/// and the test reads and writes guest memory and I/O ports, steps the
/// virtual clock and watches interrupt lines. The protocol runs on a
/// socketpair the library owns (`-qtest`, its log off); `-accel qtest` is
/// added unless the arguments or the machine type choose an accelerator.
/// QMP stays available beside it.
///
/// QEMU needs its qtest accelerator module for `-accel qtest`; Debian and
/// Ubuntu delete it (qm_launch() then fails with QM_ERR_LAUNCH saying so
/// and how to get it: scripts/build-qtest-accel.sh builds it from Debian's
/// source package; qm_set_env(m, "QEMU_MODULE_DIR", dir) points QEMU at
/// it). With `-accel tcg -S` instead, memory, port and IRQ calls work, and
/// the clock calls fail with QM_ERR_COMMAND saying why.
///
/// Statuses: QM_OK, QM_ERR_INVALID_ARGUMENT (`m` NULL), QM_ERR_STATE
/// (launched).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_set_qtest(
    m: *mut qm_machine,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        enter(m)?.configure(|c| {
            c.qtest();
        })
    })
}

/// The bound of every qtest call: -1 forever, else milliseconds. Default
/// 30000.
///
/// Statuses: QM_OK, QM_ERR_INVALID_ARGUMENT, QM_ERR_STATE (launched).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_set_qtest_timeout(
    m: *mut qm_machine,
    timeout_ms: i64,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let t = timeout(timeout_ms, "timeout_ms")?;
        enter(m)?.configure(|c| {
            c.qtest_timeout(t);
        })
    })
}

/// Send one qtest protocol line (words separated by single spaces, no
/// newline: checked, since QEMU aborts on malformed input) and give QEMU's
/// reply, "OK" or "OK ...", in `*reply` (if not NULL; free with
/// qm_string_free()). For commands the typed calls below do not cover.
///
/// Statuses (for every qm_qtest_* call): QM_OK; QM_ERR_COMMAND (QEMU
/// answered FAIL or ERR: qm_error_qmp_class() gives "FAIL" or "ERR",
/// qm_error_qmp_desc() QEMU's text); QM_ERR_TIMEOUT (the qtest timeout
/// passed); QM_ERR_DISCONNECTED (QEMU gone); QM_ERR_PROTOCOL (QEMU sent
/// something that is not qtest); QM_ERR_ADD_DEVICE (no qm_set_qtest());
/// QM_ERR_STATE (not running); QM_ERR_INVALID_ARGUMENT (checked before
/// anything is sent).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_qtest_raw(
    m: *mut qm_machine,
    line: *const c_char,
    reply: Option<&mut *mut c_char>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let line = required_str(line, "line")?;
        let text = enter(m)?.qtest_raw(line)?;
        put_string(reply, text);
        Ok(())
    })
}

/// Read `size` bytes (1, 2, 4 or 8) of guest memory at `addr` (guest
/// byte order) into `*value` (if not NULL). Statuses: as qm_qtest_raw().
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_qtest_read(
    m: *mut qm_machine,
    addr: u64,
    size: c_uint,
    value: Option<&mut u64>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        put(value, enter(m)?.qtest_read(addr, size)?);
        Ok(())
    })
}

/// Write `size` bytes (1, 2, 4 or 8) of guest memory at `addr`; `value`
/// must fit. Statuses: as qm_qtest_raw().
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_qtest_write(
    m: *mut qm_machine,
    addr: u64,
    size: c_uint,
    value: u64,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || enter(m)?.qtest_write(addr, size, value))
}

/// Read I/O port `port`, `size` bytes (1, 2 or 4) wide, into `*value` (if
/// not NULL). Statuses: as qm_qtest_raw().
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_qtest_in(
    m: *mut qm_machine,
    port: u16,
    size: c_uint,
    value: Option<&mut u32>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        put(value, enter(m)?.qtest_in(port, size)?);
        Ok(())
    })
}

/// Write I/O port `port`, `size` bytes (1, 2 or 4) wide; `value` must fit.
/// Statuses: as qm_qtest_raw().
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_qtest_out(
    m: *mut qm_machine,
    port: u16,
    size: c_uint,
    value: u32,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || enter(m)?.qtest_out(port, size, value))
}

/// Read `len` bytes of guest memory at `addr` into `buf` (any length; in
/// chunks of the protocol's bulk `b64read`). `buf` is written only on
/// QM_OK. Statuses: as qm_qtest_raw().
///
/// # Safety
/// The pointer rules of the header's conventions apply; `buf` holds `len`
/// writable bytes.
#[no_mangle]
pub unsafe extern "C" fn qm_qtest_memread(
    m: *mut qm_machine,
    addr: u64,
    buf: *mut u8,
    len: usize,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        if buf.is_null() && len > 0 {
            return Err(Error::invalid("`buf` is NULL"));
        }
        let mut data = vec![0u8; len];
        enter(m)?.qtest_memread(addr, &mut data)?;
        if len > 0 {
            // SAFETY: not NULL, `len` writable bytes (the caller's contract).
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf, len) };
        }
        Ok(())
    })
}

/// Write `len` bytes at `buf` to guest memory at `addr` (any length; in
/// chunks of `b64write`). Statuses: as qm_qtest_raw().
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_qtest_memwrite(
    m: *mut qm_machine,
    addr: u64,
    buf: *const u8,
    len: usize,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let data = bytes(buf, len, "buf")?;
        enter(m)?.qtest_memwrite(addr, data)
    })
}

/// Fill `len` bytes of guest memory at `addr` with `byte`. Statuses: as
/// qm_qtest_raw().
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_qtest_memset(
    m: *mut qm_machine,
    addr: u64,
    byte: u8,
    len: usize,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || enter(m)?.qtest_memset(addr, byte, len))
}

/// Advance the virtual clock by `ns` nanoseconds, running the timers that
/// fall due; `ns` < 0: to the next timer deadline. `*now_ns` (if not NULL)
/// receives the new virtual time. Needs `-accel qtest`: otherwise
/// QM_ERR_COMMAND saying so. Statuses: as qm_qtest_raw().
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_qtest_clock_step(
    m: *mut qm_machine,
    ns: i64,
    now_ns: Option<&mut i64>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let step = (ns >= 0).then_some(ns);
        put(now_ns, enter(m)?.qtest_clock_step(step)?);
        Ok(())
    })
}

/// Move the virtual clock to `ns` (if that is later; it never goes back)
/// and give the new virtual time in `*now_ns` (if not NULL). Needs
/// `-accel qtest`. Statuses: as qm_qtest_raw().
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_qtest_clock_set(
    m: *mut qm_machine,
    ns: i64,
    now_ns: Option<&mut i64>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        put(now_ns, enter(m)?.qtest_clock_set(ns)?);
        Ok(())
    })
}

/// Intercept the GPIO input lines of the device at `qom_path` (e.g.
/// "ioapic"): from now on QEMU reports their changes, which
/// qm_qtest_get_irq() reads. One device can be intercepted per run.
/// Statuses: as qm_qtest_raw().
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_qtest_irq_intercept_in(
    m: *mut qm_machine,
    qom_path: *const c_char,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let path = non_empty_str(qom_path, "qom_path")?;
        enter(m)?.qtest_irq_intercept_in(path)
    })
}

/// Intercept the GPIO output lines of the device at `qom_path`.
/// Statuses: as qm_qtest_raw().
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_qtest_irq_intercept_out(
    m: *mut qm_machine,
    qom_path: *const c_char,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let path = non_empty_str(qom_path, "qom_path")?;
        enter(m)?.qtest_irq_intercept_out(path)
    })
}

/// Whether intercepted line `line` is raised, as QEMU last reported it
/// (reports that have arrived are routed first; never waits), in
/// `*raised` (if not NULL). Statuses: as qm_qtest_raw().
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_qtest_get_irq(
    m: *mut qm_machine,
    line: c_int,
    raised: Option<&mut bool>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        put(raised, enter(m)?.qtest_get_irq(line)?);
        Ok(())
    })
}

/// Set input line `line` of the GPIO list `name` of the device at
/// `qom_path` to `level`. Statuses: as qm_qtest_raw().
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_qtest_set_irq_in(
    m: *mut qm_machine,
    qom_path: *const c_char,
    name: *const c_char,
    line: c_int,
    level: c_int,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let path = non_empty_str(qom_path, "qom_path")?;
        let name = non_empty_str(name, "name")?;
        enter(m)?.qtest_set_irq_in(path, name, line, level)
    })
}
