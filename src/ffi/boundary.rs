//! The panic boundary: no panic ever unwinds into C. A caught panic becomes
//! `QM_ERR_PANIC` with an error object, or, for functions that return no
//! status, the value their type gives for it ([`OnPanic`]): no body picks
//! its own.

use std::any::Any;
use std::ffi::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::error::qm_error;
use super::status::qm_status;
use crate::error::Result;

/// What a function returns to C when its body panicked.
pub(crate) trait OnPanic {
    fn on_panic() -> Self;
}

impl OnPanic for () {
    fn on_panic() -> Self {}
}

impl OnPanic for bool {
    fn on_panic() -> Self {
        false
    }
}

/// Descriptor and pid getters: -1, "none".
impl OnPanic for c_int {
    fn on_panic() -> Self {
        -1
    }
}

impl OnPanic for qm_status {
    fn on_panic() -> Self {
        qm_status::QM_ERR_PANIC
    }
}

impl<T> OnPanic for *const T {
    fn on_panic() -> Self {
        std::ptr::null()
    }
}

/// Run `body`; turn its error (or panic) into a status and, if `err` is not
/// NULL, an error object in `*err`.
pub(crate) fn status_call(
    err: Option<&mut *mut qm_error>,
    body: impl FnOnce() -> Result<()>,
) -> qm_status {
    let outcome = catch_unwind(AssertUnwindSafe(body));
    let (status, error) = match outcome {
        Ok(Ok(())) => return qm_status::QM_OK,
        Ok(Err(error)) => {
            let status = qm_status::of(&error);
            (status, qm_error::new(status, &error))
        }
        Err(payload) => (
            qm_status::QM_ERR_PANIC,
            qm_error::panic(&panic_message(payload.as_ref())),
        ),
    };
    if let Some(err) = err {
        *err = Box::into_raw(Box::new(error));
    }
    status
}

/// Run `body` for a function whose return type has no status; a panic
/// yields that type's [`OnPanic`] value.
pub(crate) fn value_call<T: OnPanic>(body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| T::on_panic())
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
