//! Argument conversions for the C API: every raw pointer from C is read
//! here, in `unsafe fn`s whose `# Safety` sections state what the caller
//! (the exported function, relaying the C caller's contract) guarantees.
//! Results go out through typed `Option<&mut T>` parameters, so writing
//! them needs no `unsafe`. Errors name the parameter.

use std::ffi::{c_char, c_int, CStr, CString};
use std::os::fd::BorrowedFd;
use std::time::Duration;

use serde_json::Value;

use super::status::{QM_TIMEOUT_FOREVER, QM_TIMEOUT_MAX_MS};
use crate::error::{Error, Result};
use crate::qmp::framing::json_kind;
use crate::qmp::wire::Arguments;

/// A required NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid and
/// unchanged for the lifetime `'a` chosen by the caller (the call).
pub(crate) unsafe fn required_str<'a>(p: *const c_char, name: &str) -> Result<&'a str> {
    optional_str(p, name)?.ok_or_else(|| Error::invalid(format!("`{name}` is NULL")))
}

/// A required, non-empty string (a console pattern, a command name).
///
/// # Safety
/// As [`required_str`].
pub(crate) unsafe fn non_empty_str<'a>(p: *const c_char, name: &str) -> Result<&'a str> {
    let s = required_str(p, name)?;
    if s.is_empty() {
        return Err(Error::invalid(format!("`{name}` must not be empty")));
    }
    Ok(s)
}

/// An optional string that must not be empty when given.
///
/// # Safety
/// As [`required_str`].
pub(crate) unsafe fn optional_non_empty_str<'a>(
    p: *const c_char,
    name: &str,
) -> Result<Option<&'a str>> {
    match optional_str(p, name)? {
        Some("") => Err(Error::invalid(format!(
            "`{name}` must not be empty (pass NULL for none)"
        ))),
        other => Ok(other),
    }
}

/// An optional NUL-terminated UTF-8 string (NULL → `None`).
///
/// # Safety
/// As [`required_str`].
pub(crate) unsafe fn optional_str<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: not NULL; NUL-terminated and valid for 'a (this fn's contract).
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map(Some).map_err(|e| {
        Error::invalid(format!(
            "`{name}` is not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })
}

/// Optional JSON text that must be an object (NULL → `None`).
///
/// # Safety
/// As [`required_str`].
pub(crate) unsafe fn optional_object(p: *const c_char, name: &str) -> Result<Option<Value>> {
    let Some(text) = optional_str(p, name)? else {
        return Ok(None);
    };
    let value = parse_json(text, name)?;
    if !value.is_object() {
        return Err(Error::invalid(format!(
            "`{name}` must be a JSON object, got {}",
            json_kind(&value)
        )));
    }
    Ok(Some(value))
}

/// Optional command arguments: JSON object text, sent as written (NULL →
/// `None`).
///
/// # Safety
/// As [`required_str`].
pub(crate) unsafe fn optional_arguments(p: *const c_char, name: &str) -> Result<Option<Arguments>> {
    let Some(text) = optional_str(p, name)? else {
        return Ok(None);
    };
    Arguments::from_text_named(text, &format!("`{name}`")).map(Some)
}

/// A byte buffer: `len` bytes at `p` (`p` may be NULL only if `len` is 0).
///
/// # Safety
/// `p` is NULL or points to `len` readable bytes that stay valid and
/// unchanged for the lifetime `'a`.
pub(crate) unsafe fn bytes<'a>(p: *const u8, len: usize, name: &str) -> Result<&'a [u8]> {
    if p.is_null() {
        if len == 0 {
            return Ok(&[]);
        }
        return Err(Error::invalid(format!("`{name}` is NULL")));
    }
    // SAFETY: not NULL; `len` readable bytes valid for 'a (this fn's
    // contract).
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Parse JSON text from parameter `name`.
pub(crate) fn parse_json(text: &str, name: &str) -> Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| Error::invalid(format!("`{name}` is not valid JSON: {e}")))
}

/// A `timeout_ms` argument: -1 forever, 0 poll, up to QM_TIMEOUT_MAX_MS.
pub(crate) fn timeout(ms: i64, name: &str) -> Result<Option<Duration>> {
    match ms {
        QM_TIMEOUT_FOREVER => Ok(None),
        0..=QM_TIMEOUT_MAX_MS => Ok(Some(Duration::from_millis(ms as u64))),
        _ => Err(Error::invalid(format!(
            "`{name}` must be -1 (forever), 0 (poll) or a number of milliseconds \
             up to {QM_TIMEOUT_MAX_MS}, got {ms}"
        ))),
    }
}

/// A descriptor number from C, checked to be open.
///
/// # Safety
/// If `fd` is open, it stays open for the lifetime `'a` (the call).
pub(crate) unsafe fn borrowed_fd<'a>(fd: c_int, name: &str) -> Result<BorrowedFd<'a>> {
    let invalid = || Error::invalid(format!("`{name}` ({fd}) is not an open file descriptor"));
    if fd < 0 {
        return Err(invalid());
    }
    // SAFETY: non-negative; used only for the F_GETFD query below, which
    // fails cleanly (EBADF) on a closed number.
    let probe = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_getfd(probe).map_err(|_| invalid())?;
    // SAFETY: open (checked above), and kept open for 'a (this fn's
    // contract).
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Text for C: NUL bytes (which C strings cannot carry) are dropped.
pub(crate) fn to_c_string(s: String) -> CString {
    CString::new(s).unwrap_or_else(|e| {
        let mut bytes = e.into_vec();
        bytes.retain(|&b| b != 0);
        CString::new(bytes).expect("NUL bytes were removed")
    })
}

/// Hand a string to C through an optional out-parameter (NULL: discarded).
/// The caller frees it with qm_string_free().
pub(crate) fn put_string(out: Option<&mut *mut c_char>, s: String) {
    if let Some(out) = out {
        *out = to_c_string(s).into_raw();
    }
}

/// Hand JSON text to C through an optional out-parameter.
pub(crate) fn put_json(out: Option<&mut *mut c_char>, value: &Value) {
    if let Some(out) = out {
        // Straight to bytes: `to_string` would go through `fmt` and cost
        // a third more on large replies (query-qmp-schema).
        let text = serde_json::to_vec(value).expect("a Value always serializes");
        // JSON text never contains a raw NUL (it is escaped as \u0000).
        *out = CString::new(text).expect("no NUL in JSON text").into_raw();
    }
}

/// Write a plain value through an optional out-parameter.
pub(crate) fn put<T>(out: Option<&mut T>, value: T) {
    if let Some(out) = out {
        *out = value;
    }
}
