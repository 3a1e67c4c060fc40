//! `qm_listener`: event listeners.

use std::ffi::{c_char, c_int};
use std::os::fd::AsRawFd;

use serde_json::Value;

use super::boundary::{status_call, value_call};
use super::error::qm_error;
use super::gate::{Gate, Pass};
use super::input::{optional_str, put, put_json, timeout};
use super::machine::{enter, qm_machine};
use super::qmp::parse_filters;
use super::status::qm_status;
use crate::error::{Error, Result};
use crate::machine::Listener;

/// An event listener: its own queue of the events that pass its filters.
/// Create with qm_listener_new(), free with qm_listener_free(). Opaque.
pub struct qm_listener {
    listener: Listener,
    gate: Gate,
}

/// Check `l` and register a call on it.
///
/// # Safety
/// `l` is NULL or a pointer from qm_listener_new() whose
/// qm_listener_free() has not begun.
unsafe fn enter_listener<'a>(l: *const qm_listener) -> Result<(&'a Listener, Pass<'a>)> {
    // SAFETY: NULL or a live handle (this fn's contract).
    let handle = unsafe { l.as_ref() }.ok_or_else(|| Error::invalid("`l` is NULL"))?;
    Ok((&handle.listener, handle.gate.enter("listener")?))
}

/// Create a listener on `m`: from now on, through any number of launches,
/// until qm_listener_free(), it receives a copy of every event QEMU sends
/// that passes `filters_json` (NULL: every event; else a JSON array of
/// `[name, match]` filters as qm_events_wait() takes). The machine's own
/// queue (qm_event_wait() and the rest) is unaffected, as are other
/// listeners. Each listener keeps up to 65536 events (16 MiB); beyond that
/// the oldest are dropped and counted (qm_listener_dropped()).
///
/// On QM_OK `*listener` receives it; free it with qm_listener_free(). It may
/// outlive `m` (free them in any order).
///
/// Statuses: QM_OK; QM_ERR_INVALID_ARGUMENT (`m` or `listener` NULL, bad
/// filters); QM_ERR_ADD_DEVICE (QMP is disabled: no event could come);
/// QM_ERR_IO (no descriptor left for its eventfd).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_listener_new(
    m: *mut qm_machine,
    filters_json: *const c_char,
    listener: Option<&mut *mut qm_listener>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let filters = optional_str(filters_json, "filters_json")?
            .map(parse_filters)
            .transpose()?;
        let out = listener.ok_or_else(|| Error::invalid("`listener` is NULL"))?;
        let made = enter(m)?.listen(filters)?;
        *out = Box::into_raw(Box::new(qm_listener {
            listener: made,
            gate: Gate::default(),
        }));
        Ok(())
    })
}

/// Remove and return the oldest event of the listener, waiting up to
/// `timeout_ms` for one (0 polls). While it waits it reads QMP input like
/// any other wait (no thread is involved). On QM_OK `*event_json` (if not
/// NULL) receives the event; free it with qm_string_free().
///
/// Statuses: QM_OK; QM_ERR_TIMEOUT; QM_ERR_DISCONNECTED (the machine's run
/// has ended, or the machine was freed, and nothing is queued: returned at
/// once; the message holds QEMU's exit status); QM_ERR_STATE (the machine's
/// first launch has not returned yet, as for qm_event_wait(); or the
/// listener is being freed by another thread: a blocked wait wakes with
/// it);
/// QM_ERR_ADD_DEVICE (the machine was relaunched with QMP disabled);
/// QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_listener_wait(
    l: *mut qm_listener,
    timeout_ms: i64,
    event_json: Option<&mut *mut c_char>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let t = timeout(timeout_ms, "timeout_ms")?;
        let (listener, _pass) = enter_listener(l)?;
        let event = listener.wait(t)?;
        put_json(event_json, &event);
        Ok(())
    })
}

/// Take every queued event of the listener at once, without waiting (what
/// has arrived on the socket is routed first): on QM_OK `*events_json` (if
/// not NULL) receives a JSON array, oldest first (possibly `[]`); free it
/// with qm_string_free().
///
/// Statuses: QM_OK, QM_ERR_STATE (being freed), QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_listener_take(
    l: *mut qm_listener,
    events_json: Option<&mut *mut c_char>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let (listener, _pass) = enter_listener(l)?;
        let events = listener.take()?;
        put_json(events_json, &Value::Array(events));
        Ok(())
    })
}

/// A descriptor that is readable exactly while the listener has events
/// queued (an eventfd), for poll/epoll/select loops; -1 if `l` is NULL.
/// Owned by the listener: do not close it, and do not read it (take the
/// events instead). Valid until qm_listener_free().
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_listener_fd(l: *const qm_listener) -> c_int {
    value_call(|| match enter_listener(l) {
        Ok((listener, _pass)) => listener.fd().as_raw_fd(),
        Err(_) => -1,
    })
}

/// How many events this listener dropped because its queue was full. On
/// QM_OK `*count` (if not NULL) receives the number.
///
/// Statuses: QM_OK, QM_ERR_STATE (being freed), QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_listener_dropped(
    l: *const qm_listener,
    count: Option<&mut u64>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let (listener, _pass) = enter_listener(l)?;
        put(count, listener.dropped());
        Ok(())
    })
}

/// Free a listener. NULL is a no-op. May be called before or after
/// qm_machine_free() of its machine. A thread blocked in qm_listener_wait()
/// on it wakes with QM_ERR_STATE, and qm_listener_free waits for it to
/// return before releasing the memory. Starting a call on `l` after
/// qm_listener_free has begun is undefined behaviour.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_listener_free(l: *mut qm_listener) {
    if l.is_null() {
        return;
    }
    value_call(|| {
        // SAFETY: a pointer from qm_listener_new(), freed once (the caller's
        // contract).
        let handle = unsafe { &*l };
        handle.gate.close();
        handle.listener.close();
        handle.gate.wait_idle();
        // SAFETY: no call is in flight and none may start.
        drop(unsafe { Box::from_raw(l) });
    })
}
