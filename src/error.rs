//! The library's one error type. Every variant corresponds to exactly one
//! `qm_status` code of the C API (see `src/ffi/status.rs`), so a Rust caller
//! and a C caller see the same failure the same way.

use std::fmt;
use std::io;

use crate::process::ExitStatus;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while driving a QEMU machine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A caller passed something unusable: a bad string, bad JSON, JSON of
    /// the wrong type, an out-of-range value.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The call does not fit the machine's lifecycle state (configuring a
    /// running machine, a QMP command before launch, ...).
    #[error("{0}")]
    State(String),

    /// QEMU did not start. Carries the exit status, command line and output.
    #[error(transparent)]
    Launch(Box<LaunchError>),

    /// A deadline passed before the awaited thing happened.
    #[error("{0}")]
    Timeout(String),

    /// The QMP or console connection is gone, usually because QEMU exited.
    /// The message says how QEMU ended and shows the tail of its log.
    #[error("{0}")]
    Disconnected(String),

    /// The peer broke its protocol (QMP, the guest agent's, qtest's). For
    /// QMP and qtest the connection is unusable from then on (the error is
    /// sticky). Also a single reply that is valid JSON but cannot be held
    /// in a `serde_json::Value` (a number beyond `f64`); that one leaves
    /// the connection usable, and [`crate::Machine::command_text`] returns
    /// it as text.
    #[error("protocol error: {0}")]
    Protocol(String),

    /// A command was refused: QMP or the guest agent answered with
    /// `{"error": {"class": ..., "desc": ...}}`, qtest with `FAIL`/`ERR`, or
    /// a migration ended `failed`.
    #[error("'{command}' failed: {class}: {desc}")]
    Command {
        /// The command that failed.
        command: String,
        /// QMP error class, e.g. `CommandNotFound` or `GenericError`.
        class: String,
        /// QEMU's human-readable description.
        desc: String,
    },

    /// A graceful shutdown failed; QEMU was killed and reaped anyway.
    #[error("abnormal shutdown: {0}")]
    AbnormalShutdown(String),

    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What the library was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The machine's configuration cannot fulfil the request: a console
    /// call without a console, a QMP call with QMP disabled, passing a
    /// descriptor over a TCP monitor.
    #[error("{0}")]
    AddDevice(String),

    /// The serial console showed the failure pattern before the success
    /// pattern.
    #[error("console showed failure pattern {pattern:?}; output up to it:\n{output}")]
    ConsoleFailure {
        /// The failure pattern that matched.
        pattern: String,
        /// Console output from the read cursor up to and including the match.
        output: String,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    pub(crate) fn state(msg: impl Into<String>) -> Self {
        Error::State(msg.into())
    }
}

/// Why a launch failed, with everything needed to understand it.
#[derive(Debug)]
pub struct LaunchError {
    /// What went wrong, e.g. "QEMU exited before the QMP greeting".
    pub reason: String,
    /// How QEMU ended, if it ran at all.
    pub exit_status: Option<ExitStatus>,
    /// The full command line, shell-quoted.
    pub command_line: String,
    /// QEMU's stdout and stderr.
    pub output: String,
}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QEMU launch failed: {}", self.reason)?;
        match &self.exit_status {
            Some(status) => write!(f, "\n  exit status: {status}")?,
            None => write!(f, "\n  exit status: none (QEMU did not run)")?,
        }
        write!(f, "\n  command: {}", self.command_line)?;
        let output = self.output.trim_end();
        if output.is_empty() {
            write!(f, "\n  output: (none)")
        } else {
            write!(f, "\n  output:\n{output}")
        }
    }
}

impl std::error::Error for LaunchError {}
