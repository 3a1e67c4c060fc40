//! A QMP client connection: greeting and capabilities negotiation, then a
//! reader thread that owns the read side. Replies are routed to the caller
//! that sent the command by the `id` the library adds; events go to a FIFO
//! queue; EOF or a protocol error becomes a sticky state that wakes every
//! waiter.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde_json::Value;

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::qmp::events::EventQueue;
use crate::qmp::framing::{parse_message, snippet, LineBuffer, Message};
use crate::qmp::trace::Trace;
use crate::socket::{Received, Socket};
use crate::threads;

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
    /// Commands awaiting a reply: `None` until the reader delivers it.
    replies: HashMap<u64, Option<Value>>,
    closed: Option<Closed>,
    /// Replies nobody was waiting for (late replies to timed-out commands,
    /// unknown ids): dropped, as the QMP specification asks, and counted.
    stray_replies: u64,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Where every line sent and received is logged, if anywhere.
    trace: Mutex<Option<Arc<Trace>>>,
}

impl Shared {
    fn trace(&self) -> Option<Arc<Trace>> {
        self.trace.lock().clone()
    }

    fn close(&self, reason: Closed) {
        let mut st = self.state.lock();
        if st.closed.is_none() {
            st.closed = Some(reason);
        }
        drop(st);
        self.wake.notify_all();
    }

    /// Route one message. `Err` ends the connection.
    fn dispatch(&self, msg: Message) -> Result<(), Closed> {
        let mut st = self.state.lock();
        match msg {
            Message::Event(ev) => st.events.push(ev),
            Message::Reply { id, body } => {
                let slot = id
                    .as_ref()
                    .and_then(Value::as_u64)
                    .and_then(|id| st.replies.get_mut(&id));
                match slot {
                    Some(slot) => *slot = Some(body),
                    None if id.is_none() && body.get("error").is_some() => {
                        // QEMU answers a command it could not parse with an
                        // error without id; it belongs to no caller and
                        // means the stream is out of step.
                        return Err(Closed::Protocol(format!(
                            "QEMU sent an error without an id: {body}"
                        )));
                    }
                    None => st.stray_replies += 1,
                }
            }
            Message::Greeting(g) => {
                return Err(Closed::Protocol(format!("unexpected second greeting: {g}")))
            }
        }
        drop(st);
        self.wake.notify_all();
        Ok(())
    }
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
    shared: Arc<Shared>,
    write_lock: Mutex<()>,
    reader: Mutex<Option<JoinHandle<()>>>,
    greeting: Value,
    next_id: AtomicU64,
}

impl QmpConnection {
    /// Read the greeting, negotiate capabilities, start the reader thread.
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
                Message::Event(v) | Message::Reply { body: v, .. } => {
                    return Err(Error::Protocol(format!(
                        "expected the QMP greeting, got: {v}"
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
                Message::Reply { id, body } if id == Some(Value::from(0)) => {
                    if let Some(err) = body.get("error") {
                        return Err(Error::Protocol(format!(
                            "qmp_capabilities was refused: {err}"
                        )));
                    }
                    break;
                }
                Message::Reply { body, .. } => {
                    return Err(Error::Protocol(format!(
                        "unexpected reply during negotiation: {body}"
                    )))
                }
                Message::Greeting(g) => {
                    return Err(Error::Protocol(format!("unexpected second greeting: {g}")))
                }
            }
        }

        let socket = Arc::new(socket);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                events,
                replies: HashMap::new(),
                closed: None,
                stray_replies: 0,
            }),
            wake: Condvar::new(),
            trace: Mutex::new(options.trace.clone()),
        });
        let reader = {
            let socket = Arc::clone(&socket);
            let shared = Arc::clone(&shared);
            threads::spawn("qmp-reader", move || reader_main(&socket, &shared, buf))
                .map_err(|e| Error::io("cannot start the QMP reader thread", e))?
        };
        Ok(QmpConnection {
            socket: Mutex::new(Some(socket)),
            shared,
            write_lock: Mutex::new(()),
            reader: Mutex::new(Some(reader)),
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
    ) -> Result<Value> {
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
    ) -> Result<Value> {
        self.execute_with(cmd, args, Some(fd), deadline)
    }

    fn execute_with(
        &self,
        cmd: &str,
        args: Option<&Value>,
        fd: Option<BorrowedFd<'_>>,
        deadline: Deadline,
    ) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let line = encode_command(cmd, args, id);
        {
            let mut st = self.shared.state.lock();
            if let Some(closed) = &st.closed {
                return Err(closed.error());
            }
            st.replies.insert(id, None);
        }
        if let Err(e) = self.send_line(&line, cmd, fd, deadline) {
            self.shared.state.lock().replies.remove(&id);
            return Err(e);
        }
        let mut st = self.shared.state.lock();
        let mut timed_out = false;
        loop {
            if matches!(st.replies.get(&id), Some(Some(_))) {
                return Ok(st.replies.remove(&id).flatten().expect("reply present"));
            }
            if let Some(closed) = &st.closed {
                let err = closed.error();
                st.replies.remove(&id);
                return Err(err);
            }
            if timed_out {
                st.replies.remove(&id);
                return Err(Error::Timeout(format!(
                    "no reply to '{cmd}' {}",
                    deadline.describe()
                )));
            }
            timed_out = !deadline.wait(&self.shared.wake, &mut st);
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
        if let Some(trace) = self.shared.trace() {
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
                    self.shared.close(Closed::Failed(format!(
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
        let mut st = self.shared.state.lock();
        let mut resume = 0;
        let mut timed_out = false;
        loop {
            match st.events.take_first(resume, &filter) {
                Ok(ev) => return Ok(ev),
                Err(next) => resume = next,
            }
            if let Some(closed) = &st.closed {
                return Err(closed.error());
            }
            if timed_out {
                let queued = st.events.len();
                let dropped = st.events.dropped();
                let mut msg = format!("no {} {}", describe(), deadline.describe());
                match queued {
                    0 => {}
                    1 => msg.push_str(" (1 other event is queued)"),
                    n => msg.push_str(&format!(" ({n} other events are queued)")),
                }
                if dropped > 0 {
                    msg.push_str(&format!(
                        "; {dropped} event(s) were dropped because the event queue was full"
                    ));
                }
                return Err(Error::Timeout(msg));
            }
            timed_out = !deadline.wait(&self.shared.wake, &mut st);
        }
    }

    /// Start (or stop, with `None`) tracing this connection's traffic.
    pub(crate) fn set_trace(&self, trace: Option<Arc<Trace>>) {
        *self.shared.trace.lock() = trace;
    }

    /// Wait until the connection is closed (QEMU exited or closed it).
    /// `false` if it is still open at the deadline.
    pub(crate) fn wait_closed(&self, deadline: Deadline) -> bool {
        let mut st = self.shared.state.lock();
        loop {
            if st.closed.is_some() {
                return true;
            }
            if !deadline.wait(&self.shared.wake, &mut st) {
                return st.closed.is_some();
            }
        }
    }

    /// Whether the connection is still open.
    pub(crate) fn is_open(&self) -> bool {
        self.shared.state.lock().closed.is_none()
    }

    /// All queued events, oldest first; the queue is left empty.
    pub(crate) fn take_events(&self) -> Vec<Value> {
        self.shared.state.lock().events.take_all()
    }

    pub(crate) fn events_dropped(&self) -> u64 {
        self.shared.state.lock().events.dropped()
    }

    pub(crate) fn stray_replies(&self) -> u64 {
        self.shared.state.lock().stray_replies
    }

    /// Close the connection and stop the reader thread. Queued events stay
    /// readable; every waiter wakes up. Idempotent. Events QEMU sent before
    /// closing its end are collected first: the reader gets up to `grace`
    /// to reach EOF on its own.
    pub(crate) fn close(&self, grace: Duration) {
        {
            let deadline = Deadline::after(Some(grace));
            let mut st = self.shared.state.lock();
            while st.closed.is_none() && deadline.wait(&self.shared.wake, &mut st) {}
        }
        self.shared.close(Closed::Local);
        let socket = self.socket.lock().take();
        if let Some(socket) = &socket {
            socket.shutdown();
        }
        if let Some(handle) = self.reader.lock().take() {
            let _ = handle.join();
        }
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

/// Read the next message during negotiation (before the reader thread).
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

fn reader_main(socket: &Socket, shared: &Shared, mut buf: LineBuffer) {
    let reason = 'read: loop {
        loop {
            let line = match buf.next_line() {
                Ok(Some(line)) => {
                    if let Some(trace) = shared.trace() {
                        trace.received(line);
                    }
                    line
                }
                Ok(None) => break,
                Err(e) => {
                    break 'read Closed::Protocol(format!(
                        "line longer than {} bytes: {}",
                        e.limit,
                        snippet(&e.head)
                    ))
                }
            };
            match parse_message(line) {
                Ok(None) => {}
                Ok(Some(msg)) => {
                    if let Err(reason) = shared.dispatch(msg) {
                        break 'read reason;
                    }
                }
                Err(detail) => break 'read Closed::Protocol(detail),
            }
        }
        match socket.recv(buf.spare(), Deadline::never(), None) {
            Ok(Received::Data(n)) => buf.commit(n),
            Ok(Received::Eof) if buf.partial().is_empty() => {
                break Closed::ByPeer("QEMU closed the QMP connection".into())
            }
            Ok(Received::Eof) => {
                break Closed::ByPeer(format!(
                    "QEMU closed the QMP connection in the middle of a message: {}",
                    snippet(buf.partial())
                ))
            }
            Ok(Received::Timeout) | Ok(Received::WatchFired) => continue,
            Err(e) => break Closed::Failed(e.to_string()),
        }
    };
    shared.close(reason);
}
