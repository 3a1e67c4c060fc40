//! `qm_bytes`: output that may hold NUL bytes (console output, guest files,
//! command output).

use super::boundary::value_call;

/// Bytes the library hands out: `len` bytes at `data`, followed by a NUL
/// that `len` does not count (so text can be used as a C string). Owned by
/// the caller: release with qm_bytes_free(), never free(). An empty result
/// may have `data` NULL.
#[repr(C)]
#[derive(Debug)]
pub struct qm_bytes {
    /// The bytes, NUL-terminated too; NULL when empty.
    pub data: *mut u8,
    /// How many bytes, not counting the terminating NUL.
    pub len: usize,
}

impl qm_bytes {
    /// Hand `bytes` to C.
    pub(crate) fn new(mut bytes: Vec<u8>) -> qm_bytes {
        if bytes.is_empty() {
            return qm_bytes {
                data: std::ptr::null_mut(),
                len: 0,
            };
        }
        let len = bytes.len();
        bytes.push(0);
        let data = Box::into_raw(bytes.into_boxed_slice()).cast::<u8>();
        qm_bytes { data, len }
    }
}

/// Free the bytes of `b` (from qm_console_read_bytes() and others), then
/// set `b->data` to NULL and `b->len` to 0, so a second call is harmless.
/// `b` NULL, or `b->data` NULL, is a no-op.
///
/// # Safety
/// `b` is NULL or points to a qm_bytes the library filled in, unchanged
/// since.
#[no_mangle]
pub unsafe extern "C" fn qm_bytes_free(b: Option<&mut qm_bytes>) {
    value_call(|| {
        let Some(b) = b else {
            return;
        };
        if !b.data.is_null() {
            let whole = std::ptr::slice_from_raw_parts_mut(b.data, b.len + 1);
            // SAFETY: `data` came from `Box::into_raw` of a boxed slice of
            // `len + 1` bytes in qm_bytes::new (the caller's contract).
            drop(unsafe { Box::from_raw(whole) });
        }
        b.data = std::ptr::null_mut();
        b.len = 0;
    })
}
