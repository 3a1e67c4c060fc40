//! The serial console: a socketpair chardev drained by a library thread so
//! QEMU never blocks on a full console, the output kept in memory (bounded)
//! and optionally appended to a file, and waits for byte patterns with a
//! read cursor.
//!
//! The drain thread watches QEMU's pidfd next to the socket, so the console
//! ends when QEMU exits even if another process holds QEMU's end open. The
//! log file never slows the drain down (see [`Sink`]).
//!
//! Concurrent waits share one cursor and never match the same bytes twice:
//! each wait scans from the cursor as it is when the wait looks, and a
//! successful wait moves it forward past its match (never backwards). Two
//! waits for the same pattern thus take two successive occurrences.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use memchr::memmem;
use parking_lot::{Condvar, Mutex};
use rustix::event::PollFlags;

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::owner::Owner;
use crate::sink::Sink;
use crate::socket::{wait_ready, Socket};
use crate::threads;

/// Default bound of the console output kept in memory (64 MiB).
pub const DEFAULT_CONSOLE_BUFFER: usize = 64 << 20;

/// Output quoted in a timeout or disconnect message is cut to this tail.
const MESSAGE_OUTPUT_MAX: usize = 1 << 20;

/// How the console attaches to the guest (`QEMUMachine.set_console`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// `None`: `-serial chardev:console` (the machine's default serial
    /// device); `Some("isa-serial")` etc.: `-device TYPE,chardev=console`.
    pub device_type: Option<String>,
    /// Number of `-serial null` added first, so the console is serial port
    /// `index`.
    pub index: u32,
}

impl ConsoleConfig {
    /// The QEMU arguments for a console on chardev socket `fd`. The
    /// device type was checked by [`crate::Config::console`].
    pub(crate) fn qemu_args(&self, fd: i32) -> Vec<String> {
        let mut args = Vec::new();
        for _ in 0..self.index {
            args.extend(["-serial".to_string(), "null".to_string()]);
        }
        args.push("-chardev".into());
        args.push(format!("socket,id=console,fd={fd}"));
        match &self.device_type {
            None => args.extend(["-serial".to_string(), "chardev:console".to_string()]),
            Some(device) => {
                args.push("-device".into());
                args.push(format!("{device},chardev=console"));
            }
        }
        args
    }
}

/// Console output received so far, addressed by absolute byte offsets from
/// the start of the run (so offsets survive dropping the oldest bytes).
#[derive(Debug)]
struct Buffer {
    data: Vec<u8>,
    /// Offset of `data[0]`.
    base: u64,
    /// Read cursor: waits and reads start here.
    cursor: u64,
    limit: usize,
    dropped: u64,
    /// Why the stream ended, once it has.
    closed: Option<String>,
}

impl Buffer {
    fn end(&self) -> u64 {
        self.base + self.data.len() as u64
    }

    /// The retained bytes in `from..to` (absolute offsets).
    fn slice(&self, from: u64, to: u64) -> &[u8] {
        let from = from.max(self.base);
        &self.data[(from - self.base) as usize..(to - self.base) as usize]
    }

    fn append(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
        if self.data.len() > self.limit {
            // Drop a little more than needed so this copy happens rarely.
            let excess = self.data.len() - self.limit + self.limit / 8;
            let excess = excess.min(self.data.len());
            self.data.drain(..excess);
            self.base += excess as u64;
            self.dropped += excess as u64;
        }
    }
}

#[derive(Debug)]
struct Shared {
    buffer: Mutex<Buffer>,
    grew: Condvar,
}

/// Which pattern ended a wait.
enum Hit {
    Success(u64),
    Failure(u64),
}

/// An attached console.
#[derive(Debug)]
pub(crate) struct Console {
    shared: Arc<Shared>,
    /// `None` once closed; writers hold a clone for the duration of a write.
    socket: Mutex<Option<Arc<Socket>>>,
    write_lock: Mutex<()>,
    drain: Mutex<Option<JoinHandle<()>>>,
    /// QEMU's pidfd, released at close.
    exit: Mutex<Option<Arc<OwnedFd>>>,
    owner: Owner,
}

impl Console {
    /// Start draining `socket` (our end of the console chardev), keeping at
    /// most `limit` bytes and appending everything to `log` if given. `exit`
    /// (QEMU's pidfd) ends the console when QEMU exits.
    pub(crate) fn start(
        socket: Socket,
        limit: usize,
        log: Option<Sink>,
        exit: Option<Arc<OwnedFd>>,
    ) -> Result<Console> {
        let socket = Arc::new(socket);
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Buffer {
                data: Vec::new(),
                base: 0,
                cursor: 0,
                limit: limit.max(1),
                dropped: 0,
                closed: None,
            }),
            grew: Condvar::new(),
        });
        let drain = {
            let socket = Arc::clone(&socket);
            let shared = Arc::clone(&shared);
            let exit = exit.clone();
            threads::spawn("qm-console", move || {
                drain_main(&socket, &shared, log, exit.as_deref())
            })
            .map_err(|e| Error::io("cannot start the console thread", e))?
        };
        Ok(Console {
            shared,
            socket: Mutex::new(Some(socket)),
            write_lock: Mutex::new(()),
            drain: Mutex::new(Some(drain)),
            exit: Mutex::new(exit),
            owner: Owner::current(),
        })
    }

    /// Wait until `success` (or `failure`, if given) appears in the output
    /// after the read cursor. Returns the output from the cursor up to and
    /// including the match and moves the cursor past it.
    pub(crate) fn wait(
        &self,
        success: &str,
        failure: Option<&str>,
        deadline: Deadline,
    ) -> Result<Vec<u8>> {
        debug_assert!(
            !success.is_empty() && failure != Some(""),
            "checked by Machine"
        );
        let success_finder = memmem::Finder::new(success.as_bytes());
        let failure_finder = failure.map(|f| memmem::Finder::new(f.as_bytes()));
        let longest = success.len().max(failure.map_or(0, str::len)) as u64;

        let mut buf = self.shared.buffer.lock();
        // Bytes before `scanned` are known to hold no complete match.
        let mut scanned = buf.cursor;
        let mut timed_out = false;
        loop {
            // Another wait may have moved the cursor: start from it.
            let start = buf.cursor;
            let from = scanned.saturating_sub(longest - 1).max(start).max(buf.base);
            let end = buf.end();
            let hay = buf.slice(from, end);
            let s = success_finder
                .find(hay)
                .map(|p| from + (p + success.len()) as u64);
            let f = failure_finder
                .as_ref()
                .and_then(|finder| finder.find(hay))
                .map(|p| from + (p + failure.map_or(0, str::len)) as u64);
            // The pattern whose match completes first wins; a tie goes to
            // the failure pattern.
            let hit = match (s, f) {
                (Some(s), Some(f)) if f <= s => Some(Hit::Failure(f)),
                (Some(s), _) => Some(Hit::Success(s)),
                (None, Some(f)) => Some(Hit::Failure(f)),
                (None, None) => None,
            };
            match hit {
                Some(Hit::Success(at)) => {
                    let output = buf.slice(start, at).to_vec();
                    buf.cursor = at;
                    return Ok(output);
                }
                Some(Hit::Failure(at)) => {
                    let output = lossy(buf.slice(start, at));
                    buf.cursor = at;
                    return Err(Error::ConsoleFailure {
                        pattern: failure.unwrap_or_default().to_string(),
                        output,
                    });
                }
                None => scanned = end,
            }
            if let Some(reason) = &buf.closed {
                return Err(Error::Disconnected(format!(
                    "{reason} before {success:?} appeared; output since the read cursor:\n{}",
                    tail_for_message(buf.slice(start, end))
                )));
            }
            if timed_out {
                return Err(Error::Timeout(format!(
                    "the console did not show {success:?} {}; output since the read cursor:\n{}",
                    deadline.describe(),
                    tail_for_message(buf.slice(start, end))
                )));
            }
            timed_out = !deadline.wait(&self.shared.grew, &mut buf);
        }
    }

    /// Output after the read cursor, without waiting; moves the cursor to
    /// the end.
    pub(crate) fn read(&self) -> Vec<u8> {
        let mut buf = self.shared.buffer.lock();
        let end = buf.end();
        let output = buf.slice(buf.cursor, end).to_vec();
        buf.cursor = end;
        output
    }

    /// All output still held in memory (for artifacts), without moving the
    /// cursor, and how many earlier bytes were dropped.
    pub(crate) fn snapshot(&self) -> (Vec<u8>, u64) {
        let buf = self.shared.buffer.lock();
        (buf.data.clone(), buf.base)
    }

    /// Bytes dropped because the in-memory buffer was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.shared.buffer.lock().dropped
    }

    /// Send bytes to the guest, waiting for buffer space until `deadline`.
    pub(crate) fn write(&self, data: &[u8], deadline: Deadline) -> Result<()> {
        let socket = self
            .socket
            .lock()
            .clone()
            .ok_or_else(|| Error::Disconnected("the console is closed".into()))?;
        let _w = self.write_lock.lock();
        let exit = self.exit.lock().clone();
        let exit = exit.as_deref().map(AsFd::as_fd);
        socket.send_all(data, exit, deadline).map_err(|partial| {
            if partial.error.kind() == std::io::ErrorKind::TimedOut {
                Error::Timeout(format!(
                    "the console accepted only {} of {} bytes {}",
                    partial.sent,
                    data.len(),
                    deadline.describe()
                ))
            } else {
                Error::Disconnected(format!("cannot write to the console: {}", partial.error))
            }
        })
    }

    /// Stop draining and release the socket; the output stays readable.
    /// Output QEMU wrote before exiting is collected first: the drain
    /// thread gets up to `grace` to reach the end on its own.
    pub(crate) fn close(&self, grace: Duration) {
        {
            let deadline = Deadline::after(Some(grace));
            let mut buf = self.shared.buffer.lock();
            while buf.closed.is_none() && deadline.wait(&self.shared.grew, &mut buf) {}
        }
        let socket = self.socket.lock().take();
        if let Some(socket) = &socket {
            socket.shutdown();
        }
        if let Some(handle) = self.drain.lock().take() {
            let _ = handle.join();
        }
        self.exit.lock().take();
        let mut buf = self.shared.buffer.lock();
        if buf.closed.is_none() {
            buf.closed = Some("the console was closed".into());
        }
        drop(buf);
        self.shared.grew.notify_all();
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if self.owner.is_current() {
            self.close(Duration::ZERO);
        } else {
            // A forked child's copy: the drain thread and the shared socket
            // are the parent's.
            if let Some(handle) = self.drain.get_mut().take() {
                std::mem::forget(handle);
            }
        }
    }
}

fn drain_main(socket: &Socket, shared: &Shared, log: Option<Sink>, exit: Option<&OwnedFd>) {
    let mut chunk = vec![0u8; 64 << 10];
    let exit = exit.map(AsFd::as_fd);
    let reason = loop {
        let ready = match wait_ready(socket.as_fd(), PollFlags::IN, exit, None, Deadline::never()) {
            Ok(ready) => ready,
            Err(e) => break format!("reading the console failed: {e}"),
        };
        if !ready.readable {
            if ready.exited {
                break "QEMU exited (another process still holds its end of the console)"
                    .to_string();
            }
            continue;
        }
        match socket.try_recv(&mut chunk) {
            Ok(Some(0)) => break "the console was closed by QEMU".to_string(),
            Ok(Some(n)) => {
                if let Some(log) = &log {
                    log.write(&chunk[..n], |dropped| {
                        format!(
                            "\n[qemu-machine: {dropped} console chunk(s) dropped: \
                             the log file could not take them in time]"
                        )
                        .into_bytes()
                    });
                }
                shared.buffer.lock().append(&chunk[..n]);
                shared.grew.notify_all();
            }
            Ok(None) => {}
            Err(e) => break format!("reading the console failed: {e}"),
        }
    };
    let mut buf = shared.buffer.lock();
    if buf.closed.is_none() {
        buf.closed = Some(reason);
    }
    drop(buf);
    shared.grew.notify_all();
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn tail_for_message(bytes: &[u8]) -> String {
    if bytes.len() <= MESSAGE_OUTPUT_MAX {
        return lossy(bytes);
    }
    format!(
        "[... {} earlier bytes omitted ...]\n{}",
        bytes.len() - MESSAGE_OUTPUT_MAX,
        lossy(&bytes[bytes.len() - MESSAGE_OUTPUT_MAX..])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console_pair(limit: usize) -> (Console, Socket) {
        let (ours, theirs) = Socket::pair().unwrap();
        (Console::start(ours, limit, None, None).unwrap(), theirs)
    }

    fn send(peer: &Socket, bytes: &[u8]) {
        peer.send_all(bytes, None, Deadline::never()).unwrap();
    }

    fn ms(n: u64) -> Deadline {
        Deadline::after(Some(Duration::from_millis(n)))
    }

    #[test]
    fn waits_move_the_cursor_and_match_without_newline() {
        let (c, peer) = console_pair(1 << 20);
        send(&peer, b"booting...\nlogin: ");
        assert_eq!(
            c.wait("login: ", None, ms(2000)).unwrap(),
            b"booting...\nlogin: "
        );
        send(&peer, b"root\r\n# ");
        assert_eq!(c.wait("# ", None, ms(2000)).unwrap(), b"root\r\n# ");
        assert_eq!(c.read(), b"");
    }

    #[test]
    fn pattern_split_across_reads_is_found() {
        let (c, peer) = console_pair(1 << 20);
        send(&peer, b"abc QM-GU");
        assert!(matches!(
            c.wait("QM-GUEST", None, ms(100)),
            Err(Error::Timeout(_))
        ));
        send(&peer, b"EST-READY");
        assert_eq!(c.wait("QM-GUEST", None, ms(2000)).unwrap(), b"abc QM-GUEST");
    }

    #[test]
    fn failure_first_wins_and_timeout_keeps_the_cursor() {
        let (c, peer) = console_pair(1 << 20);
        send(&peer, b"x Kernel panic y login:");
        std::thread::sleep(Duration::from_millis(50));
        match c.wait("login:", Some("Kernel panic"), ms(2000)) {
            Err(Error::ConsoleFailure { pattern, output }) => {
                assert_eq!(pattern, "Kernel panic");
                assert_eq!(output, "x Kernel panic");
            }
            other => panic!("{other:?}"),
        }
        let err = c.wait("nope", None, ms(50)).unwrap_err();
        assert!(err.to_string().contains(" y login:"), "{err}");
        assert_eq!(c.read(), b" y login:");
    }

    #[test]
    fn eof_after_buffered_output_is_matched_first() {
        let (c, peer) = console_pair(1 << 20);
        send(&peer, b"last words");
        drop(peer);
        assert_eq!(c.wait("words", None, ms(2000)).unwrap(), b"last words");
        assert!(matches!(
            c.wait("more", None, Deadline::never()),
            Err(Error::Disconnected(_))
        ));
    }

    #[test]
    fn bounded_buffer_drops_oldest_and_counts() {
        let (c, peer) = console_pair(1000);
        for _ in 0..10 {
            send(&peer, &[b'a'; 500]);
        }
        send(&peer, b"END");
        let out = c.wait("END", None, ms(2000)).unwrap();
        assert!(out.len() <= 1003, "{}", out.len());
        assert!(c.dropped() >= 4000);
    }

    #[test]
    fn concurrent_waits_never_match_the_same_bytes_twice() {
        let (c, peer) = console_pair(1 << 20);
        let c = Arc::new(c);
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || c.wait("END", None, ms(5000)).unwrap())
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        send(&peer, b"a END b END");
        let mut outputs: Vec<Vec<u8>> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
        outputs.sort();
        assert_eq!(outputs, vec![b" b END".to_vec(), b"a END".to_vec()]);
        assert_eq!(c.read(), b"");
    }

    #[test]
    fn nul_bytes_survive() {
        let (c, peer) = console_pair(1 << 20);
        send(&peer, b"a\0b\0END");
        assert_eq!(c.wait("END", None, ms(2000)).unwrap(), b"a\0b\0END");
    }
}
