//! `qm_status`, its descriptions, and the library version.

use std::ffi::{c_char, c_int, CStr};

use crate::error::Error;

/// Wait forever (a `timeout_ms` value).
pub const QM_TIMEOUT_FOREVER: i64 = -1;

/// The largest finite `timeout_ms` accepted (about 24.8 days).
pub const QM_TIMEOUT_MAX_MS: i64 = i32::MAX as i64;

/// Result of a call. The values never change; new codes are only ever
/// added at the end. qm_status_str() describes any of them.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum qm_status {
    /// Success.
    QM_OK = 0,
    /// A NULL pointer where one is required, text that is not UTF-8, JSON
    /// that does not parse or has the wrong type, a value out of range. The
    /// message names the parameter.
    QM_ERR_INVALID_ARGUMENT = 1,
    /// Wrong lifecycle state: configuring a launched machine, a QMP command
    /// before launch or after shutdown, QMP disabled, exit code while QEMU
    /// runs.
    QM_ERR_STATE = 2,
    /// QEMU did not start. The message holds the exit status, the full
    /// command line and QEMU's output.
    QM_ERR_LAUNCH = 3,
    /// The timeout passed first.
    QM_ERR_TIMEOUT = 4,
    /// The QMP or console connection is gone, usually because QEMU exited.
    /// The message holds QEMU's exit status and the tail of its log.
    QM_ERR_DISCONNECTED = 5,
    /// The peer broke its protocol (QMP, the guest agent's, qtest's). A QMP
    /// or qtest connection stays unusable; qm_shutdown() and qm_kill()
    /// still clean up. The guest agent resynchronizes on the next call.
    QM_ERR_PROTOCOL = 6,
    /// QMP answered `{"error": ...}`: qm_error_qmp_class() and
    /// qm_error_qmp_desc() give the class and description.
    QM_ERR_COMMAND = 7,
    /// A shutdown did not end with QEMU exiting cleanly by itself (status
    /// 0): it timed out and QEMU was killed, QEMU exited with an error or a
    /// signal, or its exit status is unknown. QEMU is reaped and cleaned up
    /// in every case; the message says which.
    QM_ERR_ABNORMAL_SHUTDOWN = 8,
    /// An operating-system call failed.
    QM_ERR_IO = 9,
    /// A request the machine's configuration cannot fulfil: a console call
    /// without a console, a QMP call with QMP disabled, qm_send_fd() over a
    /// TCP monitor, an agent or qtest call without qm_set_agent() or
    /// qm_set_qtest().
    QM_ERR_ADD_DEVICE = 10,
    /// An internal bug, caught at the API boundary (no panic ever unwinds
    /// into C). Please report it with the message.
    QM_ERR_PANIC = 11,
    /// The serial console showed the failure pattern before the success
    /// pattern.
    QM_ERR_CONSOLE_FAILURE = 12,
}

impl qm_status {
    pub(crate) fn of(error: &Error) -> qm_status {
        match error {
            Error::InvalidArgument(_) => qm_status::QM_ERR_INVALID_ARGUMENT,
            Error::State(_) => qm_status::QM_ERR_STATE,
            Error::Launch(_) => qm_status::QM_ERR_LAUNCH,
            Error::Timeout(_) => qm_status::QM_ERR_TIMEOUT,
            Error::Disconnected(_) => qm_status::QM_ERR_DISCONNECTED,
            Error::Protocol(_) => qm_status::QM_ERR_PROTOCOL,
            Error::Command { .. } => qm_status::QM_ERR_COMMAND,
            Error::AbnormalShutdown(_) => qm_status::QM_ERR_ABNORMAL_SHUTDOWN,
            Error::Io { .. } => qm_status::QM_ERR_IO,
            Error::AddDevice(_) => qm_status::QM_ERR_ADD_DEVICE,
            Error::ConsoleFailure { .. } => qm_status::QM_ERR_CONSOLE_FAILURE,
        }
    }

    fn describe(code: c_int) -> &'static CStr {
        match code {
            0 => c"ok",
            1 => c"invalid argument",
            2 => c"wrong state for this call",
            3 => c"QEMU launch failed",
            4 => c"timed out",
            5 => c"disconnected: QEMU or its connection is gone",
            6 => c"protocol error",
            7 => c"QMP command failed",
            8 => c"abnormal shutdown: QEMU did not exit cleanly",
            9 => c"I/O error",
            10 => c"request not possible with this machine's configuration",
            11 => c"internal error (panic caught)",
            12 => c"console showed the failure pattern",
            _ => c"unknown status",
        }
    }
}

/// A static, human-readable description of a status code. Accepts any
/// integer: unknown values give "unknown status". Never NULL; do not free.
#[no_mangle]
pub extern "C" fn qm_status_str(status: c_int) -> *const c_char {
    qm_status::describe(status).as_ptr()
}

const VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => panic!("the crate version contains a NUL byte"),
    };

/// The library's version, "MAJOR.MINOR.PATCH" (compare with
/// QM_VERSION_STRING from the header you compiled against). Static; never
/// NULL; do not free.
#[no_mangle]
pub extern "C" fn qm_version() -> *const c_char {
    VERSION.as_ptr()
}
