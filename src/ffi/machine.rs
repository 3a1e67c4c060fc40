//! `qm_machine`: create, configure, launch, shut down, inspect.

use std::ffi::{c_char, c_int};
use std::ops::Deref;

use super::boundary::{status_call, value_call};
use super::error::qm_error;
use super::gate::{Gate, Pass};
use super::input::{borrowed_fd, optional_str, put, put_json, put_string, required_str, timeout};
use super::status::qm_status;
use crate::error::{Error, Result};
use crate::machine::{Config, Machine, MonitorAddress};
use crate::process::ExitStatus;

/// A QEMU virtual machine: its configuration, and while launched, the QEMU
/// process with its QMP connection. Create with qm_machine_new(), free with
/// qm_machine_free(). Opaque.
pub struct qm_machine {
    machine: Machine,
    gate: Gate,
}

/// A checked machine pointer, valid for one call.
pub(crate) struct Entered<'a> {
    machine: &'a Machine,
    _pass: Pass<'a>,
}

impl Deref for Entered<'_> {
    type Target = Machine;
    fn deref(&self) -> &Machine {
        self.machine
    }
}

/// A new handle for C, freed by qm_machine_free().
fn new_handle(machine: Machine) -> *mut qm_machine {
    Box::into_raw(Box::new(qm_machine {
        machine,
        gate: Gate::default(),
    }))
}

/// Check `m` and register a call on it. A forked child's copy of a machine
/// is refused before its locks are touched (see `owner.rs`).
///
/// # Safety
/// `m` is NULL or a pointer from qm_machine_new() whose qm_machine_free()
/// has not begun.
pub(crate) unsafe fn enter<'a>(m: *const qm_machine) -> Result<Entered<'a>> {
    enter_named(m, "m")
}

/// [`enter`] for a machine parameter not called `m` (the message names
/// it).
///
/// # Safety
/// As [`enter`].
pub(crate) unsafe fn enter_named<'a>(m: *const qm_machine, name: &str) -> Result<Entered<'a>> {
    // SAFETY: NULL or a live handle (this fn's contract).
    let handle =
        unsafe { m.as_ref() }.ok_or_else(|| Error::invalid(format!("`{name}` is NULL")))?;
    handle.machine.check_owner()?;
    Ok(Entered {
        machine: &handle.machine,
        _pass: handle.gate.enter("machine")?,
    })
}

/// Create a machine that will run `binary` (a path, or a name looked up in
/// PATH; not checked until qm_launch()). On QM_OK, `*out` receives the new
/// machine; free it with qm_machine_free().
///
/// Defaults: arguments `-display none -vga none` plus the QMP monitor, a
/// temporary directory under $TMPDIR (or /tmp), the log in that directory,
/// a 30 s launch timeout, QMP enabled.
///
/// Statuses: QM_OK, QM_ERR_INVALID_ARGUMENT (`binary` or `out` NULL,
/// `binary` not UTF-8).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_machine_new(
    binary: *const c_char,
    out: Option<&mut *mut qm_machine>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let binary = required_str(binary, "binary")?;
        let out = out.ok_or_else(|| Error::invalid("`out` is NULL"))?;
        *out = new_handle(Machine::new(Config::new(binary)));
        Ok(())
    })
}

/// Free a machine. If QEMU is running it is killed (SIGKILL) and reaped,
/// and its temporary directory removed (the context-manager guarantee); a
/// launch in progress in another thread is cancelled. NULL is a no-op.
///
/// Must be the last call on `m`. Calls already blocked in other threads
/// (event or console waits, qm_wait(), a launch, a shutdown) are woken —
/// they return QM_ERR_DISCONNECTED or a similar error — and qm_machine_free
/// waits for them to return before releasing the memory. Starting a call on
/// `m` after qm_machine_free has begun is undefined behaviour.
///
/// In a process forked from the one that created `m` (fork without exec),
/// the machine is the parent's: freeing this copy releases its memory and
/// closes this process's copies of its descriptors, and nothing else (no
/// signal, no reaping, no file removed). Every other call on such a copy is
/// QM_ERR_STATE.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_machine_free(m: *mut qm_machine) {
    if m.is_null() {
        return;
    }
    value_call(|| {
        // SAFETY: a pointer from qm_machine_new(), freed once (the caller's
        // contract).
        let handle = unsafe { &*m };
        if handle.machine.check_owner().is_ok() {
            handle.gate.close();
            // Wakes every blocked call: their connections close, our QEMU
            // is gone (an attached one is only disconnected from).
            handle.machine.release();
            handle.gate.wait_idle();
        }
        // SAFETY: no call is in flight and none may start (contract above);
        // in a forked child the threads that were in calls do not exist.
        drop(unsafe { Box::from_raw(m) });
    })
}

/// # Safety
/// As [`enter`].
unsafe fn configure(m: *mut qm_machine, change: impl FnOnce(&mut Config)) -> Result<()> {
    enter(m)?.configure(change)
}

/// The body of a setter taking one required string: check it (the message
/// names `name`), then apply it to the configuration.
///
/// # Safety
/// As [`enter`]; `value` as [`required_str`].
pub(crate) unsafe fn set_text(
    m: *mut qm_machine,
    value: *const c_char,
    name: &str,
    err: Option<&mut *mut qm_error>,
    apply: impl FnOnce(&mut Config, &str),
) -> qm_status {
    status_call(err, || {
        let value = required_str(value, name)?;
        configure(m, |c| apply(c, value))
    })
}

/// Append one argument to QEMU's command line (after the library's own).
/// QEMU gets it as one argv element: no shell is involved, no quoting
/// needed.
///
/// Statuses: QM_OK, QM_ERR_INVALID_ARGUMENT, QM_ERR_STATE (launched).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_add_arg(
    m: *mut qm_machine,
    arg: *const c_char,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    set_text(m, arg, "arg", err, |c, v| {
        c.arg(v);
    })
}

/// Append one word to the wrapper command QEMU runs under, e.g. "valgrind",
/// or "strace", "-f", "-o", "trace.txt". The wrapper is exec'd with QEMU's
/// command line after it.
///
/// Statuses: QM_OK, QM_ERR_INVALID_ARGUMENT, QM_ERR_STATE (launched).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_add_wrapper_arg(
    m: *mut qm_machine,
    arg: *const c_char,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    set_text(m, arg, "arg", err, |c, v| {
        c.wrapper_arg(v);
    })
}

/// Name of the machine, used for its log file (`<name>.log`) and sockets.
/// Default "qemu-<pid>-<n>".
///
/// Statuses: QM_OK, QM_ERR_INVALID_ARGUMENT, QM_ERR_STATE (launched).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_set_name(
    m: *mut qm_machine,
    name: *const c_char,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let name = required_str(name, "name")?;
        enter(m)?.try_configure(|c| c.name(name).map(drop))
    })
}

/// Set environment variable `name` to `value` for QEMU only (`value` NULL:
/// remove `name` from QEMU's environment). QEMU otherwise inherits this
/// process's environment as it is at qm_launch() (e.g. `QEMU_MODULE_DIR`
/// for modules built elsewhere). Setting a name again replaces the earlier
/// setting.
///
/// Statuses: QM_OK; QM_ERR_INVALID_ARGUMENT (`name` NULL, empty or holding
/// '=', bad string); QM_ERR_STATE (launched).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_set_env(
    m: *mut qm_machine,
    name: *const c_char,
    value: *const c_char,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let name = required_str(name, "name")?;
        let value = optional_str(value, "value")?;
        enter(m)?.try_configure(|c| c.env(name, value).map(drop))
    })
}

/// Directory in which each launch creates its private temporary directory
/// (mode 0700, removed at shutdown). Default: $TMPDIR, else /tmp. The
/// directory must exist at launch.
///
/// Statuses: QM_OK, QM_ERR_INVALID_ARGUMENT, QM_ERR_STATE (launched).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_set_base_temp_dir(
    m: *mut qm_machine,
    dir: *const c_char,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    set_text(m, dir, "dir", err, |c, v| {
        c.base_temp_dir(v);
    })
}

/// Directory for QEMU's log file `<name>.log` (stdout and stderr), which is
/// then kept after shutdown. Default: the temporary directory (the log is
/// removed with it, but qm_log() still returns it). Must exist at launch.
///
/// Statuses: QM_OK, QM_ERR_INVALID_ARGUMENT, QM_ERR_STATE (launched).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_set_log_dir(
    m: *mut qm_machine,
    dir: *const c_char,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    set_text(m, dir, "dir", err, |c, v| {
        c.log_dir(v);
    })
}

/// Adds `-machine MACHINE_TYPE` (e.g. "none", "pc", "q35,accel=tcg").
///
/// Statuses: QM_OK, QM_ERR_INVALID_ARGUMENT, QM_ERR_STATE (launched).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_set_machine_type(
    m: *mut qm_machine,
    machine_type: *const c_char,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    set_text(m, machine_type, "machine_type", err, |c, v| {
        c.machine_type(v);
    })
}

/// Whether QEMU gets a QMP monitor (default true). Without one, QMP and
/// event calls return QM_ERR_STATE, qm_launch() returns as soon as QEMU is
/// started, and qm_shutdown() sends SIGTERM and waits (then SIGKILL). Note
/// that qm_launch() then returns before QEMU has installed its signal
/// handlers: a SIGTERM in the first few milliseconds terminates it by the
/// default action, and qm_shutdown() reports QM_ERR_ABNORMAL_SHUTDOWN
/// (signal 15).
///
/// Statuses: QM_OK, QM_ERR_INVALID_ARGUMENT (`m` NULL), QM_ERR_STATE.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_set_qmp_enabled(
    m: *mut qm_machine,
    enabled: bool,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        configure(m, |c| {
            c.qmp(enabled);
        })
    })
}

/// How long qm_launch() waits for QEMU to start and complete QMP
/// negotiation: -1 forever, else milliseconds. Default 30000.
///
/// Statuses: QM_OK, QM_ERR_INVALID_ARGUMENT, QM_ERR_STATE (launched).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_set_launch_timeout(
    m: *mut qm_machine,
    timeout_ms: i64,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let t = timeout(timeout_ms, "timeout_ms")?;
        configure(m, |c| {
            c.launch_timeout(t);
        })
    })
}

/// Adds `-monitor null`: QEMU creates no default human monitor.
///
/// Statuses: QM_OK, QM_ERR_INVALID_ARGUMENT (`m` NULL), QM_ERR_STATE.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_add_monitor_null(
    m: *mut qm_machine,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        configure(m, |c| {
            c.add_monitor_null();
        })
    })
}

/// Start QEMU and complete QMP negotiation (greeting, qmp_capabilities).
/// Blocks up to the launch timeout (qm_set_launch_timeout()). A QEMU that
/// exits early is reported as soon as it has exited.
///
/// A launch clears the previous run's events, console output and exit
/// status. On failure nothing is left behind: no process, socket,
/// temporary directory or descriptor.
///
/// Statuses: QM_OK; QM_ERR_LAUNCH (bad option, missing binary, QEMU exited,
/// no greeting in time — the message holds the exit status, the full
/// command line and QEMU's output); QM_ERR_STATE (already running);
/// QM_ERR_INVALID_ARGUMENT (`m` NULL).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_launch(
    m: *mut qm_machine,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || enter(m)?.launch())
}

/// Shut QEMU down gracefully: send `quit` (unless a `quit` already went
/// through; without QMP, SIGTERM), then wait up to `timeout_ms` for QEMU to
/// exit — one deadline for the reply to `quit` and the exit. If that fails
/// QEMU is killed (SIGKILL) and reaped; with `timeout_ms` 0 QEMU has no
/// time to exit, so a running QEMU is always killed. In every case
/// the temporary directory, sockets and descriptors are cleaned up; the
/// exit status, log and queued events stay readable. Not launched: no-op.
///
/// Statuses: QM_OK only if QEMU exited with status 0 without being killed
/// by the library (after our `quit`, an earlier one, or on its own);
/// QM_ERR_ABNORMAL_SHUTDOWN otherwise, saying why (timeout, signal,
/// non-zero status); QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_shutdown(
    m: *mut qm_machine,
    timeout_ms: i64,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let t = timeout(timeout_ms, "timeout_ms")?;
        enter(m)?.shutdown(t)
    })
}

/// Kill QEMU with SIGKILL, reap it and clean up. Also interrupts a launch,
/// shutdown or wait blocked in another thread. Not launched: no-op.
///
/// Statuses: QM_OK, QM_ERR_INVALID_ARGUMENT (`m` NULL), QM_ERR_STATE (an
/// attached machine: its QEMU is not ours to kill).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_kill(m: *mut qm_machine, err: Option<&mut *mut qm_error>) -> qm_status {
    status_call(err, || enter(m)?.kill())
}

/// Wait up to `timeout_ms` for QEMU to exit on its own (e.g. the guest
/// powered off), then clean up as qm_shutdown() does. Succeeds whatever the
/// exit status (read it with qm_exit_code()). Not launched: no-op.
///
/// Statuses: QM_OK; QM_ERR_TIMEOUT (QEMU still runs and is left running:
/// `timeout_ms` 0 polls); QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_wait(
    m: *mut qm_machine,
    timeout_ms: i64,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let t = timeout(timeout_ms, "timeout_ms")?;
        enter(m)?.wait(t)
    })
}

/// Whether QEMU is running. `m` NULL: false. Never blocks for long.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_is_running(m: *const qm_machine) -> bool {
    value_call(|| enter(m).is_ok_and(|m| m.is_running()))
}

/// QEMU's process id while it runs; -1 when not running or `m` is NULL.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_pid(m: *const qm_machine) -> c_int {
    value_call(|| enter(m).ok().and_then(|m| m.pid()).unwrap_or(-1))
}

/// How QEMU ended: on QM_OK, `*exit_code` (if not NULL) receives the exit
/// status (>= 0) or minus the signal that killed it (< 0, e.g. -9).
/// Readable after any exit, including a failed launch in which QEMU ran.
///
/// Statuses: QM_OK; QM_ERR_STATE (still running, never started, or the
/// status was collected outside the library); QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_exit_code(
    m: *const qm_machine,
    exit_code: Option<&mut c_int>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let m = enter(m)?;
        match m.exit_status() {
            Some(status @ ExitStatus::Unknown) => Err(Error::state(format!("QEMU {status}"))),
            Some(status) => {
                put(exit_code, status.code().expect("known status"));
                Ok(())
            }
            None if m.is_running() => Err(Error::state("QEMU is still running")),
            None => Err(Error::state("QEMU has not been started")),
        }
    })
}

/// QEMU's stdout and stderr, so far or of the last run (kept after
/// shutdown until the next launch). On QM_OK `*log` (if not NULL) receives
/// the text (invalid UTF-8 replaced by U+FFFD); free it with
/// qm_string_free().
///
/// Statuses: QM_OK, QM_ERR_STATE (never launched), QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_log(
    m: *const qm_machine,
    log: Option<&mut *mut c_char>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let text = enter(m)?.log()?;
        put_string(log, text);
        Ok(())
    })
}

/// The per-run temporary directory (mode 0700; removed at shutdown), for
/// files the test wants QEMU to use. On QM_OK `*dir` (if not NULL) receives
/// the path; free it with qm_string_free().
///
/// Statuses: QM_OK, QM_ERR_STATE (not launched), QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_temp_dir(
    m: *const qm_machine,
    dir: Option<&mut *mut c_char>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let path = enter(m)?
            .temp_dir()
            .ok_or_else(|| Error::state("the machine is not launched"))?;
        put_string(dir, path.to_string_lossy().into_owned());
        Ok(())
    })
}

/// The full command line of the current or last run (wrapper, binary, the
/// library's arguments, yours), as a JSON array of strings in `*argv_json`
/// (if not NULL; free with qm_string_free()). For an attached machine, the
/// address it is attached to.
///
/// Statuses: QM_OK, QM_ERR_STATE (never launched), QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_command_line(
    m: *const qm_machine,
    argv_json: Option<&mut *mut c_char>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let argv = enter(m)?
            .command_line()
            .ok_or_else(|| Error::state("the machine has not been launched"))?;
        put_json(argv_json, &serde_json::Value::from(argv));
        Ok(())
    })
}

/// Pass descriptor `fd` to QEMU at launch: adds `-add-fd
/// fd=N,set=FDSET,opaque=OPAQUE[,OPTS]`, usable inside QEMU as
/// `/dev/fdset/FDSET` (e.g. `-drive file=/dev/fdset/1,...`). `opts` (may be
/// NULL) is appended as is, for QEMU versions that accept more `-add-fd`
/// options (QEMU 7.2 knows only fd, set and opaque); commas in `opaque` are
/// escaped for QEMU.
///
/// The library keeps its own duplicate of `fd` for every later launch, so
/// the caller may close `fd` right after this call. The duplicate is
/// close-on-exec in this process and made inheritable only in QEMU's child
/// process: another machine launched at the same time from another thread,
/// or any other program the host starts, never inherits it.
///
/// Statuses: QM_OK; QM_ERR_INVALID_ARGUMENT (`fd` not open, negative
/// `fdset`, bad string); QM_ERR_STATE (launched).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_add_fd(
    m: *mut qm_machine,
    fd: c_int,
    fdset: c_int,
    opaque: *const c_char,
    opts: *const c_char,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let opaque = required_str(opaque, "opaque")?;
        let opts = optional_str(opts, "opts")?;
        let fdset = u32::try_from(fdset)
            .map_err(|_| Error::invalid(format!("`fdset` must not be negative, got {fdset}")))?;
        let fd = borrowed_fd(fd, "fd")?;
        enter(m)?.try_configure(|c| c.add_fd(fd, fdset, opaque, opts).map(drop))
    })
}

/// Put the QMP monitor on a Unix socket at `path` instead of a socketpair:
/// at launch the library listens there before starting QEMU
/// (`-chardev socket,path=PATH`), QEMU connects, and the library accepts
/// within the launch timeout while watching QEMU (QEMU dying is
/// QM_ERR_LAUNCH at once). The socket file is removed at shutdown. A path
/// that exists already makes the launch fail.
///
/// Statuses: QM_OK; QM_ERR_INVALID_ARGUMENT (NULL, not UTF-8, empty, or
/// longer than sun_path allows: 107 bytes); QM_ERR_STATE (launched).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_set_monitor_unix(
    m: *mut qm_machine,
    path: *const c_char,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let address = MonitorAddress::unix(required_str(path, "path")?)?;
        enter(m)?.configure(|c| {
            c.monitor(address);
        })
    })
}

/// Put the QMP monitor on TCP: at launch the library listens on exactly
/// `host` (e.g. "127.0.0.1"; never a wildcard unless you pass one) and
/// `port` (0: any free port, see qm_monitor_port()), and QEMU connects to
/// it (`-chardev socket,host=HOST,port=PORT`). Descriptors cannot be passed
/// over TCP (qm_send_fd() is QM_ERR_STATE). A port in use makes qm_launch()
/// fail with QM_ERR_LAUNCH.
///
/// Statuses: QM_OK; QM_ERR_INVALID_ARGUMENT (NULL, empty or bad host);
/// QM_ERR_STATE (launched).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_set_monitor_tcp(
    m: *mut qm_machine,
    host: *const c_char,
    port: u16,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let address = MonitorAddress::tcp(required_str(host, "host")?, port)?;
        enter(m)?.configure(|c| {
            c.monitor(address);
        })
    })
}

/// The TCP port of a TCP monitor (the one the system picked when 0 was
/// asked for), once launched: on QM_OK `*port` (if not NULL) receives it.
///
/// Statuses: QM_OK; QM_ERR_STATE (not launched, or the monitor is not on
/// TCP); QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_monitor_port(
    m: *const qm_machine,
    port: Option<&mut u16>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let p = enter(m)?
            .monitor_port()
            .ok_or_else(|| Error::state("no TCP monitor has been launched"))?;
        put(port, p);
        Ok(())
    })
}

/// Append every QMP line sent and received to the file at `path` (created
/// if missing): one line each, `SECONDS.MICROS >> LINE` for sent and `<<`
/// for received, with CLOCK_MONOTONIC timestamps; `##` lines are comments.
/// Applies to every later launch, and at once to an open connection (so it
/// also works on an attached machine).
///
/// Statuses: QM_OK; QM_ERR_INVALID_ARGUMENT; QM_ERR_IO (the file cannot be
/// opened for a live connection; for a later launch it is QM_ERR_LAUNCH).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_set_qmp_trace(
    m: *mut qm_machine,
    path: *const c_char,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let path = required_str(path, "path")?;
        enter(m)?.set_qmp_trace(path)
    })
}

/// Connect to a QEMU started elsewhere whose QMP monitor listens on the
/// Unix socket `path` (e.g. `-qmp unix:PATH,server=on,wait=off`), and
/// negotiate within `timeout_ms`. On QM_OK `*out` receives a machine to
/// use as a launched one: QMP commands and events work; qm_shutdown()
/// sends `quit` and waits for QEMU to close the connection (QM_ERR_TIMEOUT
/// if it does not); qm_wait() waits for the connection to close; qm_pid()
/// is -1 and qm_log() QM_ERR_STATE; qm_kill() is QM_ERR_STATE (the QEMU is
/// not ours); configuring or launching it is QM_ERR_STATE. qm_machine_free()
/// disconnects without stopping QEMU. Free it with qm_machine_free().
///
/// Statuses: QM_OK; QM_ERR_IO (cannot connect); QM_ERR_TIMEOUT;
/// QM_ERR_DISCONNECTED; QM_ERR_PROTOCOL (not a QMP server);
/// QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_attach_unix(
    path: *const c_char,
    timeout_ms: i64,
    out: Option<&mut *mut qm_machine>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let path = required_str(path, "path")?;
        let t = timeout(timeout_ms, "timeout_ms")?;
        let out = out.ok_or_else(|| Error::invalid("`out` is NULL"))?;
        *out = new_handle(Machine::attach_unix(path, t)?);
        Ok(())
    })
}

/// Connect to a QEMU whose QMP monitor listens on TCP at `host`:`port`,
/// possibly on another host (e.g. `-qmp tcp:0.0.0.0:4444,server=on,wait=off`
/// there). As qm_attach_unix(), except that descriptors cannot be passed.
///
/// Statuses: as qm_attach_unix().
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_attach_tcp(
    host: *const c_char,
    port: u16,
    timeout_ms: i64,
    out: Option<&mut *mut qm_machine>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let host = required_str(host, "host")?;
        let t = timeout(timeout_ms, "timeout_ms")?;
        let out = out.ok_or_else(|| Error::invalid("`out` is NULL"))?;
        *out = new_handle(Machine::attach_tcp(host, port, t)?);
        Ok(())
    })
}
