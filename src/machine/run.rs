//! [`Run`]: one launch of QEMU (or one attachment to a QEMU started
//! elsewhere) with its process, connections and files, and the ways it
//! ends. A run is built whole once a launch has succeeded or failed; the
//! lifecycle (`lifecycle.rs`) decides which thread ends it, so nothing here
//! needs a lock across blocking work.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rustix::process::Signal;
use tempfile::TempDir;

use super::launch::Transport;
use crate::agent::AgentChannel;
use crate::console::Console;
use crate::deadline::Deadline;
use crate::error::{Error, LaunchError, Result};
use crate::owner::Owner;
use crate::process::{ExitStatus, QemuProcess};
use crate::qmp::QmpConnection;
use crate::qtest::QtestChannel;

/// How much of QEMU's output is kept in memory after the run (the tail).
const LOG_KEEP: u64 = 64 << 20;
/// How much log a disconnect message shows.
const LOG_TAIL_LINES: usize = 20;
/// Bytes read from the end of the log to find those lines.
const LOG_TAIL_BYTES: u64 = 64 << 10;
/// How long a lost connection waits for QEMU's exit status to appear.
const EXIT_GRACE: Duration = Duration::from_secs(1);
/// How long cleanup waits for the last output and events of an exited QEMU
/// to be read before closing its connections.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Files of a run, removed when it is cleaned up — by the process that
/// created them only (a forked child's copy leaves them alone).
#[derive(Debug, Default)]
pub(crate) struct RunFiles {
    pub temp_dir: Option<TempDir>,
    /// A Unix monitor socket the library listened on.
    pub socket_file: Option<PathBuf>,
    pub owner: Option<Owner>,
}

impl RunFiles {
    /// Remove everything now (idempotent).
    pub(crate) fn remove(&mut self) {
        if !self.owner.is_some_and(|o| o.is_current()) {
            std::mem::forget(self.temp_dir.take());
            self.socket_file = None;
            return;
        }
        if let Some(dir) = self.temp_dir.take() {
            let _ = dir.close();
        }
        if let Some(path) = self.socket_file.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for RunFiles {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Where a run's QEMU came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Launched by the library.
    Launched,
    /// Started elsewhere and reached at this address.
    Attached(String),
}

/// One launch of QEMU, or one attachment.
#[derive(Debug)]
pub(crate) struct Run {
    pub origin: Origin,
    pub command_line: Vec<String>,
    /// `None` if QEMU could not be started at all, or for an attachment.
    pub process: Option<Arc<QemuProcess>>,
    /// `None` when QMP is disabled or negotiation failed; stays (closed)
    /// after the run for its events.
    pub qmp: Option<QmpConnection>,
    pub transport: Transport,
    /// The TCP port of a TCP monitor.
    pub monitor_port: Option<u16>,
    /// The serial console; its output stays readable after the run.
    pub console: Option<Console>,
    /// The guest agent's channel.
    pub agent: Option<AgentChannel>,
    /// The qtest channel.
    pub qtest: Option<QtestChannel>,
    pub files: Mutex<RunFiles>,
    /// `None` for an attachment: QEMU's output is elsewhere.
    pub log_path: Option<PathBuf>,
    /// QEMU's output, read into memory when the run is cleaned up (the file
    /// may be in the temporary directory).
    pub captured_log: Mutex<Option<String>>,
    /// A `quit` went through (or SIGTERM was sent): shutdown then only
    /// waits.
    pub quit_issued: AtomicBool,
    /// The library sent SIGKILL.
    pub killed: AtomicBool,
    /// How the run ended, once it has, for `status.txt` and messages.
    pub ending: Mutex<Option<String>>,
    /// Where the QMP trace goes, if anywhere.
    pub trace_path: Mutex<Option<PathBuf>>,
    finished: AtomicBool,
}

/// The parts a launch (or attachment) hands to [`Run::new`].
pub(crate) struct RunParts {
    pub origin: Origin,
    pub command_line: Vec<String>,
    pub process: Option<Arc<QemuProcess>>,
    pub qmp: Option<QmpConnection>,
    pub transport: Transport,
    pub monitor_port: Option<u16>,
    pub console: Option<Console>,
    pub agent: Option<AgentChannel>,
    pub qtest: Option<QtestChannel>,
    pub files: RunFiles,
    pub log_path: Option<PathBuf>,
    pub trace_path: Option<PathBuf>,
}

impl Run {
    pub(crate) fn new(parts: RunParts) -> Run {
        Run {
            origin: parts.origin,
            command_line: parts.command_line,
            process: parts.process,
            qmp: parts.qmp,
            transport: parts.transport,
            monitor_port: parts.monitor_port,
            console: parts.console,
            agent: parts.agent,
            qtest: parts.qtest,
            files: Mutex::new(parts.files),
            log_path: parts.log_path,
            captured_log: Mutex::new(None),
            quit_issued: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            ending: Mutex::new(None),
            trace_path: Mutex::new(parts.trace_path),
            finished: AtomicBool::new(false),
        }
    }

    pub(crate) fn is_attached(&self) -> bool {
        matches!(self.origin, Origin::Attached(_))
    }

    /// QEMU still runs (for an attachment: the connection is still open).
    /// Never blocks.
    pub(crate) fn is_alive(&self) -> bool {
        match &self.process {
            Some(p) => p.try_wait().is_none(),
            None => self.qmp.as_ref().is_some_and(QmpConnection::is_open),
        }
    }

    /// The QMP connection, or why there is none.
    pub(crate) fn qmp(&self) -> Result<&QmpConnection> {
        self.qmp.as_ref().ok_or_else(|| {
            Error::AddDevice("QMP is disabled for this machine (see qmp(false))".into())
        })
    }

    /// SIGKILL our QEMU unless it is already gone. Does not reap.
    pub(crate) fn kill(&self) {
        if let Some(process) = &self.process {
            if process.reaped_status().is_none() {
                self.killed.store(true, Ordering::SeqCst);
                process.signal(Signal::KILL);
            }
        }
    }

    /// Ask QEMU to quit, unless a `quit` already went through. A closed
    /// connection is fine: QEMU is on its way out.
    fn send_quit(&self, deadline: Deadline) -> std::result::Result<(), String> {
        if self.quit_issued.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        match self.qmp.as_ref().map(|q| q.execute("quit", None, deadline)) {
            Some(Ok(_)) | Some(Err(Error::Disconnected(_))) | None => Ok(()),
            Some(Err(e)) => Err(format!("'quit' failed: {e}")),
        }
    }

    /// The graceful part of a shutdown: `quit` (or SIGTERM without QMP) and
    /// wait; SIGKILL if that fails.
    pub(crate) fn stop(&self, deadline: Deadline) -> Result<()> {
        let Some(process) = &self.process else {
            return self.stop_attached(deadline);
        };
        let mut failure = None;
        if process.try_wait().is_none() {
            let asked = if self.qmp.is_some() {
                failure = self.send_quit(deadline).err();
                "'quit'"
            } else {
                if !self.quit_issued.swap(true, Ordering::SeqCst) {
                    process.signal(Signal::TERM);
                }
                "SIGTERM"
            };
            if failure.is_none() && process.wait_until(deadline).is_none() {
                failure = Some(format!(
                    "QEMU did not exit {} after {asked}",
                    deadline.describe()
                ));
            }
        }
        if let Some(why) = failure {
            self.kill();
            process.kill_and_reap();
            let why = format!("{why}; QEMU was killed with SIGKILL and reaped");
            self.set_ending(why.clone());
            return Err(Error::AbnormalShutdown(why));
        }
        self.verdict()
    }

    /// How the run ended, as a shutdown reports it: `Ok` only if QEMU
    /// exited with status 0 without being killed by the library.
    pub(crate) fn verdict(&self) -> Result<()> {
        let Some(process) = &self.process else {
            return Ok(());
        };
        let killed = self.killed.load(Ordering::SeqCst);
        match process.try_wait() {
            Some(status) if status.success() && !killed => Ok(()),
            Some(ExitStatus::Unknown) if !killed => Err(Error::AbnormalShutdown(format!(
                "QEMU exited, but its {} (SIGCHLD is ignored in this process, or something \
                 else reaped it), so a clean exit cannot be confirmed",
                ExitStatus::Unknown
            ))),
            Some(status) => Err(Error::AbnormalShutdown(self.with_log_tail(&format!(
                "QEMU {status}{}",
                if killed {
                    " (killed by the library)"
                } else {
                    ""
                }
            )))),
            None => Err(Error::AbnormalShutdown(format!(
                "QEMU (pid {}) is still running",
                process.pid()
            ))),
        }
    }

    /// Shutdown of an attachment: `quit`, then wait for QEMU to close the
    /// connection. The process is not ours to kill.
    fn stop_attached(&self, deadline: Deadline) -> Result<()> {
        let Some(qmp) = &self.qmp else {
            return Ok(());
        };
        if qmp.is_open() {
            self.send_quit(deadline).map_err(Error::Timeout)?;
        }
        if qmp.wait_closed(deadline) {
            Ok(())
        } else {
            Err(Error::Timeout(format!(
                "QEMU did not close the QMP connection {} after 'quit' \
                 (it was not started by this library, so it cannot be killed)",
                deadline.describe()
            )))
        }
    }

    /// Wait for QEMU to exit on its own (for an attachment: to close the
    /// connection). `false` at the deadline.
    pub(crate) fn wait_exit(&self, deadline: Deadline) -> bool {
        match (&self.process, &self.qmp) {
            (Some(process), _) => process.wait_until(deadline).is_some(),
            (None, Some(qmp)) => qmp.wait_closed(deadline),
            (None, None) => true,
        }
    }

    /// Cleanup once QEMU is to be gone: kill and reap our QEMU if it still
    /// runs, close connections (after reading what QEMU sent before
    /// exiting), keep the log, remove the temporary directory and socket
    /// files. Called once, by the thread that ends the run.
    pub(crate) fn finish(&self) {
        if self.finished.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(process) = &self.process {
            if process.try_wait().is_none() {
                self.killed.store(true, Ordering::SeqCst);
                process.kill_and_reap();
            }
        }
        // An attachment's QEMU lives on: do not wait for it to close.
        let grace = if self.process.is_some() {
            DRAIN_GRACE
        } else {
            Duration::ZERO
        };
        if let Some(qmp) = &self.qmp {
            qmp.wait_closed(Deadline::after(Some(grace)));
            qmp.close();
        }
        if let Some(console) = &self.console {
            console.close(grace);
        }
        if let Some(agent) = &self.agent {
            agent.close();
        }
        if let Some(qtest) = &self.qtest {
            qtest.close();
        }
        if let Some(path) = &self.log_path {
            *self.captured_log.lock() = Some(read_log(path));
        }
        self.files.lock().remove();
        let mut ending = self.ending.lock();
        if ending.is_none() {
            *ending = Some(self.describe_end());
        }
    }

    pub(crate) fn set_ending(&self, why: String) {
        *self.ending.lock() = Some(why);
    }

    /// How QEMU ended, in words.
    fn describe_end(&self) -> String {
        match (&self.process, &self.origin) {
            (_, Origin::Attached(address)) => format!("disconnected from {address}"),
            (None, _) => "QEMU did not start".to_string(),
            (Some(p), _) => match p.reaped_status() {
                Some(status) if self.killed.load(Ordering::SeqCst) => {
                    format!("QEMU {status} (killed by the library)")
                }
                Some(status) => format!("QEMU {status}"),
                None => format!("QEMU (pid {}) is still running", p.pid()),
            },
        }
    }

    /// One line for `status.txt`: running, or how it ended.
    pub(crate) fn status_line(&self) -> String {
        if let Some(ending) = self.ending.lock().clone() {
            return ending;
        }
        match &self.process {
            Some(p) => match p.reaped_status() {
                Some(_) => self.describe_end(),
                None => format!("running (pid {})", p.pid()),
            },
            None if self.is_attached() => "attached".to_string(),
            None => self.describe_end(),
        }
    }

    /// QEMU's output so far (or all of it, after the run).
    pub(crate) fn log(&self) -> Result<String> {
        if let Some(log) = self.captured_log.lock().as_ref() {
            return Ok(log.clone());
        }
        match &self.log_path {
            Some(path) => Ok(read_log(path)),
            None => Err(Error::state(
                "QEMU's log is not available: the machine is attached to a QEMU started elsewhere",
            )),
        }
    }

    /// The last lines of QEMU's output, read from the end (a big log is
    /// not read whole).
    fn log_tail(&self) -> String {
        let tail = match (self.captured_log.lock().as_ref(), &self.log_path) {
            (Some(log), _) => {
                let mut from = log.len().saturating_sub(LOG_TAIL_BYTES as usize);
                while !log.is_char_boundary(from) {
                    from += 1;
                }
                log[from..].to_string()
            }
            (None, Some(path)) => read_tail(path, LOG_TAIL_BYTES),
            (None, None) => String::new(),
        };
        let lines: Vec<&str> = tail.trim_end().lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// Add how QEMU ended to a message.
    fn describe_exit(&self, what: &str) -> String {
        let Some(process) = &self.process else {
            return what.to_string();
        };
        match process.wait_until(Deadline::after(Some(EXIT_GRACE))) {
            Some(status) => format!("{what}; QEMU {status}"),
            None => format!("{what}; QEMU (pid {}) is still running", process.pid()),
        }
    }

    /// Add QEMU's last words to a message.
    pub(crate) fn with_log_tail(&self, what: &str) -> String {
        let mut msg = what.to_string();
        let tail = self.log_tail();
        if !tail.is_empty() {
            msg.push_str("\nlast lines of QEMU's output:\n");
            msg.push_str(&tail);
        }
        msg
    }

    /// Enrich a lost-connection error with the exit status and log tail.
    pub(crate) fn explain(&self, err: Error) -> Error {
        match err {
            Error::Disconnected(detail) => {
                Error::Disconnected(self.with_log_tail(&self.describe_exit(&detail)))
            }
            other => other,
        }
    }

    pub(crate) fn launch_error(&self, reason: String) -> Error {
        let reason = if self.killed.load(Ordering::SeqCst) {
            format!("{reason}; QEMU was still running and has been killed")
        } else {
            reason
        };
        Error::Launch(Box::new(LaunchError {
            reason,
            exit_status: self.process.as_ref().and_then(|p| p.reaped_status()),
            command_line: quote_command_line(&self.command_line),
            output: self.log().unwrap_or_default(),
        }))
    }
}

/// Read a log file, keeping at most its last [`LOG_KEEP`] bytes.
fn read_log(path: &std::path::Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut prefix = String::new();
    if len > LOG_KEEP {
        let _ = file.seek(SeekFrom::Start(len - LOG_KEEP));
        prefix = format!("[... {} earlier bytes omitted ...]\n", len - LOG_KEEP);
    }
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    prefix + &String::from_utf8_lossy(&bytes)
}

/// The last `bytes` of a file, as text.
fn read_tail(path: &std::path::Path, bytes: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(bytes)));
    let mut tail = Vec::new();
    let _ = file.take(bytes).read_to_end(&mut tail);
    String::from_utf8_lossy(&tail).into_owned()
}

/// The command line as a shell would need it, for messages.
pub(crate) fn quote_command_line(argv: &[String]) -> String {
    shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "))
}
