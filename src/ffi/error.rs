//! `qm_error`: the error object a failed call hands out, its accessors, and
//! `qm_string_free` for strings the library returns.

use std::ffi::{c_char, CString};
use std::ptr;

use super::boundary::value_call;
use super::input::to_c_string;
use super::status::qm_status;
use crate::error::Error;

/// An error from a failed call: a status, a message, and for QMP command
/// errors (QM_ERR_COMMAND) the QMP error class and description. Created by
/// the library, owned by the caller: free with qm_error_free(). Immutable,
/// so it may be read from any thread.
pub struct qm_error {
    status: qm_status,
    message: CString,
    qmp_class: Option<CString>,
    qmp_desc: Option<CString>,
}

impl qm_error {
    pub(crate) fn new(status: qm_status, error: &Error) -> qm_error {
        let (qmp_class, qmp_desc) = match error {
            Error::Command { class, desc, .. } => (
                Some(to_c_string(class.clone())),
                Some(to_c_string(desc.clone())),
            ),
            _ => (None, None),
        };
        qm_error {
            status,
            message: to_c_string(error.to_string()),
            qmp_class,
            qmp_desc,
        }
    }

    /// A panic caught at the boundary: an internal bug.
    pub(crate) fn panic(message: &str) -> qm_error {
        qm_error {
            status: qm_status::QM_ERR_PANIC,
            message: to_c_string(format!(
                "internal error (panic): {message}; please report it"
            )),
            qmp_class: None,
            qmp_desc: None,
        }
    }
}

/// The status of the failed call. `err` NULL: QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_error_status(err: *const qm_error) -> qm_status {
    value_call(|| {
        // SAFETY: NULL or a pointer returned by the library, not yet freed.
        match unsafe { err.as_ref() } {
            Some(e) => e.status,
            None => qm_status::QM_ERR_INVALID_ARGUMENT,
        }
    })
}

/// What went wrong, as UTF-8 text. Borrowed from `err`: valid until
/// qm_error_free(err); do not free it. `err` NULL: returns NULL.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_error_message(err: *const qm_error) -> *const c_char {
    value_call(|| {
        // SAFETY: NULL or a pointer returned by the library, not yet freed.
        unsafe { err.as_ref() }.map_or(ptr::null(), |e| e.message.as_ptr())
    })
}

/// The QMP error class (e.g. "CommandNotFound", "GenericError") of a
/// QM_ERR_COMMAND error; NULL for every other error and for `err` NULL.
/// Borrowed from `err`: valid until qm_error_free(err).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_error_qmp_class(err: *const qm_error) -> *const c_char {
    value_call(|| {
        // SAFETY: NULL or a pointer returned by the library, not yet freed.
        unsafe { err.as_ref() }
            .and_then(|e| e.qmp_class.as_ref())
            .map_or(ptr::null(), |c| c.as_ptr())
    })
}

/// QEMU's description (`desc`) of a QM_ERR_COMMAND error; NULL for every
/// other error and for `err` NULL. Borrowed from `err`: valid until
/// qm_error_free(err).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_error_qmp_desc(err: *const qm_error) -> *const c_char {
    value_call(|| {
        // SAFETY: NULL or a pointer returned by the library, not yet freed.
        unsafe { err.as_ref() }
            .and_then(|e| e.qmp_desc.as_ref())
            .map_or(ptr::null(), |c| c.as_ptr())
    })
}

/// Free an error object. NULL is a no-op. Each error must be freed exactly
/// once.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_error_free(err: *mut qm_error) {
    value_call(|| {
        if !err.is_null() {
            // SAFETY: a pointer from `Box::into_raw` in qm_error::boxed,
            // freed once (the caller's contract).
            drop(unsafe { Box::from_raw(err) });
        }
    })
}

/// Free a string returned by the library through a `char **` argument.
/// NULL is a no-op. Never pass a string the library did not return, and
/// never release the library's strings with free().
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_string_free(s: *mut c_char) {
    value_call(|| {
        if !s.is_null() {
            // SAFETY: a pointer from `CString::into_raw` in this library,
            // freed once (the caller's contract).
            drop(unsafe { CString::from_raw(s) });
        }
    })
}
