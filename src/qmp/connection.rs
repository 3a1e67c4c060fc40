//! QMP over a [`Channel`]: the greeting and capabilities negotiation,
//! commands matched to their replies, events to the machine's queue, its
//! listeners and the run's history.
//!
//! # Matching replies by order
//!
//! QEMU answers in-band commands one at a time, in the order it received
//! them (out-of-band execution is never negotiated), and a command that
//! reaches QEMU gets exactly one reply. So the library sends no `id` at all
//! (`,"id":1234` alone costs ~50 µs of a ~250 µs round trip, since QEMU
//! reads its input a byte per main-loop turn) and matches replies by
//! position (`channel/ordered.rs`): a reply that comes after its caller
//! gave up takes its command's place and is dropped. The error QEMU sends
//! for input its parser rejects is the reply to the command that carried
//! the input; [`super::wire`] refuses beforehand every input for which
//! QEMU's parser would send more than one reply. A command that could not
//! be written at all by its deadline is withdrawn; one partly written
//! stays queued until QEMU has read it, so the stream is never cut. Events
//! carry no reply and can come anywhere, also before the greeting.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;

use crate::channel::{Channel, Closed, Ordered, OrderedReplies, Protocol, SendError, State};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::qmp::events::{EventHistory, EventQueue};
use crate::qmp::framing::{parse_message, Message, Reply, MAX_LINE};
use crate::qmp::listeners::{ListenerQueue, ListenerSet};
use crate::qmp::trace::Trace;
use crate::qmp::wire::{self, Arguments};
use crate::socket::Socket;

/// QMP's routing state.
#[derive(Debug)]
pub(crate) struct Qmp {
    greeting: Option<Value>,
    /// Commands and their replies; replies nobody collects are dropped, as
    /// the QMP specification asks, and counted.
    replies: OrderedReplies<Reply>,
    events: EventQueue,
    listeners: Arc<ListenerSet>,
    history: EventHistory,
}

impl Ordered for Qmp {
    type Reply = Reply;
    fn ordered(&mut self) -> &mut OrderedReplies<Reply> {
        &mut self.replies
    }
}

impl Protocol for Qmp {
    fn route(&mut self, line: &[u8]) -> std::result::Result<(), String> {
        match parse_message(line)? {
            None => {}
            Some(Message::Event(event)) => {
                self.listeners.deliver(&event, line.len());
                self.history.push(line);
                self.events.push(event, line.len());
            }
            Some(Message::Greeting(greeting)) => {
                if self.greeting.is_some() {
                    return Err(format!("unexpected second greeting: {greeting}"));
                }
                self.greeting = Some(greeting);
            }
            Some(Message::Reply(reply)) => {
                if self.greeting.is_none() {
                    return Err(format!(
                        "expected the QMP greeting, got a reply: {}",
                        reply.to_json_text()
                    ));
                }
                self.replies.answer(reply);
            }
        }
        Ok(())
    }
}

/// Settings for a new connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnectOptions {
    pub event_queue_capacity: usize,
    pub event_queue_bytes: usize,
    pub trace: Option<Arc<Trace>>,
    pub listeners: Arc<ListenerSet>,
}

/// A ticket's reply being waited for: what to do if the wait times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnTimeout {
    /// The caller gives up: a late reply is dropped.
    Abandon,
    /// The ticket stays valid for another try.
    Keep,
}

/// An established QMP session.
pub(crate) struct QmpConnection {
    channel: Channel<Qmp>,
    greeting: Value,
    /// The command of each ticket sent by [`QmpConnection::send_split`]
    /// and not yet received, for messages.
    split: Mutex<HashMap<u64, String>>,
}

impl std::fmt::Debug for QmpConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QmpConnection").finish_non_exhaustive()
    }
}

impl QmpConnection {
    /// Read the greeting and negotiate capabilities within `deadline`.
    /// `exit` (QEMU's pidfd) ends every wait as soon as QEMU exits.
    pub(crate) fn handshake(
        socket: Socket,
        exit: Option<Arc<OwnedFd>>,
        deadline: Deadline,
        options: &ConnectOptions,
    ) -> Result<QmpConnection> {
        let channel = Channel::new(
            "QMP",
            socket,
            exit,
            MAX_LINE,
            Qmp {
                greeting: None,
                replies: OrderedReplies::default(),
                events: EventQueue::new(options.event_queue_capacity, options.event_queue_bytes),
                listeners: Arc::clone(&options.listeners),
                history: EventHistory::default(),
            },
        );
        channel.set_trace(options.trace.clone());
        let greeting = channel
            .wait_for(deadline, None, |st| st.proto.greeting.clone())
            .map_err(|closed| negotiation_error(&closed, "QMP greeting", &channel.partial_input()))?
            .ok_or_else(|| {
                Error::Timeout(format!(
                    "no QMP greeting {} (received {})",
                    deadline.describe(),
                    channel.partial_input()
                ))
            })?;
        check_greeting(&greeting)?;
        let connection = QmpConnection {
            channel,
            greeting,
            split: Mutex::new(HashMap::new()),
        };
        let reply = connection
            .execute("qmp_capabilities", None, deadline)
            .map_err(|e| match e {
                Error::Disconnected(_) | Error::Protocol(_) => match connection.channel.closed() {
                    Some(closed) => negotiation_error(
                        &closed,
                        "reply to qmp_capabilities",
                        &connection.channel.partial_input(),
                    ),
                    None => e,
                },
                Error::Timeout(_) => Error::Timeout(format!(
                    "no reply to qmp_capabilities {} (received {})",
                    deadline.describe(),
                    connection.channel.partial_input()
                )),
                other => other,
            })?;
        if reply.is_error() {
            return Err(Error::Protocol(format!(
                "qmp_capabilities was refused: {}",
                reply.member_text()
            )));
        }
        Ok(connection)
    }

    /// The greeting QEMU sent (`{"QMP": {"version": ..., "capabilities": ...}}`).
    pub(crate) fn greeting(&self) -> &Value {
        &self.greeting
    }

    /// Send a command now; its reply is collected with
    /// [`QmpConnection::receive`]. With `deadline`, waits (at most until
    /// then) for the command to be written; without, queues what the
    /// socket does not take at once and returns.
    pub(crate) fn send(
        &self,
        cmd: &str,
        args: Option<&Arguments>,
        fd: Option<BorrowedFd<'_>>,
        deadline: Option<Deadline>,
    ) -> Result<u64> {
        let line = wire::command(cmd, args)?;
        self.channel
            .send_request(&line, fd, deadline)
            .map_err(|e| self.send_error(e, cmd, deadline.unwrap_or_else(Deadline::poll)))
    }

    fn send_error(&self, e: SendError, cmd: &str, deadline: Deadline) -> Error {
        match e {
            SendError::NotSent { bytes_ahead: 0 } => Error::Timeout(format!(
                "could not send '{cmd}' {}: QEMU is not reading its monitor",
                deadline.describe()
            )),
            SendError::NotSent { bytes_ahead } => Error::Timeout(format!(
                "could not send '{cmd}' {}: QEMU has not yet read {bytes_ahead} bytes of \
                 earlier commands (it reads its monitor one byte per main-loop turn)",
                deadline.describe()
            )),
            SendError::PartlySent { sent, total } => Error::Timeout(format!(
                "'{cmd}' was only partly sent {} ({sent} of {total} bytes; QEMU reads its \
                 monitor one byte per main-loop turn); the rest is sent as QEMU reads it, \
                 and the command's reply will be discarded",
                deadline.describe()
            )),
            SendError::Closed(closed) => closed.error("QMP"),
            SendError::Failed(err) => {
                Error::Disconnected(format!("cannot send '{cmd}' to QEMU: {err}"))
            }
        }
    }

    /// Send a command without waiting (see [`QmpConnection::send`]),
    /// its reply to be collected with [`QmpConnection::receive_split`].
    pub(crate) fn send_split(&self, cmd: &str, args: Option<&Arguments>) -> Result<u64> {
        let ticket = self.send(cmd, args, None, None)?;
        self.split.lock().insert(ticket, cmd.to_string());
        Ok(ticket)
    }

    /// The reply to a ticket of [`QmpConnection::send_split`]: on timeout
    /// the ticket stays valid; every other outcome consumes it.
    pub(crate) fn receive_split(&self, ticket: u64, deadline: Deadline) -> Result<Reply> {
        let what = match self.split.lock().get(&ticket) {
            Some(cmd) => format!("'{cmd}' (ticket {ticket})"),
            None => format!("ticket {ticket}"),
        };
        let result = self.receive(ticket, deadline, OnTimeout::Keep, &what);
        if !matches!(result, Err(Error::Timeout(_))) {
            self.split.lock().remove(&ticket);
        }
        result
    }

    /// The reply to `ticket` (`what` names it in messages). On timeout the
    /// ticket is kept or abandoned as `on_timeout` says; every other
    /// outcome consumes it.
    fn receive(
        &self,
        ticket: u64,
        deadline: Deadline,
        on_timeout: OnTimeout,
        what: &str,
    ) -> Result<Reply> {
        if !self.channel.lock().proto.replies.is_outstanding(ticket) {
            return Err(Error::invalid(format!(
                "ticket {ticket} is not outstanding on this machine (it was already received, \
                 belongs to another machine or an earlier run, or was never issued)"
            )));
        }
        let abandon = on_timeout == OnTimeout::Abandon;
        match self.channel.wait_reply(ticket, deadline, abandon) {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => Err(Error::Timeout(format!(
                "no reply to {what} {}",
                deadline.describe()
            ))),
            Err(closed) => Err(closed.error("QMP")),
        }
    }

    /// Send a command and wait for its reply (`return` or `error`).
    pub(crate) fn execute(
        &self,
        cmd: &str,
        args: Option<&Arguments>,
        deadline: Deadline,
    ) -> Result<Reply> {
        self.execute_with(cmd, args, None, deadline)
    }

    /// Like [`QmpConnection::execute`], passing `fd` along with the command
    /// as `SCM_RIGHTS` ancillary data (for `getfd`, `add-fd`). Unix sockets
    /// only.
    pub(crate) fn execute_with(
        &self,
        cmd: &str,
        args: Option<&Arguments>,
        fd: Option<BorrowedFd<'_>>,
        deadline: Deadline,
    ) -> Result<Reply> {
        let ticket = self.send(cmd, args, fd, Some(deadline))?;
        self.receive(ticket, deadline, OnTimeout::Abandon, &format!("'{cmd}'"))
    }

    /// Remove and return the first queued or future event accepted by
    /// `filter`; other events stay queued in order.
    pub(crate) fn wait_event(
        &self,
        filter: impl Fn(&Value) -> bool,
        deadline: Deadline,
        describe: impl FnOnce() -> String,
    ) -> Result<Value> {
        let mut resume = 0;
        let found = self
            .channel
            .wait_for(deadline, None, |st| {
                match st.proto.events.take_first(resume, &filter) {
                    Ok(ev) => Some(ev),
                    Err(next) => {
                        resume = next;
                        None
                    }
                }
            })
            .map_err(|closed| closed.error("QMP"))?;
        if let Some(ev) = found {
            return Ok(ev);
        }
        let st = self.channel.lock();
        let mut msg = format!("no {} {}", describe(), deadline.describe());
        match st.proto.events.len() {
            0 => {}
            1 => msg.push_str(" (1 other event is queued)"),
            n => msg.push_str(&format!(" ({n} other events are queued)")),
        }
        let dropped = st.proto.events.dropped();
        if dropped > 0 {
            msg.push_str(&format!(
                "; {dropped} event(s) were dropped because the event queue was full"
            ));
        }
        Err(Error::Timeout(msg))
    }

    /// The next event of `listener`, driving this connection while waiting.
    /// `Ok(None)` at the deadline.
    pub(crate) fn wait_listener(
        &self,
        listener: &ListenerQueue,
        deadline: Deadline,
    ) -> std::result::Result<Option<ListenerWake>, Closed> {
        let check = |_: &mut State<Qmp>| {
            if listener.is_freed() {
                Some(ListenerWake::Freed)
            } else {
                listener.pop().map(ListenerWake::Event)
            }
        };
        self.channel
            .wait_for(deadline, Some(listener.ready_fd().as_fd()), check)
    }

    /// Wake every waiter (after a listener was freed).
    pub(crate) fn wake_all(&self) {
        self.channel.notify();
    }

    /// Start (or stop, with `None`) tracing this connection's traffic.
    pub(crate) fn set_trace(&self, trace: Option<Arc<Trace>>) {
        self.channel.set_trace(trace);
    }

    /// Wait until the connection is closed (QEMU exited or closed it),
    /// routing what arrives meanwhile. `false` if it is still open at the
    /// deadline.
    pub(crate) fn wait_closed(&self, deadline: Deadline) -> bool {
        self.channel.wait_closed(deadline)
    }

    /// Whether the connection is still open; never blocks.
    pub(crate) fn is_open(&self) -> bool {
        self.channel.is_open()
    }

    /// Route what has arrived without blocking (event loops).
    pub(crate) fn dispatch(&self) -> Result<()> {
        self.channel
            .dispatch()
            .map_err(|closed| closed.error("QMP"))
    }

    /// The descriptor an event loop polls.
    pub(crate) fn loop_fd(&self) -> Result<std::os::fd::RawFd> {
        self.channel
            .loop_fd()
            .map_err(|e| Error::io("cannot create the event-loop descriptor", e))
    }

    /// All queued events, oldest first, including those already received
    /// but not yet read; the queue is left empty.
    pub(crate) fn take_events(&self) -> Vec<Value> {
        let _ = self.channel.dispatch();
        self.channel.lock().proto.events.take_all()
    }

    pub(crate) fn events_dropped(&self) -> u64 {
        self.channel.lock().proto.events.dropped()
    }

    pub(crate) fn stray_replies(&self) -> u64 {
        self.channel.lock().proto.replies.stray()
    }

    /// Every event of the run so far as JSON lines, and how many older
    /// ones the bounded history dropped.
    pub(crate) fn event_history(&self) -> (Vec<u8>, u64) {
        self.channel.lock().proto.history.to_jsonl()
    }

    /// Bytes written to QEMU so far.
    pub(crate) fn bytes_written(&self) -> u64 {
        self.channel.bytes_written()
    }

    /// Close the connection. Queued events stay readable; every waiter
    /// wakes up; the descriptor is released. Idempotent.
    pub(crate) fn close(&self) {
        self.channel.close(Closed::Local);
    }
}

/// What woke a listener's waiter.
pub(crate) enum ListenerWake {
    Event(Value),
    Freed,
}

fn check_greeting(greeting: &Value) -> Result<()> {
    let qmp = &greeting["QMP"];
    if qmp["version"].is_object() && qmp["capabilities"].is_array() {
        Ok(())
    } else {
        Err(Error::Protocol(format!(
            "malformed QMP greeting: {greeting}"
        )))
    }
}

/// The error for a connection that ended during negotiation.
fn negotiation_error(closed: &Closed, what: &str, received: &str) -> Error {
    match closed {
        Closed::ByPeer(detail) => {
            Error::Disconnected(format!("{detail} before the {what} (received {received})"))
        }
        other => other.error("QMP"),
    }
}
