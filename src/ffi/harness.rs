//! What test harnesses need around a machine: failure artifacts
//! (`qm_save_artifacts`), capability probes (`qm_probe`) and migration in
//! one call (`qm_migrate`).

use std::ffi::c_char;

use super::boundary::status_call;
use super::error::qm_error;
use super::input::{non_empty_str, put, required_str, timeout};
use super::machine::{enter, enter_named, qm_machine};
use super::status::qm_status;
use crate::probe::{probe, Capability};

/// Write what a failed test's reader needs into the directory `dir`
/// (created with mode 0700 if missing): `qemu.log` (QEMU's output),
/// `console.log` (with a console), `qmp-trace.log` (when traced to a
/// regular file), `events.jsonl` (every event of the run seen so far,
/// including those already taken from the queue), `command-line.txt` and
/// `status.txt` (running, or the exit status and why the run ended).
/// Safe at any moment — running, after a shutdown, after a failed launch —
/// and from any thread; it never waits for QEMU. A second call overwrites
/// the files (each is replaced whole).
///
/// Statuses: QM_OK; QM_ERR_STATE (never launched); QM_ERR_IO (the
/// directory or a file cannot be written); QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_save_artifacts(
    m: *const qm_machine,
    dir: *const c_char,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let dir = non_empty_str(dir, "dir")?;
        enter(m)?.save_artifacts(dir)
    })
}

/// Whether the QEMU binary `binary` has `name` of kind `what`: "machine"
/// (a machine type by name or alias: "pc" is an alias), "device" (a device
/// type), "accel" ("tcg", "kvm", "qtest"), "cpu" (a CPU model) or
/// "command" (a QMP command). On QM_OK `*present` (if not NULL) receives
/// the answer.
///
/// The first question about a binary starts one short-lived `-machine
/// none` QEMU (within `timeout_ms`) that answers every question; the
/// answers are kept for the process, so later calls start nothing. Calls
/// from several threads are safe; concurrent first calls for one binary
/// share one QEMU. QEMU inherits this process's environment (e.g.
/// QEMU_MODULE_DIR for the qtest accelerator).
///
/// Statuses: QM_OK; QM_ERR_LAUNCH (the binary does not start: its output
/// is in the message; not cached); QM_ERR_TIMEOUT;
/// QM_ERR_INVALID_ARGUMENT (NULL, an unknown `what`).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_probe(
    binary: *const c_char,
    what: *const c_char,
    name: *const c_char,
    timeout_ms: i64,
    present: Option<&mut bool>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let binary = non_empty_str(binary, "binary")?;
        let what: Capability = required_str(what, "what")?.parse()?;
        let name = required_str(name, "name")?;
        let t = timeout(timeout_ms, "timeout_ms")?;
        put(present, probe(binary, what, name, t)?);
        Ok(())
    })
}

/// Live-migrate `src` into `dst` (launched with `-incoming defer`): the
/// library enables migration events on both, passes the two ends of a
/// socketpair to them with `getfd`, runs `migrate-incoming` on `dst` and
/// `migrate` on `src` with `fd:` URIs, and waits for both sides' MIGRATION
/// events to report `completed` (and for `src` to settle in
/// `postmigrate`), all within `timeout_ms`.
///
/// Statuses: QM_OK; QM_ERR_COMMAND (a side reported `failed` or
/// `cancelled`, or refused a step; the message holds both sides' migration
/// status); QM_ERR_DISCONNECTED (QEMU died on either side: returned at
/// once, with both statuses); QM_ERR_TIMEOUT (the migration was cancelled
/// with `migrate_cancel` on `src`); QM_ERR_ADD_DEVICE (a monitor
/// that is not a Unix socket); QM_ERR_STATE (not running);
/// QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_migrate(
    src: *mut qm_machine,
    dst: *mut qm_machine,
    timeout_ms: i64,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let t = timeout(timeout_ms, "timeout_ms")?;
        let (src, dst) = (enter_named(src, "src")?, enter_named(dst, "dst")?);
        crate::migrate(&src, &dst, t)
    })
}
