//! Spawning QEMU and reaping it.
//!
//! The library lives inside someone else's process, so it installs no signal
//! handlers, reaps only its own child (by pid, never `waitpid(-1)`), signals
//! through the pidfd the spawn itself returned (no pid-reuse race), and lets
//! the child inherit only the descriptors meant for it.
//!
//! Every QEMU is started from one long-lived library thread per process
//! (see [`spawner`]), without copying the caller's address space (see
//! `spawn.rs`).

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use parking_lot::Mutex;
use rustix::io::Errno;
use rustix::process::{getpid, waitpid, Pid, Signal, WaitOptions};

use crate::deadline::Deadline;
use crate::owner::Owner;
use crate::socket::wait_ready;
use crate::spawn::{spawn, SpawnRequest};
use crate::threads;

/// How a QEMU process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It exited with this status code.
    Exited(i32),
    /// It was terminated by this signal.
    Signaled(i32),
    /// It is gone but its status could not be collected (something else in
    /// the process reaped it, e.g. `SIGCHLD` set to `SIG_IGN`).
    Unknown,
}

impl ExitStatus {
    /// The C API's convention: the exit code (`>= 0`), or minus the signal
    /// number (`< 0`); `None` when unknown.
    pub fn code(&self) -> Option<i32> {
        match *self {
            ExitStatus::Exited(c) => Some(c),
            ExitStatus::Signaled(s) => Some(-s),
            ExitStatus::Unknown => None,
        }
    }

    /// Exited with status 0.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Exited(0)
    }

    fn from_wait_status(status: rustix::process::WaitStatus) -> Self {
        if let Some(code) = status.exit_status() {
            ExitStatus::Exited(code)
        } else if let Some(sig) = status.terminating_signal() {
            ExitStatus::Signaled(sig)
        } else {
            ExitStatus::Unknown
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Exited(c) => write!(f, "exited with status {c}"),
            ExitStatus::Signaled(s) => write!(f, "killed by signal {s} ({})", signal_name(s)),
            ExitStatus::Unknown => write!(
                f,
                "exit status unknown (the process was reaped outside the library)"
            ),
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// What to start: the whole argv (wrapper, binary, arguments), changes to
/// the environment, where its output goes, and which of our descriptors it
/// inherits (shared, so they stay open until the spawner is done with them
/// even if the caller gave up waiting).
pub(crate) struct SpawnSpec<'a> {
    pub argv: &'a [String],
    pub env: &'a [(String, Option<String>)],
    pub output: &'a File,
    pub inherit: &'a [Arc<OwnedFd>],
}

/// A spawn request for the spawner thread.
struct SpawnJob {
    argv: Vec<String>,
    env: Vec<(String, Option<String>)>,
    output: File,
    inherit: Vec<Arc<OwnedFd>>,
    reply: mpsc::SyncSender<io::Result<QemuProcess>>,
}

/// The thread every QEMU of this process is started from.
struct Spawner {
    pid: Pid,
    jobs: mpsc::Sender<SpawnJob>,
}

/// The spawner of the current process.
static SPAWNER: AtomicPtr<Spawner> = AtomicPtr::new(std::ptr::null_mut());

/// The thread every QEMU is started from. It lives as long as the process,
/// which lets each child ask the kernel (`PR_SET_PDEATHSIG`) to SIGKILL it
/// when that thread ends — that is, when the host process exits or crashes.
/// A test program that dies without shutting its machines down leaves no
/// QEMU behind. (The death signal follows the thread that spawned, so
/// spawning from the caller's thread would kill QEMU whenever that thread
/// ended.)
///
/// A forked child does not have its parent's threads: the spawner belongs
/// to the process that started it, and a child that launches starts its
/// own (the parent's record is left behind, never used again).
fn spawner() -> io::Result<&'static Spawner> {
    let me = getpid();
    loop {
        let current = SPAWNER.load(Ordering::Acquire);
        // SAFETY: a published spawner is never freed.
        if let Some(s) = unsafe { current.as_ref() } {
            if s.pid == me {
                return Ok(s);
            }
        }
        let (jobs, rx) = mpsc::channel::<SpawnJob>();
        threads::spawn("qm-spawner", move || {
            for job in rx {
                let result = catch_unwind(AssertUnwindSafe(|| spawn_here(&job)))
                    .unwrap_or_else(|_| Err(io::Error::other("panic while starting QEMU")));
                // A caller that gave up has dropped its receiver: the
                // process is dropped here, which kills and reaps it.
                let _ = job.reply.send(result);
            }
        })?;
        let fresh = Box::into_raw(Box::new(Spawner { pid: me, jobs }));
        match SPAWNER.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
            // SAFETY: just published, never freed.
            Ok(_) => return Ok(unsafe { &*fresh }),
            Err(_) => {
                // Another thread of this process won the race; ours ends
                // when its sender is dropped, having spawned nothing.
                // SAFETY: `fresh` was never published.
                drop(unsafe { Box::from_raw(fresh) });
            }
        }
    }
}

fn spawn_here(job: &SpawnJob) -> io::Result<QemuProcess> {
    let inherit: Vec<BorrowedFd<'_>> = job.inherit.iter().map(|fd| fd.as_fd()).collect();
    let spawned = spawn(&SpawnRequest {
        argv: &job.argv,
        env: &job.env,
        output: job.output.as_fd(),
        inherit: &inherit,
    })?;
    Ok(QemuProcess {
        pid: Pid::from_raw(spawned.pid).expect("a child's pid is positive"),
        pidfd: Mutex::new(Some(Arc::new(spawned.pidfd))),
        status: Mutex::new(None),
        owner: Owner::current(),
    })
}

/// A running (or exited, not yet reaped) child process.
#[derive(Debug)]
pub(crate) struct QemuProcess {
    pid: Pid,
    /// Closed as soon as the process is reaped; users hold a clone while
    /// they poll it.
    pidfd: Mutex<Option<Arc<OwnedFd>>>,
    /// `Some` once reaped. Held while signalling, so a signal can never be
    /// sent to a pid that was already reaped and possibly reused.
    status: Mutex<Option<ExitStatus>>,
    owner: Owner,
}

impl QemuProcess {
    /// Start the process (from the spawner thread) and return once it has
    /// been exec'd, or with the reason it could not be; at the latest at
    /// `deadline`.
    pub(crate) fn spawn(spec: &SpawnSpec<'_>, deadline: Deadline) -> io::Result<QemuProcess> {
        let (reply, result) = mpsc::sync_channel(1);
        let job = SpawnJob {
            argv: spec.argv.to_vec(),
            env: spec.env.to_vec(),
            output: spec.output.try_clone()?,
            inherit: spec.inherit.to_vec(),
            reply,
        };
        spawner()?
            .jobs
            .send(job)
            .map_err(|_| io::Error::other("the spawner thread is gone"))?;
        let gone = |_| io::Error::other("the spawner thread is gone");
        match deadline.remaining() {
            None => result.recv().map_err(gone)?,
            Some(left) => match result.recv_timeout(left) {
                Ok(spawned) => spawned,
                Err(mpsc::RecvTimeoutError::Timeout) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the spawner thread did not start QEMU {}",
                        deadline.describe()
                    ),
                )),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    Err(io::Error::other("the spawner thread is gone"))
                }
            },
        }
    }

    pub(crate) fn pid(&self) -> i32 {
        self.pid.as_raw_nonzero().get()
    }

    /// A descriptor that becomes readable when the process exits, for
    /// watching it alongside sockets. `None` once the process has been
    /// reaped.
    pub(crate) fn exit_fd(&self) -> Option<Arc<OwnedFd>> {
        self.pidfd.lock().clone()
    }

    /// The exit status if the process has ended (reaping it), else `None`.
    /// Never blocks.
    pub(crate) fn try_wait(&self) -> Option<ExitStatus> {
        let mut status = self.status.lock();
        if let Some(s) = *status {
            return Some(s);
        }
        let result = loop {
            match waitpid(Some(self.pid), WaitOptions::NOHANG) {
                Ok(None) => return None,
                Ok(Some((_, raw))) => break ExitStatus::from_wait_status(raw),
                Err(Errno::INTR) => continue,
                // ECHILD: gone, and someone else collected the status.
                Err(_) => break ExitStatus::Unknown,
            }
        };
        *status = Some(result);
        self.pidfd.lock().take();
        Some(result)
    }

    /// Wait until the process exits or the deadline passes.
    pub(crate) fn wait_until(&self, deadline: Deadline) -> Option<ExitStatus> {
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if deadline.expired() {
                return None;
            }
            match self.exit_fd() {
                // Readable once the process has exited.
                Some(fd) => {
                    let _ = wait_ready(
                        fd.as_fd(),
                        rustix::event::PollFlags::IN,
                        None,
                        None,
                        deadline,
                    );
                }
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }

    /// Send `sig` unless the process has already been reaped.
    pub(crate) fn signal(&self, sig: Signal) {
        let status = self.status.lock();
        if status.is_some() {
            return;
        }
        if let Some(fd) = self.pidfd.lock().as_ref() {
            match rustix::process::pidfd_send_signal(fd, sig) {
                Ok(()) | Err(Errno::SRCH) => return,
                // A kernel or a tool (valgrind 3.19) without
                // pidfd_send_signal: fall back to the pid below.
                Err(_) => {}
            }
        }
        // The pid is our unreaped child (checked under the lock), so it
        // cannot have been reused.
        let _ = rustix::process::kill_process(self.pid, sig);
    }

    /// SIGKILL and reap. A process stuck in an uninterruptible sleep may not
    /// die at once; after a minute the status is reported as unknown rather
    /// than hanging the caller.
    pub(crate) fn kill_and_reap(&self) -> ExitStatus {
        self.signal(Signal::KILL);
        self.wait_until(Deadline::after(Some(Duration::from_secs(60))))
            .unwrap_or(ExitStatus::Unknown)
    }

    /// The status if already reaped, without touching the process.
    pub(crate) fn reaped_status(&self) -> Option<ExitStatus> {
        *self.status.lock()
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        // Never leave a running child or a zombie behind — unless this is
        // a forked child's copy: the process is the parent's.
        if self.owner.is_current() && self.try_wait().is_none() {
            self.kill_and_reap();
        }
    }
}
