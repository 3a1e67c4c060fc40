//! A line protocol over a socket, shared by threads: the machinery under
//! QMP, the guest agent and qtest. Each protocol only says how a line is
//! routed ([`Protocol`]); the channel does the rest:
//!
//! - **No reader thread** (leader/follower). A caller that waits (for its
//!   reply, an event, the channel to close) and finds nobody reading
//!   becomes the *leader*: it reads the socket itself, routing every line it
//!   meets — other callers' replies, events — until its own condition
//!   holds, then hands the read side on. Callers that find a leader wait on
//!   a condition variable as *followers*. A lone caller gets its reply with
//!   no thread wake-up, and a machine costs no thread at all.
//! - **One deadline per call**, checked after every chunk read, so a peer
//!   that never stops sending cannot hold a caller past it.
//! - **QEMU's death is seen at once**: the leader polls QEMU's pidfd next to
//!   the socket. When QEMU has exited, whatever it wrote is already in the
//!   socket; that is read, then the channel closes — also when another
//!   process (a wrapper's child) still holds QEMU's end open, so no EOF
//!   would ever come.
//! - **Writes never poison the stream.** Output goes through a queue: a
//!   command that cannot be written in time is withdrawn if none of it went
//!   out, and otherwise stays queued and is completed by whoever writes or
//!   reads next, so the peer never sees half a line followed by the next
//!   command. Writes never block: the caller polls for room until its
//!   deadline.
//! - **An event loop can drive it** ([`Channel::dispatch`],
//!   [`Channel::loop_fd`]): routing what has arrived never blocks, and
//!   returns at once when another thread is the leader.

mod ordered;

pub(crate) use ordered::{Ordered, OrderedReplies};

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Condvar, Mutex, MutexGuard};
use rustix::event::{epoll, PollFlags};

use crate::deadline::Deadline;
use crate::error::Error;
use crate::qmp::framing::{snippet, LineBuffer, LineTooLong};
use crate::qmp::trace::Trace;
use crate::socket::{above_stdio, wait_ready, EventFd, Socket};

/// How a protocol routes what arrives.
pub(crate) trait Protocol: Send {
    /// One complete line (without its `\n`). `Err` ends the channel: the
    /// peer broke the protocol.
    fn route(&mut self, line: &[u8]) -> Result<(), String>;

    /// A line longer than the limit arrived and was dropped. `Err` (the
    /// default) ends the channel; a protocol that can resynchronize may go
    /// on.
    fn too_long(&mut self, err: LineTooLong) -> Result<(), String> {
        Err(format!(
            "a line longer than {} bytes: {}",
            err.limit,
            snippet(&err.head)
        ))
    }
}

/// Why a channel can no longer be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Closed {
    /// The peer closed the connection (QEMU exited, or was killed); the
    /// message says so.
    ByPeer(String),
    /// Reading or writing failed at the OS level.
    Failed(String),
    /// The peer sent something its protocol does not allow.
    Protocol(String),
    /// The library closed it (shutdown, kill, free).
    Local,
}

impl Closed {
    /// The error every later call on the channel gets.
    pub(crate) fn error(&self, name: &str) -> Error {
        match self {
            Closed::ByPeer(detail) => Error::Disconnected(detail.clone()),
            Closed::Failed(detail) => {
                Error::Disconnected(format!("the {name} connection failed: {detail}"))
            }
            Closed::Protocol(detail) => Error::Protocol(detail.clone()),
            Closed::Local => Error::Disconnected(format!(
                "the {name} connection is closed (the machine was shut down)"
            )),
        }
    }
}

/// Protocol state plus what every channel tracks, under one lock.
pub(crate) struct State<P> {
    pub proto: P,
    closed: Option<Closed>,
    /// A leader holds the read side.
    reading: bool,
}

/// Why a send did not complete.
#[derive(Debug)]
pub(crate) enum SendError {
    /// Nothing of it was written; it was withdrawn (`bytes_ahead` of
    /// earlier output were still waiting for the peer to read them).
    NotSent { bytes_ahead: u64 },
    /// Part of it is on the wire; the rest stays queued and goes out as
    /// the peer reads.
    PartlySent { sent: usize, total: usize },
    /// The channel is closed.
    Closed(Closed),
    /// Writing failed (the peer is gone).
    Failed(io::Error),
}

/// Output not yet written, oldest first.
#[derive(Debug, Default)]
struct Output {
    chunks: VecDeque<Chunk>,
    next_id: u64,
    /// Set once a write failed: nothing more can be sent.
    broken: Option<String>,
}

#[derive(Debug)]
struct Chunk {
    id: u64,
    data: Vec<u8>,
    /// Bytes of `data` already written.
    written: usize,
    /// Passed with the first byte as `SCM_RIGHTS`.
    fd: Option<OwnedFd>,
}

/// Where a queued chunk stands.
enum Progress {
    Done,
    NotStarted { bytes_ahead: u64 },
    Partial { sent: usize, total: usize },
}

impl Output {
    /// Write queued chunks until the socket would block. `Err` if writing
    /// failed for good.
    fn flush(&mut self, socket: &Socket) -> io::Result<()> {
        while let Some(chunk) = self.chunks.front_mut() {
            let rest = &chunk.data[chunk.written..];
            let n = match (chunk.written, &chunk.fd) {
                (0, Some(fd)) => socket.try_send_with_fd(rest, fd.as_fd())?,
                _ => socket.try_send(rest)?,
            };
            let Some(n) = n else {
                return Ok(());
            };
            chunk.written += n;
            chunk.fd = None;
            if chunk.written == chunk.data.len() {
                self.chunks.pop_front();
            }
        }
        Ok(())
    }

    fn progress(&self, id: u64) -> Progress {
        let mut ahead = 0u64;
        for chunk in &self.chunks {
            if chunk.id == id {
                return if chunk.written == 0 {
                    Progress::NotStarted { bytes_ahead: ahead }
                } else {
                    Progress::Partial {
                        sent: chunk.written,
                        total: chunk.data.len(),
                    }
                };
            }
            ahead += (chunk.data.len() - chunk.written) as u64;
        }
        Progress::Done
    }

    fn remove(&mut self, id: u64) {
        self.chunks.retain(|c| c.id != id);
    }
}

/// What a leader's turn ended with.
enum Turn<T> {
    Done(T),
    TimedOut,
    Closed,
}

/// The descriptor an event loop polls: an epoll set holding the socket,
/// QEMU's pidfd, an eventfd set when the channel closes and one set when
/// a thread other than the loop's routed input, so that it is readable
/// when input waits, when something arrived that the loop did not route
/// itself, when QEMU has exited, and forever once the channel is closed.
/// Writable interest is added while output is queued.
#[derive(Debug)]
struct LoopFd {
    epoll: OwnedFd,
    ended: EventFd,
    /// Set when a blocking call routed input; cleared by dispatch.
    routed: EventFd,
    socket: RawFd,
}

/// A line-protocol channel.
pub(crate) struct Channel<P> {
    /// "QMP", "guest agent", "qtest": for messages.
    name: &'static str,
    /// `None` once closed: the descriptor is released at close. Users hold
    /// a clone while they poll or write.
    socket: Mutex<Option<Arc<Socket>>>,
    state: Mutex<State<P>>,
    /// Signalled when the state changes: lines were routed, the channel
    /// closed, or the leader handed the read side on.
    wake: Condvar,
    /// The read side: held by the leader only.
    reader: Mutex<LineBuffer>,
    output: Mutex<Output>,
    /// Output is queued (read without the lock by leaders).
    output_queued: AtomicBool,
    /// QEMU's pidfd, readable once QEMU has exited; `None` for a QEMU the
    /// library did not start, and once the channel is closed (the
    /// descriptor is released then).
    exit: Mutex<Option<Arc<OwnedFd>>>,
    trace: Mutex<Option<Arc<Trace>>>,
    loop_fd: OnceLock<LoopFd>,
    /// Bytes written in total, for the benchmark's accounting.
    bytes_written: AtomicU64,
}

impl<P: Protocol> Channel<P> {
    pub(crate) fn new(
        name: &'static str,
        socket: Socket,
        exit: Option<Arc<OwnedFd>>,
        max_line: usize,
        proto: P,
    ) -> Channel<P> {
        Channel {
            name,
            socket: Mutex::new(Some(Arc::new(socket))),
            state: Mutex::new(State {
                proto,
                closed: None,
                reading: false,
            }),
            wake: Condvar::new(),
            reader: Mutex::new(LineBuffer::new(max_line)),
            output: Mutex::new(Output::default()),
            output_queued: AtomicBool::new(false),
            exit: Mutex::new(exit),
            trace: Mutex::new(None),
            loop_fd: OnceLock::new(),
            bytes_written: AtomicU64::new(0),
        }
    }

    /// The protocol state, locked. Never held across I/O.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State<P>> {
        self.state.lock()
    }

    /// Wake every follower (after changing state they wait on).
    pub(crate) fn notify(&self) {
        self.wake.notify_all();
    }

    pub(crate) fn set_trace(&self, trace: Option<Arc<Trace>>) {
        *self.trace.lock() = trace;
    }

    pub(crate) fn trace(&self) -> Option<Arc<Trace>> {
        self.trace.lock().clone()
    }

    pub(crate) fn closed(&self) -> Option<Closed> {
        self.state.lock().closed.clone()
    }

    pub(crate) fn bytes_written(&self) -> u64 {
        self.bytes_written.load(Ordering::Relaxed)
    }

    /// What arrived after the last complete line, for messages.
    pub(crate) fn partial_input(&self) -> String {
        let reader = self.reader.lock();
        if reader.partial().is_empty() {
            "nothing".to_string()
        } else {
            snippet(reader.partial())
        }
    }

    /// Send `line` (with `fd` passed along, if given). `enqueue` runs under
    /// the state lock in the order lines go on the wire (a protocol that
    /// matches replies by order records the request there); `withdraw`
    /// undoes it if nothing of the line was written by the deadline. With
    /// no deadline, what the socket does not take at once stays queued and
    /// goes out as later callers write or read: the call never blocks.
    pub(crate) fn send(
        &self,
        line: &[u8],
        fd: Option<BorrowedFd<'_>>,
        deadline: Option<Deadline>,
        enqueue: impl FnOnce(&mut P),
        withdraw: impl FnOnce(&mut P),
    ) -> Result<(), SendError> {
        let socket = self.socket().map_err(SendError::Closed)?;
        let id = {
            let mut out = self.output.lock();
            if let Some(why) = out.broken.clone() {
                drop(out);
                return Err(self.write_failed(why));
            }
            {
                let mut st = self.state.lock();
                if let Some(closed) = &st.closed {
                    return Err(SendError::Closed(closed.clone()));
                }
                enqueue(&mut st.proto);
            }
            if let Some(trace) = self.trace() {
                trace.sent(line);
                if let Some(fd) = fd {
                    trace.note(&format!(
                        "(fd {} passed with the line above)",
                        fd.as_raw_fd()
                    ));
                }
            }
            let fd = match fd.map(|f| f.try_clone_to_owned()).transpose() {
                Ok(fd) => fd,
                Err(e) => {
                    drop(out);
                    withdraw(&mut self.state.lock().proto);
                    return Err(SendError::Failed(e));
                }
            };
            let id = out.next_id;
            out.next_id += 1;
            out.chunks.push_back(Chunk {
                id,
                data: line.to_vec(),
                written: 0,
                fd,
            });
            self.bytes_written
                .fetch_add(line.len() as u64, Ordering::Relaxed);
            self.flush_locked(&mut out, &socket);
            id
        };
        let Some(deadline) = deadline else {
            return Ok(());
        };
        loop {
            let progress = {
                let mut out = self.output.lock();
                let progress = out.progress(id);
                if matches!(progress, Progress::Done) {
                    return Ok(());
                }
                // `Err(why)`: a write failed, the peer is most likely gone.
                let failure = match (self.closed(), &out.broken) {
                    (Some(closed), _) => Some(Ok(SendError::Closed(closed))),
                    (None, Some(why)) => Some(Err(why.clone())),
                    (None, None) if deadline.expired() => Some(Ok(match progress {
                        Progress::NotStarted { bytes_ahead } => SendError::NotSent { bytes_ahead },
                        Progress::Partial { sent, total } => SendError::PartlySent { sent, total },
                        Progress::Done => unreachable!("returned above"),
                    })),
                    (None, None) => None,
                };
                if let Some(failure) = failure {
                    if let Progress::NotStarted { .. } = progress {
                        out.remove(id);
                        self.output_queued
                            .store(!out.chunks.is_empty(), Ordering::SeqCst);
                        drop(out);
                        withdraw(&mut self.state.lock().proto);
                    } else {
                        drop(out);
                    }
                    return Err(failure.unwrap_or_else(|why| self.write_failed(why)));
                }
                progress
            };
            debug_assert!(!matches!(progress, Progress::Done));
            let exit = self.exit.lock().clone();
            let exit = exit.as_deref().map(AsFd::as_fd);
            match wait_ready(socket.as_fd(), PollFlags::OUT, exit, None, deadline) {
                Ok(ready) if ready.exited && !ready.writable => {
                    // QEMU is gone; the reader reports how.
                    let mut out = self.output.lock();
                    out.broken.get_or_insert_with(|| "QEMU exited".to_string());
                }
                Ok(_) => self.flush_locked(&mut self.output.lock(), &socket),
                Err(e) => {
                    self.output.lock().broken = Some(e.to_string());
                }
            }
        }
    }

    /// A write failed (`why`): the peer is most likely gone. Read what it
    /// left, without blocking, so the failure is reported the way the
    /// reader sees it (EOF, a protocol error) rather than as a bare
    /// "broken pipe" that races with the peer's close.
    fn write_failed(&self, why: String) -> SendError {
        let _ = self.dispatch();
        match self.closed() {
            Some(closed) => SendError::Closed(closed),
            None => SendError::Failed(io::Error::new(io::ErrorKind::BrokenPipe, why)),
        }
    }

    fn flush_locked(&self, out: &mut Output, socket: &Socket) {
        if out.broken.is_none() {
            if let Err(e) = out.flush(socket) {
                out.broken = Some(e.to_string());
            }
        }
        let queued = !out.chunks.is_empty() && out.broken.is_none();
        if self.output_queued.swap(queued, Ordering::SeqCst) != queued {
            self.update_loop_interest(queued);
        }
    }

    fn socket(&self) -> Result<Arc<Socket>, Closed> {
        if let Some(socket) = self.socket.lock().clone() {
            return Ok(socket);
        }
        Err(self.closed().unwrap_or(Closed::Local))
    }

    /// Wait until `check` yields a value (`Ok(Some)`), the deadline passes
    /// (`Ok(None)`), or the channel is closed and `check` still yields
    /// nothing (`Err`). `check` runs under the state lock, first on what is
    /// already there, then after every batch of lines routed. The caller
    /// reads the socket itself when nobody else does. `interrupt`, if
    /// given, is polled by the caller while it leads; it must be readable
    /// only while `check` yields (or is about to), or the leader spins.
    pub(crate) fn wait_for<T>(
        &self,
        deadline: Deadline,
        interrupt: Option<BorrowedFd<'_>>,
        mut check: impl FnMut(&mut State<P>) -> Option<T>,
    ) -> Result<Option<T>, Closed> {
        let mut st = self.state.lock();
        let mut timed_out = false;
        loop {
            if let Some(v) = check(&mut st) {
                return Ok(Some(v));
            }
            if let Some(closed) = &st.closed {
                return Err(closed.clone());
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
            let turn = self.lead(deadline, interrupt, &mut check);
            st = self.state.lock();
            st.reading = false;
            self.wake.notify_all();
            match turn {
                Turn::Done(v) => return Ok(Some(v)),
                Turn::TimedOut => timed_out = true,
                Turn::Closed => {}
            }
        }
    }

    /// Route whatever has arrived, without ever blocking: returns at once
    /// when another thread is reading (that thread routes it). Also writes
    /// queued output the socket takes now. `Err` once the channel is
    /// closed.
    pub(crate) fn dispatch(&self) -> Result<(), Closed> {
        {
            let mut st = self.state.lock();
            // Whatever a blocking call routed so far is visible to the
            // loop once this returns; what it routes later sets the flag
            // again (both under the state lock, so a route is either
            // before the clear or sets the flag after it).
            if let Some(fd) = self.loop_fd.get() {
                fd.routed.clear();
            }
            if let Some(closed) = &st.closed {
                return Err(closed.clone());
            }
            if st.reading {
                return Ok(());
            }
            st.reading = true;
        }
        // A bounded number of reads: a peer that never stops sending must
        // not keep the event loop here.
        const ROUNDS: usize = 64;
        let mut reader = self.reader.lock();
        for _ in 0..ROUNDS {
            if let Some(reason) = self.route_lines(&mut reader, false) {
                self.close(reason);
                break;
            }
            if !self.read_once(&mut reader, Deadline::poll(), None) {
                break;
            }
        }
        if let Some(reason) = self.route_lines(&mut reader, false) {
            self.close(reason);
        }
        drop(reader);
        let mut st = self.state.lock();
        st.reading = false;
        self.wake.notify_all();
        match &st.closed {
            Some(closed) => Err(closed.clone()),
            None => Ok(()),
        }
    }

    /// The leader's turn: read and route until `check` yields, the channel
    /// closes or the deadline passes.
    fn lead<T>(
        &self,
        deadline: Deadline,
        interrupt: Option<BorrowedFd<'_>>,
        check: &mut impl FnMut(&mut State<P>) -> Option<T>,
    ) -> Turn<T> {
        let mut reader = self.reader.lock();
        // A poll (a deadline already passed) still reads once.
        let mut first = true;
        loop {
            if let Some(reason) = self.route_lines(&mut reader, true) {
                self.close(reason);
            }
            {
                let mut st = self.state.lock();
                if let Some(v) = check(&mut st) {
                    return Turn::Done(v);
                }
                if st.closed.is_some() {
                    return Turn::Closed;
                }
            }
            // Checked after every chunk: a peer that never stops sending
            // cannot hold the caller past its deadline.
            if deadline.expired() && !first {
                return Turn::TimedOut;
            }
            first = false;
            if !self.read_once(&mut reader, deadline, interrupt) && deadline.expired() {
                return Turn::TimedOut;
            }
        }
    }

    /// Route every complete line. `Some(reason)` if the peer broke the
    /// protocol (the caller closes the channel). `wake_loop`: the caller is
    /// a blocking call, not [`Channel::dispatch`], so an event loop must
    /// learn that something arrived.
    fn route_lines(&self, reader: &mut LineBuffer, wake_loop: bool) -> Option<Closed> {
        let trace = self.trace();
        let mut st = self.state.lock();
        let mut routed = false;
        let mut failure = None;
        loop {
            let outcome = match reader.next_line() {
                Ok(Some(line)) => {
                    if let Some(t) = &trace {
                        t.received(line);
                    }
                    st.proto.route(line)
                }
                Ok(None) => break,
                Err(too_long) => st.proto.too_long(too_long),
            };
            routed = true;
            if let Err(detail) = outcome {
                failure = Some(Closed::Protocol(format!("{}: {detail}", self.name)));
                break;
            }
        }
        if routed && wake_loop {
            // Under the state lock: whoever sees what was routed and then
            // dispatches clears the flag after this sets it.
            if let Some(fd) = self.loop_fd.get() {
                fd.routed.set();
            }
        }
        drop(st);
        if routed {
            // Followers may be waiting for what was just routed.
            self.wake.notify_all();
        }
        failure
    }

    /// One poll and read. `true` if something happened (input read, output
    /// written, the channel closed, the interrupt fired), `false` if the
    /// deadline passed with nothing to do.
    fn read_once(
        &self,
        reader: &mut LineBuffer,
        deadline: Deadline,
        interrupt: Option<BorrowedFd<'_>>,
    ) -> bool {
        let socket = match self.socket() {
            Ok(s) => s,
            Err(_) => {
                self.close(Closed::Local);
                return true;
            }
        };
        let mut events = PollFlags::IN;
        if self.output_queued.load(Ordering::SeqCst) {
            events |= PollFlags::OUT;
        }
        let exit = self.exit.lock().clone();
        let exit = exit.as_deref().map(AsFd::as_fd);
        let ready = match wait_ready(socket.as_fd(), events, exit, interrupt, deadline) {
            Ok(ready) => ready,
            Err(e) => {
                self.close(Closed::Failed(e.to_string()));
                return true;
            }
        };
        if ready.timed_out {
            return false;
        }
        if ready.writable {
            self.flush_locked(&mut self.output.lock(), &socket);
        }
        if ready.readable {
            match socket.try_recv(reader.spare()) {
                Ok(Some(0)) => {
                    let what = if reader.partial().is_empty() {
                        format!("QEMU closed the {} connection", self.name)
                    } else {
                        format!(
                            "QEMU closed the {} connection in the middle of a message: {}",
                            self.name,
                            snippet(reader.partial())
                        )
                    };
                    self.close(Closed::ByPeer(what));
                }
                Ok(Some(n)) => reader.commit(n),
                Ok(None) => {}
                Err(e) => self.close(Closed::Failed(e.to_string())),
            }
        } else if ready.exited {
            // QEMU closed its descriptors before its pidfd became readable:
            // everything it wrote has been read, and no EOF came, so
            // another process holds its end of the socket.
            self.close(Closed::ByPeer(format!(
                "QEMU exited (another process still holds its end of the {} connection)",
                self.name
            )));
        }
        true
    }

    /// Close the channel. What was routed stays; every waiter wakes up; the
    /// descriptor is released (when the last writer or reader lets go of
    /// it). Idempotent: the first reason is kept.
    pub(crate) fn close(&self, reason: Closed) {
        {
            let mut st = self.state.lock();
            st.closed.get_or_insert(reason);
        }
        let socket = self.socket.lock().take();
        if let Some(socket) = &socket {
            // Wakes a leader blocked in poll: it sees EOF at once.
            socket.shutdown();
        }
        self.exit.lock().take();
        self.output
            .lock()
            .broken
            .get_or_insert_with(|| "the connection is closed".to_string());
        self.output_queued.store(false, Ordering::SeqCst);
        if let Some(fd) = self.loop_fd.get() {
            fd.ended.set();
        }
        self.wake.notify_all();
    }

    /// Read until the channel closes (the peer closed it or QEMU exited),
    /// routing what arrives. `false` if it is still open at the deadline.
    pub(crate) fn wait_closed(&self, deadline: Deadline) -> bool {
        !matches!(
            self.wait_for(deadline, None, |st| st.closed.is_some().then_some(())),
            Ok(None)
        )
    }

    /// Whether the channel is still open, after routing what has arrived
    /// (so a peer that has gone is noticed). Never blocks.
    pub(crate) fn is_open(&self) -> bool {
        self.dispatch().is_ok()
    }

    /// The descriptor for event loops (see [`LoopFd`]), created on first
    /// use and kept until the channel is dropped.
    pub(crate) fn loop_fd(&self) -> io::Result<RawFd> {
        if let Some(fd) = self.loop_fd.get() {
            return Ok(fd.epoll.as_raw_fd());
        }
        let socket = self.socket().ok();
        let epoll_fd = above_stdio(epoll::create(epoll::CreateFlags::CLOEXEC)?)?;
        let ended = EventFd::new()?;
        let routed = EventFd::new()?;
        for (fd, key) in [(&ended, 0), (&routed, 3)] {
            epoll::add(
                &epoll_fd,
                fd,
                epoll::EventData::new_u64(key),
                epoll::EventFlags::IN,
            )?;
        }
        if let Some(exit) = self.exit.lock().as_ref() {
            epoll::add(
                &epoll_fd,
                exit.as_fd(),
                epoll::EventData::new_u64(1),
                epoll::EventFlags::IN,
            )?;
        }
        let raw_socket = socket.as_ref().map_or(-1, |s| s.as_raw_fd());
        if let Some(socket) = &socket {
            epoll::add(
                &epoll_fd,
                socket.as_fd(),
                epoll::EventData::new_u64(2),
                epoll::EventFlags::IN,
            )?;
        }
        let fd = LoopFd {
            epoll: epoll_fd,
            ended,
            routed,
            socket: raw_socket,
        };
        let raw = fd.epoll.as_raw_fd();
        if self.loop_fd.set(fd).is_ok() {
            if self.output_queued.load(Ordering::SeqCst) {
                self.update_loop_interest(true);
            }
            if self.closed().is_some() {
                self.loop_fd.get().expect("just set").ended.set();
            }
            Ok(raw)
        } else {
            Ok(self
                .loop_fd
                .get()
                .expect("set by another thread")
                .epoll
                .as_raw_fd())
        }
    }

    /// Follow queued output in the loop descriptor's interest set, so an
    /// event loop calls [`Channel::dispatch`] when the socket takes more.
    fn update_loop_interest(&self, writable: bool) {
        let Some(fd) = self.loop_fd.get() else {
            return;
        };
        let Some(socket) = self.socket.lock().clone() else {
            return;
        };
        if socket.as_raw_fd() != fd.socket {
            return;
        }
        let mut flags = epoll::EventFlags::IN;
        if writable {
            flags |= epoll::EventFlags::OUT;
        }
        let _ = epoll::modify(
            &fd.epoll,
            socket.as_fd(),
            epoll::EventData::new_u64(2),
            flags,
        );
    }
}
