//! The panic boundary: no panic ever unwinds into C. A caught panic becomes
//! `QM_ERR_PANIC` (with an error object), or the documented fallback value
//! for functions that do not return a status.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::error::qm_error;
use super::status::qm_status;
use crate::error::{Error, Result};

/// Run `body`; turn its error (or panic) into a status and, if `err` is not
/// NULL, an error object in `*err`.
pub(crate) fn status_call(err: *mut *mut qm_error, body: impl FnOnce() -> Result<()>) -> qm_status {
    let result = catch_unwind(AssertUnwindSafe(body))
        .unwrap_or_else(|payload| Err(Error::Panic(panic_message(payload.as_ref()))));
    match result {
        Ok(()) => qm_status::QM_OK,
        Err(error) => {
            let status = qm_status::of(&error);
            if !err.is_null() {
                // SAFETY: the caller passes either NULL (checked) or a valid
                // `qm_error **` to receive the error.
                unsafe { *err = qm_error::boxed(status, &error) };
            }
            status
        }
    }
}

/// Run `body` for a function whose return type has no status; a panic
/// yields `fallback`.
pub(crate) fn value_call<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}
