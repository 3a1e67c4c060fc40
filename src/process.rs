//! Spawning QEMU and reaping it.
//!
//! The library lives inside someone else's process, so it installs no signal
//! handlers, reaps only its own child (by pid, never `waitpid(-1)`), signals
//! through a pidfd where the kernel has one (no pid-reuse race), and lets
//! the child inherit only the descriptors meant for it.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;

use crate::deadline::Deadline;
use crate::socket::poll_one;
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

    fn from_wait_status(raw: libc::c_int) -> Self {
        if libc::WIFEXITED(raw) {
            ExitStatus::Exited(libc::WEXITSTATUS(raw))
        } else if libc::WIFSIGNALED(raw) {
            ExitStatus::Signaled(libc::WTERMSIG(raw))
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

/// What to start: the whole argv (wrapper, binary, arguments), where its
/// output goes, and which of our descriptors it may inherit.
pub(crate) struct SpawnSpec<'a> {
    pub argv: &'a [String],
    pub output: &'a File,
    pub inherit: &'a [RawFd],
}

/// A spawn request for the spawner thread.
struct SpawnJob {
    argv: Vec<String>,
    output: File,
    inherit: Vec<RawFd>,
    reply: mpsc::SyncSender<io::Result<QemuProcess>>,
}

/// The thread every QEMU is started from. It lives as long as the process,
/// which lets each child ask the kernel (`PR_SET_PDEATHSIG`) to SIGKILL it
/// when that thread ends — that is, when the host process exits or crashes.
/// A test program that dies without shutting its machines down leaves no
/// QEMU behind. (The death signal follows the thread that forked, so
/// forking from the caller's thread would kill QEMU whenever that thread
/// ended.)
fn spawner() -> io::Result<&'static mpsc::Sender<SpawnJob>> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnJob>> = OnceLock::new();
    if let Some(s) = SPAWNER.get() {
        return Ok(s);
    }
    let (tx, rx) = mpsc::channel::<SpawnJob>();
    let _thread = threads::spawn("qm-spawner", move || {
        for job in rx {
            let result = catch_unwind(AssertUnwindSafe(|| spawn_here(&job)))
                .unwrap_or_else(|_| Err(io::Error::other("panic while starting QEMU")));
            let _ = job.reply.send(result);
        }
    })?;
    // Two first launches may race to here; the loser's thread exits when
    // its sender is dropped, having spawned nothing.
    Ok(SPAWNER.get_or_init(|| tx))
}

fn spawn_here(job: &SpawnJob) -> io::Result<QemuProcess> {
    let (program, args) = job
        .argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command line"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(job.output.try_clone()?))
        .stderr(Stdio::from(job.output.try_clone()?));
    let inherit = job.inherit.clone();
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: sigset_t is plain data filled by sigemptyset.
    let no_signals = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        set
    };
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe syscalls on plain data prepared beforehand.
    unsafe {
        cmd.pre_exec(move || {
            // This thread blocks every signal; QEMU must start with none
            // blocked.
            libc::pthread_sigmask(libc::SIG_SETMASK, &no_signals, std::ptr::null_mut());
            // Die with the host process (see `spawner`); if it is already
            // gone, do not start at all.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(127);
            }
            // Descriptors the host process leaked without O_CLOEXEC must
            // not reach QEMU either; kernels without close_range just
            // skip this step.
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
            );
            for &fd in &inherit {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    // `Child` neither kills nor waits on drop; from here on the pid is
    // managed by hand so that every reap goes through `status`.
    drop(child);
    Ok(QemuProcess {
        pid,
        pidfd: Mutex::new(pidfd_open(pid).map(Arc::new)),
        status: Mutex::new(None),
    })
}

/// A running (or exited, not yet reaped) child process.
#[derive(Debug)]
pub(crate) struct QemuProcess {
    pid: libc::pid_t,
    /// Closed as soon as the process is reaped; users hold a clone while
    /// they poll it.
    pidfd: Mutex<Option<Arc<OwnedFd>>>,
    /// `Some` once reaped. Held while signalling, so a signal can never be
    /// sent to a pid that was already reaped and possibly reused.
    status: Mutex<Option<ExitStatus>>,
}

impl QemuProcess {
    /// Start the process (from the spawner thread) and return once it has
    /// been exec'd, or with the reason it could not be.
    pub(crate) fn spawn(spec: &SpawnSpec<'_>) -> io::Result<QemuProcess> {
        let (reply, result) = mpsc::sync_channel(1);
        let job = SpawnJob {
            argv: spec.argv.to_vec(),
            output: spec.output.try_clone()?,
            inherit: spec.inherit.to_vec(),
            reply,
        };
        spawner()?
            .send(job)
            .map_err(|_| io::Error::other("the spawner thread is gone"))?;
        // The caller keeps the inherited descriptors open until this
        // returns, so the numbers in the job stay valid.
        result
            .recv()
            .map_err(|_| io::Error::other("the spawner thread is gone"))?
    }

    pub(crate) fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// A descriptor that becomes readable when the process exits, for
    /// watching it alongside sockets. `None` on kernels without pidfds and
    /// once the process has been reaped.
    pub(crate) fn exit_fd(&self) -> Option<Arc<OwnedFd>> {
        self.pidfd.lock().clone()
    }

    /// The exit status if the process has ended (reaping it), else `None`.
    pub(crate) fn try_wait(&self) -> Option<ExitStatus> {
        let mut status = self.status.lock();
        if let Some(s) = *status {
            return Some(s);
        }
        loop {
            let mut raw: libc::c_int = 0;
            // SAFETY: plain syscall; `raw` is a valid out pointer.
            let rc = unsafe { libc::waitpid(self.pid, &mut raw, libc::WNOHANG) };
            if rc == 0 {
                return None;
            }
            let result = if rc == self.pid {
                ExitStatus::from_wait_status(raw)
            } else {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // ECHILD: gone, and someone else collected the status.
                    _ => ExitStatus::Unknown,
                }
            };
            *status = Some(result);
            self.pidfd.lock().take();
            return Some(result);
        }
    }

    /// Wait until the process exits or the deadline passes.
    pub(crate) fn wait_until(&self, deadline: Deadline) -> Option<ExitStatus> {
        let mut backoff = Duration::from_micros(500);
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if deadline.expired() {
                return None;
            }
            match self.exit_fd() {
                Some(fd) => {
                    // Readable once the process has exited; errors fall back
                    // to the retry loop.
                    let _ = poll_one(fd.as_fd(), libc::POLLIN, None, deadline);
                }
                None => {
                    let nap = deadline.remaining().map_or(backoff, |r| r.min(backoff));
                    std::thread::sleep(nap);
                    backoff = (backoff * 2).min(Duration::from_millis(20));
                }
            }
        }
    }

    /// Send `sig` unless the process has already been reaped.
    pub(crate) fn signal(&self, sig: libc::c_int) {
        let status = self.status.lock();
        if status.is_some() {
            return;
        }
        if let Some(fd) = self.pidfd.lock().as_ref() {
            // SAFETY: plain syscall on a pidfd we own.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    sig,
                    std::ptr::null::<libc::siginfo_t>(),
                    0 as libc::c_uint,
                )
            };
            if rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
                return;
            }
        }
        // SAFETY: the pid is our unreaped child (checked under the lock), so
        // it cannot have been reused.
        unsafe {
            libc::kill(self.pid, sig);
        }
    }

    /// SIGKILL and reap. A process stuck in an uninterruptible sleep may not
    /// die at once; after a minute the status is reported as unknown rather
    /// than hanging the caller.
    pub(crate) fn kill_and_reap(&self) -> ExitStatus {
        self.signal(libc::SIGKILL);
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
        // Never leave a running child or a zombie behind.
        if self.try_wait().is_none() {
            self.kill_and_reap();
        }
    }
}

fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: plain syscall; on success it returns a new fd (O_CLOEXEC is
    // implied for pidfds) that we take ownership of.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}
