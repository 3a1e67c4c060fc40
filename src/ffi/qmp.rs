//! QMP commands and events.

use std::ffi::{c_char, c_int};
use std::time::Duration;

use serde_json::Value;

use super::boundary::{status_call, value_call};
use super::error::qm_error;
use super::input::{
    borrowed_fd, non_empty_str, optional_arguments, optional_non_empty_str, optional_object,
    parse_json, put, put_json, put_string, required_str, timeout,
};
use super::machine::{enter, qm_machine};
use super::status::qm_status;
use crate::error::{Error, Result};
use crate::machine::Ticket;
use crate::qmp::events::{event_match, EventFilter};
use crate::qmp::framing::json_kind;

/// How long qm_send_fd() waits for QEMU's reply to `getfd`.
const SEND_FD_TIMEOUT: Duration = Duration::from_secs(30);

/// Run QMP command `cmd` with arguments `args_json` (a JSON object, or NULL
/// for none) and wait up to `timeout_ms` for the reply. On QM_OK
/// `*response_json` (if not NULL) receives QEMU's whole reply as JSON text,
/// `{"return": ...}` or `{"error": {"class": ..., "desc": ...}}`, without
/// the `id` the library added; free it with qm_string_free(). A QMP error is
/// still QM_OK here (see qm_command()). A `quit` that succeeds is
/// remembered: qm_shutdown() then only waits for QEMU to exit.
///
/// A timeout does not cancel the command: QEMU may still execute it, and
/// its late reply is dropped. (So `timeout_ms` 0 is of no use here.)
///
/// Statuses: QM_OK; QM_ERR_TIMEOUT; QM_ERR_DISCONNECTED (QEMU gone; the
/// message holds its exit status and log tail); QM_ERR_PROTOCOL;
/// QM_ERR_STATE (not launched, shut down, QMP disabled);
/// QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_qmp_cmd(
    m: *mut qm_machine,
    cmd: *const c_char,
    args_json: *const c_char,
    timeout_ms: i64,
    response_json: Option<&mut *mut c_char>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let cmd = non_empty_str(cmd, "cmd")?;
        let args = optional_arguments(args_json, "args_json")?;
        let t = timeout(timeout_ms, "timeout_ms")?;
        let reply = enter(m)?.qmp_text(cmd, args.as_ref(), t)?;
        put_string(response_json, reply);
        Ok(())
    })
}

/// Run QMP command `cmd` like qm_qmp_cmd(), but on QM_OK give only the
/// `return` value as JSON text in `*return_json` (if not NULL; free with
/// qm_string_free()). If QEMU answers with an error the status is
/// QM_ERR_COMMAND: qm_error_qmp_class() gives the class (e.g.
/// "CommandNotFound"), qm_error_qmp_desc() the description, which the
/// message also holds.
///
/// Statuses: as qm_qmp_cmd(), plus QM_ERR_COMMAND.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_command(
    m: *mut qm_machine,
    cmd: *const c_char,
    args_json: *const c_char,
    timeout_ms: i64,
    return_json: Option<&mut *mut c_char>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let cmd = non_empty_str(cmd, "cmd")?;
        let args = optional_arguments(args_json, "args_json")?;
        let t = timeout(timeout_ms, "timeout_ms")?;
        let value = enter(m)?.command_text(cmd, args.as_ref(), t)?;
        put_string(return_json, value);
        Ok(())
    })
}

/// Remove and return the first queued or future event named `name` (NULL:
/// any name) that matches `match_json` (a JSON object, or NULL: any).
/// Matching follows QEMU's `QEMUMachine.event_match`: the match is a
/// sub-object of the whole event, checked recursively, and a JSON null in
/// it is a wildcard for the value (the key must still exist), e.g.
/// `{"data": {"reason": null}}`. Events that do not
/// match stay queued, in order. One deadline covers the whole wait. On
/// QM_OK `*event_json` (if not NULL) receives the event; free it with
/// qm_string_free().
///
/// Events stay readable after QEMU has exited, until the next launch.
///
/// Statuses: QM_OK; QM_ERR_TIMEOUT (nothing matched in time; nothing is
/// consumed); QM_ERR_DISCONNECTED (the connection is closed and no queued
/// event matches — returned at once); QM_ERR_PROTOCOL; QM_ERR_STATE (never
/// launched, QMP disabled); QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_event_wait(
    m: *mut qm_machine,
    name: *const c_char,
    match_json: *const c_char,
    timeout_ms: i64,
    event_json: Option<&mut *mut c_char>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let name = optional_non_empty_str(name, "name")?;
        let pattern = optional_object(match_json, "match_json")?;
        let t = timeout(timeout_ms, "timeout_ms")?;
        let event = enter(m)?.events_wait(&[EventFilter::new(name, pattern)], t)?;
        put_json(event_json, &event);
        Ok(())
    })
}

/// Like qm_event_wait() for the first event passing any of several filters.
/// `filters_json` is a JSON array of `[name, match]` pairs, where `name` is
/// a string or null (any name) and `match` an object or null (any event),
/// e.g. `[["STOP", null], ["SHUTDOWN", {"data": {"guest": true}}]]`.
///
/// Statuses: as qm_event_wait().
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_events_wait(
    m: *mut qm_machine,
    filters_json: *const c_char,
    timeout_ms: i64,
    event_json: Option<&mut *mut c_char>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let filters = parse_filters(required_str(filters_json, "filters_json")?)?;
        let t = timeout(timeout_ms, "timeout_ms")?;
        let event = enter(m)?.events_wait(&filters, t)?;
        put_json(event_json, &event);
        Ok(())
    })
}

/// Remove and return the oldest event (FIFO), waiting up to `timeout_ms`
/// for one. On QM_OK `*event_json` (if not NULL) receives it; free it with
/// qm_string_free().
///
/// Statuses: as qm_event_wait().
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_event_get(
    m: *mut qm_machine,
    timeout_ms: i64,
    event_json: Option<&mut *mut c_char>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let t = timeout(timeout_ms, "timeout_ms")?;
        let event = enter(m)?.event_get(t)?;
        put_json(event_json, &event);
        Ok(())
    })
}

/// Take every queued event at once, without waiting: on QM_OK
/// `*events_json_array` (if not NULL) receives a JSON array of the events,
/// oldest first (possibly `[]`); free it with qm_string_free(). The queue
/// is left empty.
///
/// Statuses: QM_OK, QM_ERR_STATE (never launched, QMP disabled),
/// QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_events_take(
    m: *mut qm_machine,
    events_json_array: Option<&mut *mut c_char>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let events = enter(m)?.events_take()?;
        put_json(events_json_array, &Value::Array(events));
        Ok(())
    })
}

/// How many events this run dropped because the event queue was full
/// (65536 events). On QM_OK `*count` (if not NULL) receives the number.
///
/// Statuses: QM_OK, QM_ERR_INVALID_ARGUMENT (`m` NULL).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_events_dropped(
    m: *const qm_machine,
    count: Option<&mut u64>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        put(count, enter(m)?.events_dropped());
        Ok(())
    })
}

/// Pass descriptor `fd` to QEMU under the name `fdname`: sends `getfd`
/// with `fd` as SCM_RIGHTS ancillary data on the QMP socket, and waits up
/// to 30 s for the reply. The name is then usable where QEMU takes an fd
/// name (`closefd`, `migrate` to "fd:NAME", `netdev_add`...). `fd` stays
/// the caller's: QEMU receives its own copy.
///
/// Statuses: QM_OK; QM_ERR_STATE (the monitor is not a Unix socket — TCP
/// monitor or TCP attachment —, not launched, QMP disabled);
/// QM_ERR_COMMAND (QEMU refused); QM_ERR_TIMEOUT; QM_ERR_DISCONNECTED;
/// QM_ERR_INVALID_ARGUMENT (`fd` not open, bad name).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_send_fd(
    m: *mut qm_machine,
    fd: c_int,
    fdname: *const c_char,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let fdname = required_str(fdname, "fdname")?;
        let fd = borrowed_fd(fd, "fd")?;
        enter(m)?.send_fd(fd, fdname, Some(SEND_FD_TIMEOUT))
    })
}

/// Whether event `event_json` matches `match_json` by the rules of
/// qm_event_wait() (QEMU's `QEMUMachine.event_match`): the match is a
/// sub-object checked recursively, a JSON null in it is a wildcard, other
/// values compare equal. On QM_OK `*matches` (if not NULL) receives the
/// answer. Needs no machine.
///
/// Statuses: QM_OK, QM_ERR_INVALID_ARGUMENT (NULL, invalid JSON).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_event_match(
    event_json: *const c_char,
    match_json: *const c_char,
    matches: Option<&mut bool>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let event = parse_json(required_str(event_json, "event_json")?, "event_json")?;
        let pattern = parse_json(required_str(match_json, "match_json")?, "match_json")?;
        put(matches, event_match(&event, &pattern));
        Ok(())
    })
}

/// Send QMP command `cmd` (arguments `args_json`, a JSON object or NULL)
/// now and collect its reply later with qm_command_receive(): for
/// pipelining several commands, and for event loops. Never blocks: what
/// the socket does not take at once is written as later calls on the
/// machine (including qm_dispatch()) read or write. On QM_OK `*ticket`
/// receives the ticket to receive with; tickets are unique in the process.
///
/// Statuses: QM_OK; QM_ERR_DISCONNECTED; QM_ERR_STATE (not running);
/// QM_ERR_ADD_DEVICE (QMP disabled); QM_ERR_INVALID_ARGUMENT (bad or
/// NULL arguments, `ticket` NULL, input QEMU's parser refuses).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_command_send(
    m: *mut qm_machine,
    cmd: *const c_char,
    args_json: *const c_char,
    ticket: Option<&mut u64>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let cmd = non_empty_str(cmd, "cmd")?;
        let args = optional_arguments(args_json, "args_json")?;
        let out = ticket.ok_or_else(|| Error::invalid("`ticket` is NULL"))?;
        *out = enter(m)?.command_send(cmd, args.as_ref())?.id();
        Ok(())
    })
}

/// The reply to a command sent with qm_command_send(), waiting up to
/// `timeout_ms` for it (0 polls). On QM_OK `*response_json` (if not NULL)
/// receives the whole reply as qm_qmp_cmd() gives it (`{"return": ...}` or
/// `{"error": ...}`, both QM_OK); free it with qm_string_free().
///
/// QM_ERR_TIMEOUT keeps the ticket valid (receive again later); any other
/// outcome consumes it. A reply that arrives while nobody waits for it is
/// kept for its ticket. The run ending (QEMU exits, qm_shutdown(),
/// qm_kill(), qm_machine_free()) answers every outstanding ticket with
/// QM_ERR_DISCONNECTED; a later launch forgets them.
///
/// Statuses: QM_OK; QM_ERR_TIMEOUT; QM_ERR_DISCONNECTED; QM_ERR_STATE
/// (never launched); QM_ERR_INVALID_ARGUMENT (a ticket not outstanding on
/// this machine: unknown, already received, from another machine or an
/// earlier run).
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_command_receive(
    m: *mut qm_machine,
    ticket: u64,
    timeout_ms: i64,
    response_json: Option<&mut *mut c_char>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let t = timeout(timeout_ms, "timeout_ms")?;
        let reply = enter(m)?.command_receive(Ticket::from_id(ticket), t)?;
        put_string(response_json, reply);
        Ok(())
    })
}

/// A descriptor for event loops (poll, epoll, GLib, libuv, asyncio): it is
/// readable when QMP input waits to be routed, when another thread's
/// blocking call routed input (a reply or event the loop has not seen),
/// when QEMU has exited, and, once the run has ended, for good. When it is
/// readable, call
/// qm_dispatch(). -1 when QEMU is not running (never launched, exited,
/// killed or shut down), when QMP is disabled, or `m` is NULL. Owned by
/// the machine: do not close or read it; a descriptor handed out stays
/// open (and readable once the run has ended) until the next launch or
/// qm_machine_free().
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_machine_fd(m: *const qm_machine) -> c_int {
    value_call(|| {
        enter(m)
            .ok()
            .and_then(|m| m.poll_fd().ok().flatten())
            .unwrap_or(-1)
    })
}

/// Route whatever QMP input has arrived — replies to tickets, events to the
/// machine's queue and to listeners — and write queued output the socket
/// takes, without ever blocking: if another thread is inside a blocking
/// call on the machine (and so reading), return at once (that thread
/// routes it).
///
/// Statuses: QM_OK; QM_ERR_DISCONNECTED once the run has ended (the
/// message holds QEMU's exit status), as every other call then gives;
/// QM_ERR_PROTOCOL; QM_ERR_STATE (never launched); QM_ERR_ADD_DEVICE (QMP
/// disabled); QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_dispatch(
    m: *mut qm_machine,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || enter(m)?.dispatch())
}

/// The greeting QEMU sent when the QMP connection opened,
/// `{"QMP": {"version": {...}, "capabilities": [...]}}`, of the current or
/// last run, in `*greeting_json` (if not NULL; free with qm_string_free()).
///
/// Statuses: QM_OK; QM_ERR_STATE (never launched, or the launch failed
/// before the greeting); QM_ERR_INVALID_ARGUMENT.
///
/// # Safety
/// The pointer rules of the header's conventions apply.
#[no_mangle]
pub unsafe extern "C" fn qm_qmp_greeting(
    m: *const qm_machine,
    greeting_json: Option<&mut *mut c_char>,
    err: Option<&mut *mut qm_error>,
) -> qm_status {
    status_call(err, || {
        let greeting = enter(m)?
            .greeting()
            .ok_or_else(|| Error::state("no QMP greeting: the machine has not been launched"))?;
        put_json(greeting_json, &greeting);
        Ok(())
    })
}

pub(crate) fn parse_filters(text: &str) -> Result<Vec<EventFilter>> {
    let value = parse_json(text, "filters_json")?;
    let items = match value {
        Value::Array(items) if !items.is_empty() => items,
        Value::Array(_) => {
            return Err(Error::invalid(
                "`filters_json` is an empty array: no event could ever match",
            ))
        }
        other => {
            return Err(Error::invalid(format!(
                "`filters_json` must be a JSON array of [name, match] pairs, got {}",
                json_kind(&other)
            )))
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let bad = |what: &str| {
                Error::invalid(format!("`filters_json` element {i}: {what}, got {item}"))
            };
            let Value::Array(pair) = &item else {
                return Err(bad("expected a [name, match] pair"));
            };
            let [name, pattern] = pair.as_slice() else {
                return Err(bad("expected exactly two elements"));
            };
            let name = match name {
                Value::String(s) if !s.is_empty() => Some(s.as_str()),
                Value::Null => None,
                _ => return Err(bad("the name must be a non-empty string or null")),
            };
            let pattern = match pattern {
                Value::Object(_) => Some(pattern.clone()),
                Value::Null => None,
                _ => return Err(bad("the match must be an object or null")),
            };
            Ok(EventFilter::new(name, pattern))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_reject_bad_shapes() {
        let f = parse_filters(r#"[["STOP", null], [null, {"data": {"a": null}}]]"#).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].name.as_deref(), Some("STOP"));
        assert!(f[1].name.is_none() && f[1].pattern.is_some());
        for bad in [
            "[]",
            r#"[["", null]]"#,
            "{}",
            "[1]",
            r#"[["STOP"]]"#,
            r#"[["STOP", 1]]"#,
            r#"[[1, null]]"#,
            "[",
        ] {
            let e = parse_filters(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{bad}");
            assert!(e.to_string().contains("filters_json"), "{e}");
        }
    }
}
