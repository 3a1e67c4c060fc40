//! Descriptors as the library uses them: sockets that are close-on-exec
//! from birth and never raise SIGPIPE, non-blocking reads and writes, one
//! `ppoll` bounded by a deadline, and eventfds for readiness that C event
//! loops can watch.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags};
use rustix::io::{fcntl_dupfd_cloexec, Errno};
use rustix::net::{
    sendmsg, AddressFamily, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
    Shutdown, SocketFlags, SocketType,
};

use crate::deadline::Deadline;

/// A connected stream socket (Unix or TCP) owned by the library.
#[derive(Debug)]
pub(crate) struct Socket {
    fd: OwnedFd,
}

/// A send that failed after writing `sent` bytes (possibly 0).
#[derive(Debug)]
pub(crate) struct PartialSend {
    pub error: io::Error,
    pub sent: usize,
}

impl Socket {
    /// A connected `AF_UNIX` stream pair, both ends close-on-exec and above
    /// the standard descriptors.
    pub(crate) fn pair() -> io::Result<(Socket, Socket)> {
        let (a, b) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )?;
        Ok((
            Socket {
                fd: above_stdio(a)?,
            },
            Socket {
                fd: above_stdio(b)?,
            },
        ))
    }

    /// Adopt a connected stream socket.
    pub(crate) fn from_fd(fd: OwnedFd) -> Socket {
        Socket { fd }
    }

    /// Write what the socket takes now. `Ok(None)`: it would block.
    /// `MSG_NOSIGNAL`: a peer that has gone yields `EPIPE`, never a signal.
    pub(crate) fn try_send(&self, data: &[u8]) -> io::Result<Option<usize>> {
        retry(|| rustix::net::send(&self.fd, data, SendFlags::NOSIGNAL | SendFlags::DONTWAIT))
    }

    /// Like [`Socket::try_send`], with `fd` attached to the first byte as
    /// `SCM_RIGHTS` ancillary data (Unix sockets only).
    pub(crate) fn try_send_with_fd(
        &self,
        data: &[u8],
        fd: BorrowedFd<'_>,
    ) -> io::Result<Option<usize>> {
        let fds = [fd];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        retry(|| {
            let mut control = SendAncillaryBuffer::new(&mut space);
            control.push(SendAncillaryMessage::ScmRights(&fds));
            sendmsg(
                &self.fd,
                &[io::IoSlice::new(data)],
                &mut control,
                SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
            )
        })
    }

    /// Read what is there. `Ok(None)`: nothing yet; `Ok(Some(0))`: the peer
    /// closed the connection (a reset counts as a close: a peer that exits
    /// with unread input resets the stream).
    pub(crate) fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match retry(|| rustix::net::recv(&self.fd, &mut *buf, RecvFlags::DONTWAIT).map(|r| r.0)) {
            Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => Ok(Some(0)),
            other => other,
        }
    }

    /// Send all of `data`, waiting for buffer space until `deadline`, and
    /// giving up early if `watch` (QEMU's pidfd) becomes readable.
    pub(crate) fn send_all(
        &self,
        data: &[u8],
        watch: Option<BorrowedFd<'_>>,
        deadline: Deadline,
    ) -> Result<(), PartialSend> {
        let mut sent = 0;
        while sent < data.len() {
            match self.try_send(&data[sent..]) {
                Ok(Some(n)) => sent += n,
                Ok(None) => {
                    let fail = |error| PartialSend { error, sent };
                    let ready = wait_ready(self.as_fd(), PollFlags::OUT, watch, None, deadline)
                        .map_err(fail)?;
                    if ready.timed_out {
                        return Err(fail(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "timed out waiting to write (the peer is not reading)",
                        )));
                    }
                    if ready.exited && !ready.writable {
                        return Err(fail(io::Error::new(
                            io::ErrorKind::BrokenPipe,
                            "QEMU exited",
                        )));
                    }
                }
                Err(error) => return Err(PartialSend { error, sent }),
            }
        }
        Ok(())
    }

    /// Shut both directions down: wakes any thread blocked reading this
    /// socket (it sees EOF) and tells the peer we are gone. Acts on the
    /// open file description, which a forked child shares: owner only.
    pub(crate) fn shutdown(&self) {
        let _ = rustix::net::shutdown(&self.fd, Shutdown::Both);
    }

    pub(crate) fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Run a non-blocking call, restarting on `EINTR`; `EAGAIN` becomes
/// `Ok(None)`.
fn retry<T>(mut call: impl FnMut() -> rustix::io::Result<T>) -> io::Result<Option<T>> {
    loop {
        match call() {
            Ok(v) => return Ok(Some(v)),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// What [`wait_ready`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ready {
    /// The main descriptor has input, or an error or hang-up to report.
    pub readable: bool,
    /// The main descriptor is writable (or has an error to report).
    pub writable: bool,
    /// QEMU's pidfd is readable: QEMU has exited.
    pub exited: bool,
    /// The interrupting descriptor is readable.
    pub interrupted: bool,
    /// The deadline passed with nothing ready.
    pub timed_out: bool,
}

/// Wait until `fd` reports `events`, `exit` (QEMU's pidfd) or `interrupt`
/// become readable, or the deadline passes. Everything that is ready is
/// reported, so a caller can give the socket precedence: data written just
/// before QEMU exited must still be read.
pub(crate) fn wait_ready(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    exit: Option<BorrowedFd<'_>>,
    interrupt: Option<BorrowedFd<'_>>,
    deadline: Deadline,
) -> io::Result<Ready> {
    let mut fds = Vec::with_capacity(3);
    fds.push(PollFd::from_borrowed_fd(fd, events));
    if let Some(e) = exit {
        fds.push(PollFd::from_borrowed_fd(e, PollFlags::IN));
    }
    if let Some(i) = interrupt {
        fds.push(PollFd::from_borrowed_fd(i, PollFlags::IN));
    }
    if !poll_until(&mut fds, deadline)? {
        return Ok(Ready {
            timed_out: true,
            ..Ready::default()
        });
    }
    let main = fds[0].revents();
    let trouble = PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL;
    let mut ready = Ready {
        readable: main.intersects(PollFlags::IN | PollFlags::RDHUP | PollFlags::PRI | trouble),
        writable: main.intersects(PollFlags::OUT | trouble),
        ..Ready::default()
    };
    let mut rest = fds[1..].iter();
    if exit.is_some() {
        ready.exited = !rest.next().expect("polled").revents().is_empty();
    }
    if interrupt.is_some() {
        ready.interrupted = !rest.next().expect("polled").revents().is_empty();
    }
    Ok(ready)
}

/// `ppoll` until something is ready or the deadline passes, restarting on
/// `EINTR` with the remaining time. `Ok(false)` on timeout.
pub(crate) fn poll_until(fds: &mut [PollFd<'_>], deadline: Deadline) -> io::Result<bool> {
    loop {
        let ts = deadline.timespec();
        match poll(fds, ts.as_ref()) {
            Ok(0) if deadline.expired() => return Ok(false),
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Move a descriptor to a number >= 3 (still close-on-exec). A host that
/// closed its stdin/stdout/stderr would otherwise get 0-2 back from the
/// kernel, and a child's stdio redirection would overwrite exactly those
/// numbers.
pub(crate) fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    Ok(fcntl_dupfd_cloexec(&fd, 3)?)
}

/// A descriptor that is readable exactly while a flag is set: what a C
/// event loop polls to learn that a queue has something for it.
#[derive(Debug)]
pub(crate) struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(EventFd {
            fd: above_stdio(fd)?,
        })
    }

    /// Make it readable (idempotent).
    pub(crate) fn set(&self) {
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    /// Make it not readable (idempotent).
    pub(crate) fn clear(&self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut buf);
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
