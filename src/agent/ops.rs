//! What tests do through the agent, built from its commands: run a
//! program and collect its output (`guest-exec` + `guest-exec-status`),
//! read and write files (`guest-file-*`).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Value};

use super::AgentChannel;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::machine::returned;
use crate::qmp::wire::Arguments;

/// Bytes per `guest-file-read`: a line of ~1.4 MB of base64.
const READ_CHUNK: usize = 1 << 20;
/// Bytes per `guest-file-write`. The agent decodes base64 under emulation
/// slowly; smaller chunks keep each command well within a deadline.
const WRITE_CHUNK: usize = 256 << 10;
/// Polling `guest-exec-status` starts at 1 ms and backs off to this.
const EXEC_POLL_MAX: Duration = Duration::from_millis(100);
/// Time allowed to close a guest file after the call's own deadline passed.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How a program run through the agent ended, and what it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    /// The exit code (`>= 0`), or minus the signal that ended it (`< 0`).
    pub exit_code: i32,
    /// Its standard output, byte-exact.
    pub stdout: Vec<u8>,
    /// Its standard error, byte-exact.
    pub stderr: Vec<u8>,
    /// The agent cut the output (it keeps at most 16 MiB per stream).
    pub truncated: bool,
}

/// The `return` value of an agent command, parsed.
fn command(agent: &AgentChannel, cmd: &str, args: Value, deadline: Deadline) -> Result<Value> {
    let args = Arguments::from_value(&args)?;
    let reply = agent.execute(cmd, Some(&args), deadline)?;
    returned(cmd, reply)?.member().map_err(Error::Protocol)
}

fn field<'a>(value: &'a Value, name: &str, cmd: &str) -> Result<&'a Value> {
    value.get(name).ok_or_else(|| {
        Error::Protocol(format!(
            "the guest agent's reply to '{cmd}' has no '{name}': {value}"
        ))
    })
}

fn decode(value: Option<&Value>, what: &str) -> Result<Vec<u8>> {
    match value.and_then(Value::as_str) {
        None => Ok(Vec::new()),
        Some(text) => BASE64
            .decode(text)
            .map_err(|e| Error::Protocol(format!("the guest agent's {what} is not base64: {e}"))),
    }
}

impl AgentChannel {
    /// Run `argv` in the guest (`guest-exec` with captured output, `input`
    /// on its standard input), then poll `guest-exec-status` until it has
    /// exited, all within `deadline`. On timeout the program is left
    /// running and the message gives its pid in the guest.
    pub(crate) fn exec(
        &self,
        argv: &[&str],
        input: Option<&[u8]>,
        deadline: Deadline,
    ) -> Result<ExecResult> {
        let (path, args) = argv
            .split_first()
            .ok_or_else(|| Error::invalid("argv must name a program (it is empty)"))?;
        if path.is_empty() {
            return Err(Error::invalid("the program (argv[0]) must not be empty"));
        }
        let mut request = json!({ "path": path, "arg": args, "capture-output": true });
        if let Some(input) = input {
            request["input-data"] = Value::from(BASE64.encode(input));
        }
        let started = command(self, "guest-exec", request, deadline)?;
        let pid = field(&started, "pid", "guest-exec")?.clone();
        let mut pause = Duration::from_millis(1);
        loop {
            let status = match command(self, "guest-exec-status", json!({ "pid": pid }), deadline) {
                Err(Error::Timeout(why)) => {
                    return Err(Error::Timeout(format!(
                        "{why}; '{}' is still running in the guest as pid {pid}",
                        argv.join(" ")
                    )))
                }
                other => other?,
            };
            if field(&status, "exited", "guest-exec-status")?.as_bool() == Some(true) {
                let exit_code = match (
                    status.get("exitcode").and_then(Value::as_i64),
                    status.get("signal").and_then(Value::as_i64),
                ) {
                    (_, Some(signal)) => -(signal as i32),
                    (Some(code), None) => code as i32,
                    (None, None) => {
                        return Err(Error::Protocol(format!(
                            "guest-exec-status reports an exit without a code or signal: {status}"
                        )))
                    }
                };
                let flag = |name: &str| status.get(name).and_then(Value::as_bool) == Some(true);
                return Ok(ExecResult {
                    exit_code,
                    stdout: decode(status.get("out-data"), "standard output")?,
                    stderr: decode(status.get("err-data"), "standard error")?,
                    truncated: flag("out-truncated") || flag("err-truncated"),
                });
            }
            if deadline.expired() {
                return Err(Error::Timeout(format!(
                    "'{}' did not finish {}; it is still running in the guest as pid {pid}",
                    argv.join(" "),
                    deadline.describe()
                )));
            }
            let nap = deadline.remaining().map_or(pause, |left| left.min(pause));
            std::thread::sleep(nap);
            pause = (pause * 2).min(EXEC_POLL_MAX);
        }
    }

    /// The whole content of the guest file `path`.
    pub(crate) fn file_read(&self, path: &str, deadline: Deadline) -> Result<Vec<u8>> {
        self.with_file(path, "r", deadline, |handle| {
            let mut data = Vec::new();
            loop {
                let chunk = command(
                    self,
                    "guest-file-read",
                    json!({ "handle": handle, "count": READ_CHUNK }),
                    deadline,
                )?;
                data.extend(decode(chunk.get("buf-b64"), "file data")?);
                if field(&chunk, "eof", "guest-file-read")?.as_bool() == Some(true) {
                    return Ok(data);
                }
            }
        })
    }

    /// Write `data` to the guest file `path` (created or truncated).
    pub(crate) fn file_write(&self, path: &str, data: &[u8], deadline: Deadline) -> Result<()> {
        self.with_file(path, "w", deadline, |handle| {
            for chunk in data.chunks(WRITE_CHUNK) {
                let wrote = command(
                    self,
                    "guest-file-write",
                    json!({ "handle": handle, "buf-b64": BASE64.encode(chunk) }),
                    deadline,
                )?;
                let count = field(&wrote, "count", "guest-file-write")?.as_u64();
                if count != Some(chunk.len() as u64) {
                    return Err(Error::Protocol(format!(
                        "the guest agent wrote {count:?} of {} bytes",
                        chunk.len()
                    )));
                }
            }
            Ok(())
        })
    }

    /// Open `path` in the guest, run `body` on the handle, and close the
    /// handle whatever happened (given a little time past the deadline).
    fn with_file<T>(
        &self,
        path: &str,
        mode: &str,
        deadline: Deadline,
        body: impl FnOnce(&Value) -> Result<T>,
    ) -> Result<T> {
        if path.is_empty() || path.contains('\0') {
            return Err(Error::invalid(
                "the guest path must be non-empty, without NUL bytes",
            ));
        }
        let handle = command(
            self,
            "guest-file-open",
            json!({ "path": path, "mode": mode }),
            deadline,
        )?;
        let outcome = body(&handle);
        let closed = command(
            self,
            "guest-file-close",
            json!({ "handle": handle }),
            deadline.at_least(CLOSE_GRACE),
        );
        match (outcome, closed) {
            (Ok(value), Ok(_)) => Ok(value),
            (Ok(_), Err(e)) => Err(e),
            (Err(e), Ok(_)) => Err(e),
            (Err(e), Err(close)) => Err(with_note(
                e,
                &format!("(guest file handle {handle} could not be closed: {close})"),
            )),
        }
    }
}

/// Add a note to an error's message, keeping its kind.
fn with_note(err: Error, note: &str) -> Error {
    match err {
        Error::Timeout(m) => Error::Timeout(format!("{m} {note}")),
        Error::Disconnected(m) => Error::Disconnected(format!("{m} {note}")),
        Error::Protocol(m) => Error::Protocol(format!("{m} {note}")),
        other => other,
    }
}
