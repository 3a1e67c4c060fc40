//! A QMP client connection: greeting and capabilities negotiation, then
//! commands matched to their replies by the `id` the library adds, events
//! in a FIFO queue, and EOF or a protocol error as a sticky state that
//! wakes every waiter.
//!
//! There is no reader thread. A caller that waits (for its reply, an event,
//! the connection to close) and finds nobody reading becomes the *leader*:
//! it reads the socket itself, routing every message it meets — other
//! callers' replies, events — until its own condition holds, then hands
//! the read side on. Callers that find a leader wait on a condition
//! variable as *followers*. A lone caller therefore gets its reply without
//! any thread wake-up (the cost a reader thread adds to every command), and
//! a machine costs no thread at all. EOF is seen by whoever reads next;
//! followers wake on it.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde_json::Value;

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::qmp::events::EventQueue;
use crate::qmp::framing::{parse_message, snippet, LineBuffer, Message, Reply};
use crate::qmp::trace::Trace;
use crate::socket::{Received, Socket};

/// Why the connection can no longer be used.
#[derive(Debug, Clone)]
enum Closed {
    /// QEMU closed the connection (it exited, or was killed).
    ByPeer(String),
    /// Reading failed at the OS level.
    Failed(String),
    /// The peer sent something that is not QMP.
    Protocol(String),
    /// The library closed it (shutdown, kill, free).
    Local,
}

impl Closed {
    fn error(&self) -> Error {
        match self {
            Closed::ByPeer(detail) => Error::Disconnected(detail.clone()),
            Closed::Failed(detail) => {
                Error::Disconnected(format!("QMP connection failed: {detail}"))
            }
            Closed::Protocol(detail) => Error::Protocol(detail.clone()),
            Closed::Local => {
                Error::Disconnected("QMP connection closed (the machine was shut down)".into())
            }
        }
    }
}

#[derive(Debug)]
struct State {
    events: EventQueue,
    /// Commands awaiting a reply: `None` until it has been read.
    replies: HashMap<u64, Option<Reply>>,
    closed: Option<Closed>,
    /// Replies nobody was waiting for (late replies to timed-out commands,
    /// unknown ids): dropped, as the QMP specification asks, and counted.
    stray_replies: u64,
    /// A leader holds the read side.
    reading: bool,
}

impl State {
    fn close(&mut self, reason: Closed) {
        if self.closed.is_none() {
            self.closed = Some(reason);
        }
    }

    /// Route one message. `Err` ends the connection.
    fn dispatch(&mut self, msg: Message) -> Result<(), Closed> {
        match msg {
            Message::Event(ev) => self.events.push(ev),
            Message::Reply { id, reply } => {
                let slot = id
                    .as_ref()
                    .and_then(Value::as_u64)
                    .and_then(|id| self.replies.get_mut(&id));
                match slot {
                    Some(slot) => *slot = Some(reply),
                    None if id.is_none() && reply.is_error() => {
                        // QEMU answers a command it could not parse with an
                        // error without id; it belongs to no caller and
                        // means the stream is out of step.
                        return Err(Closed::Protocol(format!(
                            "QEMU sent an error without an id: {}",
                            reply.to_json_text()
                        )));
                    }
                    None => self.stray_replies += 1,
                }
            }
            Message::Greeting(g) => {
                return Err(Closed::Protocol(format!("unexpected second greeting: {g}")))
            }
        }
        Ok(())
    }
}

/// The read side: held by the leader only.
#[derive(Debug)]
struct ReadSide {
    /// `None` once the connection is closed.
    socket: Option<Arc<Socket>>,
    buf: LineBuffer,
}

/// What a leader's read turn ended with.
enum Turn<T> {
    /// The caller's condition holds.
    Done(T),
    /// The deadline passed.
    TimedOut,
}

/// Settings for a new connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnectOptions {
    pub event_queue_capacity: usize,
    pub trace: Option<Arc<Trace>>,
}

/// An established QMP session.
#[derive(Debug)]
pub(crate) struct QmpConnection {
    /// `None` once closed: the descriptor is released at close, while the
    /// events stay readable. Writers hold a clone for the duration of a send.
    socket: Mutex<Option<Arc<Socket>>>,
    state: Mutex<State>,
    /// Signalled when the state changes: a message was routed, the
    /// connection closed, or the leader handed the read side on.
    wake: Condvar,
    read_side: Mutex<ReadSide>,
    write_lock: Mutex<()>,
    /// Where every line sent and received is logged, if anywhere.
    trace: Mutex<Option<Arc<Trace>>>,
    greeting: Value,
    next_id: AtomicU64,
}

impl QmpConnection {
    /// Read the greeting and negotiate capabilities.
    /// `watch` (QEMU's pidfd) ends the wait early if QEMU exits.
    pub(crate) fn handshake(
        socket: Socket,
        deadline: Deadline,
        watch: Option<BorrowedFd<'_>>,
        options: &ConnectOptions,
    ) -> Result<QmpConnection> {
        let mut buf = LineBuffer::default();
        let mut events = EventQueue::new(options.event_queue_capacity);
        let trace = options.trace.as_deref();

        let greeting =
            match read_message(&socket, &mut buf, deadline, watch, trace, "QMP greeting")? {
                Message::Greeting(g) => g,
                Message::Event(v) => {
                    return Err(Error::Protocol(format!(
                        "expected the QMP greeting, got: {v}"
                    )))
                }
                Message::Reply { reply, .. } => {
                    return Err(Error::Protocol(format!(
                        "expected the QMP greeting, got: {}",
                        reply.to_json_text()
                    )))
                }
            };
        check_greeting(&greeting)?;

        let negotiate = b"{\"execute\":\"qmp_capabilities\",\"id\":0}\n";
        if let Some(t) = trace {
            t.sent(negotiate);
        }
        socket
            .send_all(negotiate, deadline)
            .map_err(|e| match e.error.kind() {
                std::io::ErrorKind::TimedOut => write_error(e.error, "qmp_capabilities"),
                _ => Error::Disconnected(format!(
                    "the QMP connection was closed before the reply to qmp_capabilities \
                 (sending qmp_capabilities failed: {})",
                    e.error
                )),
            })?;
        loop {
            match read_message(
                &socket,
                &mut buf,
                deadline,
                watch,
                trace,
                "reply to qmp_capabilities",
            )? {
                Message::Event(ev) => events.push(ev),
                Message::Reply { id, reply } if id == Some(Value::from(0)) => {
                    if reply.is_error() {
                        return Err(Error::Protocol(format!(
                            "qmp_capabilities was refused: {}",
                            reply.member_text()
                        )));
                    }
                    break;
                }
                Message::Reply { reply, .. } => {
                    return Err(Error::Protocol(format!(
                        "unexpected reply during negotiation: {}",
                        reply.to_json_text()
                    )))
                }
                Message::Greeting(g) => {
                    return Err(Error::Protocol(format!("unexpected second greeting: {g}")))
                }
            }
        }

        let socket = Arc::new(socket);
        Ok(QmpConnection {
            socket: Mutex::new(Some(Arc::clone(&socket))),
            state: Mutex::new(State {
                events,
                replies: HashMap::new(),
                closed: None,
                stray_replies: 0,
                reading: false,
            }),
            wake: Condvar::new(),
            read_side: Mutex::new(ReadSide {
                socket: Some(socket),
                buf,
            }),
            write_lock: Mutex::new(()),
            trace: Mutex::new(options.trace.clone()),
            greeting,
            next_id: AtomicU64::new(1),
        })
    }

    /// The greeting QEMU sent (`{"QMP": {"version": ..., "capabilities": ...}}`).
    pub(crate) fn greeting(&self) -> &Value {
        &self.greeting
    }

    /// Send a command and wait for its reply (`return` or `error`), with the
    /// library's `id` removed.
    pub(crate) fn execute(
        &self,
        cmd: &str,
        args: Option<&Value>,
        deadline: Deadline,
    ) -> Result<Reply> {
        self.execute_with(cmd, args, None, deadline)
    }

    /// Like [`QmpConnection::execute`], passing `fd` along with the command
    /// as `SCM_RIGHTS` ancillary data (for `getfd`, `add-fd`). Unix sockets
    /// only.
    pub(crate) fn execute_with_fd(
        &self,
        cmd: &str,
        args: Option<&Value>,
        fd: BorrowedFd<'_>,
        deadline: Deadline,
    ) -> Result<Reply> {
        self.execute_with(cmd, args, Some(fd), deadline)
    }

    fn execute_with(
        &self,
        cmd: &str,
        args: Option<&Value>,
        fd: Option<BorrowedFd<'_>>,
        deadline: Deadline,
    ) -> Result<Reply> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let line = encode_command(cmd, args, id);
        {
            let mut st = self.state.lock();
            if let Some(closed) = &st.closed {
                return Err(closed.error());
            }
            st.replies.insert(id, None);
        }
        if let Err(e) = self.send_line(&line, cmd, fd, deadline) {
            self.state.lock().replies.remove(&id);
            return Err(e);
        }
        let reply = self.wait_for(deadline, |st| match st.replies.get(&id) {
            Some(Some(_)) => st.replies.remove(&id).flatten(),
            _ => None,
        });
        match reply {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => {
                self.state.lock().replies.remove(&id);
                Err(Error::Timeout(format!(
                    "no reply to '{cmd}' {}",
                    deadline.describe()
                )))
            }
            Err(e) => {
                self.state.lock().replies.remove(&id);
                Err(e)
            }
        }
    }

    /// Wait until `check` yields a value (`Ok(Some)`), the deadline passes
    /// (`Ok(None)`), or the connection is closed and `check` still yields
    /// nothing (`Err`). `check` runs with the state locked, first on what
    /// is already there, then after every message routed. The caller reads
    /// the socket itself when nobody else is.
    fn wait_for<T>(
        &self,
        deadline: Deadline,
        mut check: impl FnMut(&mut State) -> Option<T>,
    ) -> Result<Option<T>> {
        let mut st = self.state.lock();
        let mut timed_out = false;
        loop {
            if let Some(v) = check(&mut st) {
                return Ok(Some(v));
            }
            if let Some(closed) = &st.closed {
                return Err(closed.error());
            }
            if timed_out {
                return Ok(None);
            }
            if st.reading {
                timed_out = !deadline.wait(&self.wake, &mut st);
                continue;
            }
            // Lead: read until our condition holds, then hand on.
            st.reading = true;
            drop(st);
            let turn = self.lead(deadline, &mut check);
            st = self.state.lock();
            st.reading = false;
            self.wake.notify_all();
            match turn {
                Turn::Done(v) => return Ok(Some(v)),
                Turn::TimedOut => timed_out = true,
            }
        }
    }

    /// The leader's turn: read and route messages until `check` yields, the
    /// connection closes (recorded in the state; the caller's loop reports
    /// it) or the deadline passes.
    fn lead<T>(
        &self,
        deadline: Deadline,
        check: &mut impl FnMut(&mut State) -> Option<T>,
    ) -> Turn<T> {
        let mut rs = self.read_side.lock();
        let rs = &mut *rs;
        let trace = self.trace.lock().clone();
        loop {
            // Route every complete line, then look at the result once.
            let mut st = self.state.lock();
            let mut routed = false;
            let failure = loop {
                match rs.buf.next_line() {
                    Ok(Some(line)) => {
                        if let Some(t) = &trace {
                            t.received(line);
                        }
                        match parse_message(line) {
                            Ok(None) => {}
                            Ok(Some(msg)) => {
                                routed = true;
                                if let Err(reason) = st.dispatch(msg) {
                                    break Some(reason);
                                }
                            }
                            Err(detail) => break Some(Closed::Protocol(detail)),
                        }
                    }
                    Ok(None) => break None,
                    Err(e) => {
                        break Some(Closed::Protocol(format!(
                            "line longer than {} bytes: {}",
                            e.limit,
                            snippet(&e.head)
                        )))
                    }
                }
            };
            if let Some(reason) = failure {
                st.close(reason);
            }
            if routed {
                // Followers may be waiting for what was just routed.
                self.wake.notify_all();
            }
            if let Some(v) = check(&mut st) {
                return Turn::Done(v);
            }
            if st.closed.is_some() {
                // The caller's loop reports it.
                return Turn::TimedOut;
            }
            drop(st);
            let Some(socket) = rs.socket.clone() else {
                self.state.lock().close(Closed::Local);
                return Turn::TimedOut;
            };
            let closed = match socket.recv(rs.buf.spare(), deadline, None) {
                Ok(Received::Data(n)) => {
                    rs.buf.commit(n);
                    continue;
                }
                Ok(Received::Timeout) | Ok(Received::WatchFired) => return Turn::TimedOut,
                Ok(Received::Eof) if rs.buf.partial().is_empty() => {
                    Closed::ByPeer("QEMU closed the QMP connection".into())
                }
                Ok(Received::Eof) => Closed::ByPeer(format!(
                    "QEMU closed the QMP connection in the middle of a message: {}",
                    snippet(rs.buf.partial())
                )),
                Err(e) => Closed::Failed(e.to_string()),
            };
            self.state.lock().close(closed);
            self.wake.notify_all();
        }
    }

    fn send_line(
        &self,
        line: &[u8],
        cmd: &str,
        fd: Option<BorrowedFd<'_>>,
        deadline: Deadline,
    ) -> Result<()> {
        let socket = self
            .socket
            .lock()
            .clone()
            .ok_or_else(|| Closed::Local.error())?;
        let _w = self.write_lock.lock();
        if let Some(trace) = self.trace.lock().clone() {
            trace.sent(line);
            if let Some(fd) = fd {
                trace.note(&format!(
                    "(fd {} passed with the line above)",
                    fd.as_raw_fd()
                ));
            }
        }
        let result = match fd {
            Some(fd) => socket.send_with_fd(line, fd, deadline),
            None => socket.send_all(line, deadline),
        };
        match result {
            Ok(()) => Ok(()),
            Err(partial) => {
                if partial.sent > 0 {
                    // Half a command is in the stream: nothing sent after it
                    // could be parsed by QEMU any more.
                    self.state.lock().close(Closed::Failed(format!(
                        "'{cmd}' was only partly written ({} of {} bytes): {}",
                        partial.sent,
                        line.len(),
                        partial.error
                    )));
                }
                Err(write_error(partial.error, cmd))
            }
        }
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
        let found = self.wait_for(deadline, |st| match st.events.take_first(resume, &filter) {
            Ok(ev) => Some(ev),
            Err(next) => {
                resume = next;
                None
            }
        })?;
        if let Some(ev) = found {
            return Ok(ev);
        }
        let st = self.state.lock();
        let mut msg = format!("no {} {}", describe(), deadline.describe());
        match st.events.len() {
            0 => {}
            1 => msg.push_str(" (1 other event is queued)"),
            n => msg.push_str(&format!(" ({n} other events are queued)")),
        }
        let dropped = st.events.dropped();
        if dropped > 0 {
            msg.push_str(&format!(
                "; {dropped} event(s) were dropped because the event queue was full"
            ));
        }
        Err(Error::Timeout(msg))
    }

    /// Start (or stop, with `None`) tracing this connection's traffic.
    pub(crate) fn set_trace(&self, trace: Option<Arc<Trace>>) {
        *self.trace.lock() = trace;
    }

    /// Wait until the connection is closed (QEMU exited or closed it),
    /// routing what arrives meanwhile. `false` if it is still open at the
    /// deadline.
    pub(crate) fn wait_closed(&self, deadline: Deadline) -> bool {
        !matches!(
            self.wait_for(deadline, |st| st.closed.is_some().then_some(())),
            Ok(None)
        )
    }

    /// Whether the connection is still open. Reads what has arrived (without
    /// waiting), so that a peer that has gone is noticed.
    pub(crate) fn is_open(&self) -> bool {
        !self.wait_closed(Deadline::after(Some(Duration::ZERO)))
    }

    /// All queued events, oldest first, including those already received
    /// but not yet read; the queue is left empty.
    pub(crate) fn take_events(&self) -> Vec<Value> {
        let _ = self.wait_for(Deadline::after(Some(Duration::ZERO)), |_| None::<()>);
        self.state.lock().events.take_all()
    }

    pub(crate) fn events_dropped(&self) -> u64 {
        self.state.lock().events.dropped()
    }

    pub(crate) fn stray_replies(&self) -> u64 {
        self.state.lock().stray_replies
    }

    /// Close the connection. Queued events stay readable; every waiter
    /// wakes up; the descriptor is released. Idempotent. Events QEMU sent
    /// before closing its end are collected first: up to `grace` is spent
    /// reading them until EOF.
    pub(crate) fn close(&self, grace: Duration) {
        self.wait_closed(Deadline::after(Some(grace)));
        self.state.lock().close(Closed::Local);
        let socket = self.socket.lock().take();
        if let Some(socket) = &socket {
            // Wakes a leader blocked in a read: it sees EOF at once.
            socket.shutdown();
        }
        self.wake.notify_all();
        let mut rs = self.read_side.lock();
        rs.socket = None;
        rs.buf = LineBuffer::default();
        drop(rs);
        // The descriptor closes here, or when the last in-flight writer
        // (woken by the shutdown) lets go of it.
        drop(socket);
    }
}

impl Drop for QmpConnection {
    fn drop(&mut self) {
        self.close(Duration::ZERO);
    }
}

fn encode_command(cmd: &str, args: Option<&Value>, id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + cmd.len());
    out.extend_from_slice(b"{\"execute\":");
    serde_json::to_writer(&mut out, cmd).expect("writing to a Vec cannot fail");
    if let Some(args) = args {
        out.extend_from_slice(b",\"arguments\":");
        serde_json::to_writer(&mut out, args).expect("writing to a Vec cannot fail");
    }
    writeln!(out, ",\"id\":{id}}}").expect("writing to a Vec cannot fail");
    out
}

fn write_error(err: std::io::Error, cmd: &str) -> Error {
    match err.kind() {
        std::io::ErrorKind::TimedOut => Error::Timeout(format!(
            "could not send '{cmd}' in time (QEMU is not reading its monitor)"
        )),
        _ => Error::Disconnected(format!("cannot send '{cmd}' to QEMU: {err}")),
    }
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

/// Read the next message during negotiation.
fn read_message(
    socket: &Socket,
    buf: &mut LineBuffer,
    deadline: Deadline,
    watch: Option<BorrowedFd<'_>>,
    trace: Option<&Trace>,
    what: &str,
) -> Result<Message> {
    loop {
        while let Some(line) = buf.next_line().map_err(|e| {
            Error::Protocol(format!(
                "line longer than {} bytes: {}",
                e.limit,
                snippet(&e.head)
            ))
        })? {
            if let Some(t) = trace {
                t.received(line);
            }
            if let Some(msg) = parse_message(line).map_err(Error::Protocol)? {
                return Ok(msg);
            }
        }
        let received = |buf: &LineBuffer| {
            if buf.partial().is_empty() {
                "nothing".to_string()
            } else {
                snippet(buf.partial())
            }
        };
        match socket.recv(buf.spare(), deadline, watch) {
            Ok(Received::Data(n)) => buf.commit(n),
            Ok(Received::Eof) => {
                return Err(Error::Disconnected(format!(
                    "the QMP connection was closed before the {what} (received {})",
                    received(buf)
                )))
            }
            Ok(Received::WatchFired) => {
                return Err(Error::Disconnected(format!(
                    "QEMU exited before the {what} (received {})",
                    received(buf)
                )))
            }
            Ok(Received::Timeout) => {
                return Err(Error::Timeout(format!(
                    "no {what} {} (received {})",
                    deadline.describe(),
                    received(buf)
                )))
            }
            Err(e) => return Err(Error::io(format!("reading the {what}"), e)),
        }
    }
}
