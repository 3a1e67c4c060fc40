//! [`Run`]: one launch of QEMU (or one attachment to a QEMU started
//! elsewhere) with its process, connections and files, and the ways it
//! ends.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::Mutex;
use tempfile::TempDir;

use super::launch::Transport;
use crate::console::Console;
use crate::deadline::Deadline;
use crate::error::{Error, LaunchError, Result};
use crate::process::QemuProcess;
use crate::qmp::QmpConnection;

/// How much of QEMU's output is kept in memory after the run (the tail).
const LOG_KEEP: u64 = 64 << 20;
/// How much log a disconnect message shows.
const LOG_TAIL_LINES: usize = 20;
/// How long a lost connection waits for QEMU's exit status to appear.
const EXIT_GRACE: Duration = Duration::from_secs(1);
/// How long cleanup waits for the last output and events of an exited QEMU
/// to be read before closing its connections.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// One launch of QEMU, or one attachment.
#[derive(Debug)]
pub(crate) struct Run {
    pub command_line: Vec<String>,
    /// `None` if QEMU could not be started at all, or for an attachment
    /// (the process is not ours).
    pub process: Option<QemuProcess>,
    /// Set once negotiation succeeded; stays (closed) after the run for its
    /// events.
    pub qmp: OnceLock<QmpConnection>,
    pub qmp_enabled: bool,
    pub transport: Transport,
    /// The TCP port of a TCP monitor.
    pub monitor_port: Option<u16>,
    /// The serial console, if configured; its output stays readable after
    /// the run.
    pub console: Option<Console>,
    pub temp_dir: Mutex<Option<TempDir>>,
    /// Files removed when the run ends (a Unix monitor socket).
    pub remove_on_finish: Vec<PathBuf>,
    /// `None` for an attachment: QEMU's output is elsewhere.
    pub log_path: Option<PathBuf>,
    /// QEMU's output, read into memory when the run is cleaned up (the file
    /// may be in the temporary directory).
    pub captured_log: Mutex<Option<String>>,
    /// A `quit` went through: shutdown then only waits.
    pub quit_issued: AtomicBool,
    /// The library sent SIGKILL.
    pub killed: AtomicBool,
    /// Cleanup done. Held during cleanup so it runs exactly once.
    pub finished: Mutex<bool>,
}

impl Run {
    /// A run for a QEMU started elsewhere, reached over `qmp`.
    pub(crate) fn attached(qmp: QmpConnection, transport: Transport, address: String) -> Run {
        let run = Run {
            command_line: vec![address],
            process: None,
            qmp: OnceLock::new(),
            qmp_enabled: true,
            transport,
            monitor_port: None,
            console: None,
            temp_dir: Mutex::new(None),
            remove_on_finish: Vec::new(),
            log_path: None,
            captured_log: Mutex::new(None),
            quit_issued: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            finished: Mutex::new(false),
        };
        let _ = run.qmp.set(qmp);
        run
    }

    pub(crate) fn is_finished(&self) -> bool {
        *self.finished.lock()
    }

    /// Not cleaned up, and QEMU still running (for an attachment: the
    /// connection still open).
    pub(crate) fn is_active(&self) -> bool {
        if self.is_finished() {
            return false;
        }
        match &self.process {
            Some(p) => p.try_wait().is_none(),
            None => self.qmp.get().is_some_and(QmpConnection::is_open),
        }
    }

    /// SIGKILL our QEMU unless it is already gone.
    pub(crate) fn kill(&self) {
        if let Some(process) = &self.process {
            if process.reaped_status().is_none() {
                self.killed.store(true, Ordering::SeqCst);
                process.kill_and_reap();
            }
        }
    }

    /// Ask QEMU to quit, unless a `quit` already went through. A closed
    /// connection is fine: QEMU is on its way out.
    fn send_quit(&self, deadline: Deadline) -> std::result::Result<(), String> {
        if self.quit_issued.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        match self.qmp.get().map(|q| q.execute("quit", None, deadline)) {
            Some(Ok(_)) | Some(Err(Error::Disconnected(_))) | None => Ok(()),
            Some(Err(e)) => Err(format!("'quit' failed: {e}")),
        }
    }

    /// The graceful part of a shutdown.
    pub(crate) fn stop(&self, deadline: Deadline) -> Result<()> {
        let Some(process) = &self.process else {
            return self.stop_attached(deadline);
        };
        let mut failure = None;
        if process.try_wait().is_none() {
            let asked = if self.qmp_enabled {
                failure = self.send_quit(deadline).err();
                "'quit'"
            } else {
                if !self.quit_issued.swap(true, Ordering::SeqCst) {
                    process.signal(libc::SIGTERM);
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
            return Err(Error::AbnormalShutdown(format!(
                "{why}; QEMU was killed with SIGKILL and reaped"
            )));
        }
        match process.try_wait() {
            Some(status) if status.success() && !self.killed.load(Ordering::SeqCst) => Ok(()),
            Some(status) => Err(Error::AbnormalShutdown(self.with_log_tail(&format!(
                "QEMU {status}{}",
                if self.killed.load(Ordering::SeqCst) {
                    " (killed by the library)"
                } else {
                    ""
                }
            )))),
            None => unreachable!("waited for the exit above"),
        }
    }

    /// Shutdown of an attachment: `quit`, then wait for QEMU to close the
    /// connection. The process is not ours to kill.
    fn stop_attached(&self, deadline: Deadline) -> Result<()> {
        let Some(qmp) = self.qmp.get() else {
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
    /// connection).
    pub(crate) fn wait_exit(&self, deadline: Deadline) -> Result<()> {
        let exited = match (&self.process, self.qmp.get()) {
            (Some(process), _) => process.wait_until(deadline).is_some(),
            (None, Some(qmp)) => qmp.wait_closed(deadline),
            (None, None) => true,
        };
        if exited {
            Ok(())
        } else {
            Err(Error::Timeout(format!(
                "QEMU did not exit {}; it is still running",
                deadline.describe()
            )))
        }
    }

    /// Cleanup after QEMU has gone: close connections, keep the log, remove
    /// the temporary directory and socket files. Kills our QEMU if it still
    /// runs. Idempotent.
    pub(crate) fn finish(&self) {
        let mut finished = self.finished.lock();
        if *finished {
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
        if let Some(qmp) = self.qmp.get() {
            qmp.close(grace);
        }
        if let Some(console) = &self.console {
            console.close(grace);
        }
        if let Some(path) = &self.log_path {
            *self.captured_log.lock() = Some(read_log(path));
        }
        if let Some(dir) = self.temp_dir.lock().take() {
            let _ = dir.close();
        }
        for path in &self.remove_on_finish {
            let _ = std::fs::remove_file(path);
        }
        *finished = true;
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.is_finished() {
            return Err(Error::state(
                "the machine is not running (it was shut down)",
            ));
        }
        Ok(())
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

    fn log_tail(&self) -> String {
        let log = self.log().unwrap_or_default();
        let lines: Vec<&str> = log.trim_end().lines().collect();
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
    fn with_log_tail(&self, what: &str) -> String {
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
            exit_status: self.process.as_ref().and_then(QemuProcess::reaped_status),
            command_line: quote_command_line(&self.command_line),
            output: self.log().unwrap_or_default(),
        }))
    }
}

/// Read a log file, keeping at most its last [`LOG_KEEP`] bytes.
fn read_log(path: &Path) -> String {
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

/// The command line as a shell would need it, for messages.
pub(crate) fn quote_command_line(argv: &[String]) -> String {
    shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "))
}
