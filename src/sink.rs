//! Files the library appends to while QEMU runs (the QMP trace, the
//! console log), which the user names and which may be anything: a regular
//! file, a FIFO whose reader has stopped reading or has exited, a terminal.
//!
//! Writing to them must never block a call past its deadline, never stall
//! the thread that drains QEMU's console, and never raise SIGPIPE in the
//! host. So the file is opened and written non-blocking (opening a FIFO
//! without a reader fails at once instead of blocking in `open`); a record
//! the file cannot take right now is dropped and counted, and the next
//! record that fits says how many were lost; SIGPIPE from a pipe whose
//! reader has gone is blocked in the writing thread for the duration of
//! the write and consumed if it was raised, so the host never sees it; a
//! write error ends the sink quietly.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use parking_lot::Mutex;

/// An append-only file written without ever blocking.
#[derive(Debug)]
pub(crate) struct Sink {
    state: Mutex<SinkState>,
}

#[derive(Debug)]
struct SinkState {
    /// `None` once a write failed for good.
    file: Option<File>,
    /// Records dropped since the last one written.
    dropped: u64,
    /// Dropped in total.
    dropped_total: u64,
}

impl Sink {
    /// Open `path` for appending (created mode 0644 if missing).
    pub(crate) fn open(path: &Path) -> io::Result<Sink> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ENXIO) {
                    io::Error::new(
                        e.kind(),
                        "it is a FIFO with no reader (start the reader first)",
                    )
                } else {
                    e
                }
            })?;
        Ok(Sink {
            state: Mutex::new(SinkState {
                file: Some(file),
                dropped: 0,
                dropped_total: 0,
            }),
        })
    }

    /// Append `record` whole, or drop it if the file cannot take it now.
    /// `note` makes the line that reports earlier drops (without newline).
    pub(crate) fn write(&self, record: &[u8], note: impl FnOnce(u64) -> Vec<u8>) {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let Some(file) = st.file.as_mut() else {
            return;
        };
        let result = if st.dropped > 0 {
            let mut joined = note(st.dropped);
            joined.push(b'\n');
            joined.extend_from_slice(record);
            write_without_sigpipe(file, &joined)
        } else {
            write_without_sigpipe(file, record)
        };
        match result {
            Ok(true) => st.dropped = 0,
            Ok(false) => {
                st.dropped += 1;
                st.dropped_total += 1;
            }
            Err(_) => st.file = None,
        }
    }

    /// Records dropped because the file could not take them.
    #[cfg(test)]
    fn dropped_total(&self) -> u64 {
        self.state.lock().dropped_total
    }
}

/// Write all of `data` if the file takes it without blocking: `Ok(true)`
/// written, `Ok(false)` nothing written because the file would block.
/// A record the file takes only in part (a pipe with a nearly full buffer)
/// is completed by waiting for room, which a reader that is still reading
/// soon gives; at most one record's worth of waiting.
fn write_without_sigpipe(file: &mut File, data: &[u8]) -> io::Result<bool> {
    with_sigpipe_blocked(|| {
        let mut written = 0;
        while written < data.len() {
            match file.write(&data[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if written == 0 {
                        return Ok(false);
                    }
                    // Half a record is out: finish it, for a bounded time.
                    let mut fds = [rustix::event::PollFd::new(
                        file,
                        rustix::event::PollFlags::OUT,
                    )];
                    let deadline = crate::deadline::Deadline::after(Some(
                        std::time::Duration::from_millis(100),
                    ));
                    if !crate::socket::poll_until(&mut fds, deadline)? {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the reader stopped in the middle of a record",
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    })
}

/// Run `write` with SIGPIPE blocked in this thread; a SIGPIPE it raised is
/// consumed before the mask is restored, so it is never delivered.
fn with_sigpipe_blocked<T>(write: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset; the mask
    // calls only change this thread's mask and restore it below.
    unsafe {
        let mut pipe: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, &mut old);
        let mut pending_before: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut pending_before);
        let was_pending = libc::sigismember(&pending_before, libc::SIGPIPE) == 1;
        let result = write();
        if matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EPIPE)) && !was_pending {
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            libc::sigtimedwait(&pipe, std::ptr::null_mut(), &zero);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(n: u64) -> Vec<u8> {
        format!("## {n} dropped").into_bytes()
    }

    fn fifo(dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &path,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        path
    }

    #[test]
    fn fifo_without_reader_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = fifo(dir.path());
        let err = Sink::open(&path).unwrap_err();
        assert!(err.to_string().contains("FIFO with no reader"), "{err}");
    }

    #[test]
    fn stalled_and_vanished_readers_neither_block_nor_signal() {
        let dir = tempfile::tempdir().unwrap();
        let path = fifo(dir.path());
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let sink = Sink::open(&path).unwrap();
        // The reader never reads: the pipe fills, then records are dropped.
        let record = vec![b'x'; 1000];
        let t = std::time::Instant::now();
        for _ in 0..200 {
            sink.write(&record, note);
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        assert!(sink.dropped_total() > 0);
        // The reader goes away: EPIPE, no SIGPIPE (the test would die).
        drop(reader);
        sink.write(b"after\n", note);
        sink.write(b"after\n", note);
    }
}
