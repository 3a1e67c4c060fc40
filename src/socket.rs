//! Stream sockets as the library uses them: close-on-exec from birth, writes
//! that never raise SIGPIPE, and reads bounded by a deadline while watching
//! an optional second descriptor (QEMU's pidfd) for "the process is gone".

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::deadline::Deadline;

/// What a bounded read produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// `n > 0` bytes were read.
    Data(usize),
    /// The peer closed the connection (or reset it).
    Eof,
    /// The deadline passed first.
    Timeout,
    /// The watched descriptor became readable first (QEMU exited).
    WatchFired,
}

/// A send that failed after writing `sent` bytes (possibly 0).
#[derive(Debug)]
pub(crate) struct PartialSend {
    pub error: io::Error,
    pub sent: usize,
}

/// A connected stream socket (Unix or TCP) owned by the library.
#[derive(Debug)]
pub(crate) struct Socket {
    fd: OwnedFd,
}

impl Socket {
    /// A connected `AF_UNIX` stream pair, both ends close-on-exec.
    pub(crate) fn pair() -> io::Result<(Socket, Socket)> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid array of two ints for socketpair to fill.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: socketpair succeeded, so both fds are open and ours alone.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
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

    /// Send all of `data`, waiting for buffer space until `deadline`.
    /// `MSG_NOSIGNAL`: a peer that has gone away yields `EPIPE`, never a
    /// signal that would kill the host process.
    pub(crate) fn send_all(&self, data: &[u8], deadline: Deadline) -> Result<(), PartialSend> {
        let mut sent = 0;
        self.send_from(data, &mut sent, deadline)
            .map_err(|error| PartialSend { error, sent })
    }

    /// Send `data` with `fd` attached as `SCM_RIGHTS` ancillary data (on
    /// the first byte), then the rest of `data` if the first send was
    /// partial. Unix sockets only.
    pub(crate) fn send_with_fd(
        &self,
        data: &[u8],
        fd: BorrowedFd<'_>,
        deadline: Deadline,
    ) -> Result<(), PartialSend> {
        let mut sent = 0;
        self.send_first_with_fd(data, fd, &mut sent, deadline)
            .and_then(|()| self.send_from(data, &mut sent, deadline))
            .map_err(|error| PartialSend { error, sent })
    }

    fn send_first_with_fd(
        &self,
        data: &[u8],
        fd: BorrowedFd<'_>,
        sent: &mut usize,
        deadline: Deadline,
    ) -> io::Result<()> {
        let raw = fd.as_raw_fd();
        let fd_len = std::mem::size_of::<RawFd>() as libc::c_uint;
        // SAFETY: CMSG_SPACE is a pure size computation.
        let space = unsafe { libc::CMSG_SPACE(fd_len) } as usize;
        // u64 storage keeps the control buffer aligned for cmsghdr.
        let mut control = vec![0u64; space.div_ceil(8)];
        loop {
            let mut iov = libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            };
            // SAFETY: msghdr is plain data; every pointer set below points to
            // a live buffer of the stated length for the duration of sendmsg.
            let n = unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = &mut iov;
                msg.msg_iovlen = 1;
                msg.msg_control = control.as_mut_ptr().cast();
                msg.msg_controllen = space as _;
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(fd_len) as _;
                std::ptr::copy_nonoverlapping(
                    (&raw as *const RawFd).cast::<u8>(),
                    libc::CMSG_DATA(cmsg),
                    fd_len as usize,
                );
                libc::sendmsg(
                    self.fd.as_raw_fd(),
                    &msg,
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            if n >= 0 {
                *sent = n as usize;
                return Ok(());
            }
            self.before_retrying_send(io::Error::last_os_error(), deadline)?;
        }
    }

    /// After a failed send: `Ok` to try again (interrupted, or writable
    /// again), else the error to give up with.
    fn before_retrying_send(&self, err: io::Error, deadline: Deadline) -> io::Result<()> {
        match err.raw_os_error() {
            Some(libc::EINTR) => Ok(()),
            Some(libc::EAGAIN) => match poll_one(self.fd.as_fd(), libc::POLLOUT, None, deadline)? {
                Ready::Timeout => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "timed out waiting to write (peer not reading)",
                )),
                Ready::Fd | Ready::Watch => Ok(()),
            },
            _ => Err(err),
        }
    }

    fn send_from(&self, all: &[u8], sent: &mut usize, deadline: Deadline) -> io::Result<()> {
        while *sent < all.len() {
            let data = &all[*sent..];
            // SAFETY: `data` is a valid readable buffer of `data.len()` bytes.
            let n = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    data.as_ptr().cast(),
                    data.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            if n >= 0 {
                *sent += n as usize;
                continue;
            }
            self.before_retrying_send(io::Error::last_os_error(), deadline)?;
        }
        Ok(())
    }

    /// Read what is available into `buf`, waiting until `deadline` for data,
    /// and giving up early if `watch` becomes readable while no data is
    /// pending.
    pub(crate) fn recv(
        &self,
        buf: &mut [u8],
        deadline: Deadline,
        watch: Option<BorrowedFd<'_>>,
    ) -> io::Result<Received> {
        loop {
            // SAFETY: `buf` is a valid writable buffer of `buf.len()` bytes.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                return Ok(Received::Data(n as usize));
            }
            if n == 0 {
                return Ok(Received::Eof);
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                // A peer that exits with unread input resets the stream;
                // for the reader that is the same as an orderly close.
                Some(libc::ECONNRESET) => return Ok(Received::Eof),
                Some(libc::EAGAIN) => {
                    match poll_one(self.fd.as_fd(), libc::POLLIN, watch, deadline)? {
                        Ready::Fd => continue,
                        Ready::Watch => return Ok(Received::WatchFired),
                        Ready::Timeout => return Ok(Received::Timeout),
                    }
                }
                _ => return Err(err),
            }
        }
    }

    /// Shut both directions down: wakes any thread blocked reading this
    /// socket (it sees EOF) and tells the peer we are gone.
    pub(crate) fn shutdown(&self) {
        // SAFETY: plain syscall on an fd we own; errors (ENOTCONN) are
        // irrelevant here.
        unsafe {
            libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_RDWR);
        }
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

/// What [`poll_one`] saw first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ready {
    /// The descriptor is ready (or has an error or hangup to report).
    Fd,
    /// The watched descriptor became readable (QEMU exited).
    Watch,
    Timeout,
}

/// Wait until `fd` reports `events`, or `watch` (if any) becomes readable,
/// or the deadline passes. The descriptor wins a tie: data written just
/// before QEMU exited must still be read.
pub(crate) fn poll_one(
    fd: BorrowedFd<'_>,
    events: libc::c_short,
    watch: Option<BorrowedFd<'_>>,
    deadline: Deadline,
) -> io::Result<Ready> {
    let mut fds = [
        libc::pollfd {
            fd: fd.as_raw_fd(),
            events,
            revents: 0,
        },
        libc::pollfd {
            fd: watch.map_or(-1, |w| w.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let count = if watch.is_some() { 2 } else { 1 };
    if !poll(&mut fds[..count], deadline)? {
        Ok(Ready::Timeout)
    } else if fds[0].revents != 0 {
        Ok(Ready::Fd)
    } else {
        Ok(Ready::Watch)
    }
}

/// `ppoll` until something is ready or the deadline passes, restarting on
/// `EINTR` with the remaining time. `Ok(false)` on timeout.
fn poll(fds: &mut [libc::pollfd], deadline: Deadline) -> io::Result<bool> {
    loop {
        let ts = deadline.timespec();
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `fds` is a valid slice of pollfd; `ts_ptr` is null or
        // points to a timespec that outlives the call.
        let rc = unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                ts_ptr,
                std::ptr::null(),
            )
        };
        if rc > 0 {
            return Ok(true);
        }
        if rc == 0 {
            if deadline.expired() {
                return Ok(false);
            }
            continue;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
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
    // SAFETY: plain fcntl on an fd we own; the result is a new fd we own.
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` was just created and belongs to nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}
