//! The QEMU guest agent (`qemu-ga`) over a library-owned channel: a
//! socketpair chardev that QEMU connects to a virtio-serial port named
//! `org.qemu.guest_agent.0` (or to an extra ISA serial port) in the guest.
//!
//! The agent's protocol is QMP's without a greeting and without reply ids:
//! a reply that comes late would be taken for the next command's. So the
//! channel is *synchronized* before a command whenever its state is not
//! known: `guest-sync-delimited` with a fresh random id, preceded by a 0xFF
//! byte (which resets the agent's JSON parser); the agent answers with a
//! 0xFF byte and `{"return": ID}`. Everything before that answer — late
//! replies, the agent's complaint about the 0xFF, a cooked-mode tty echo of
//! what was sent (which can hold both 0xFF and the sync command itself) —
//! is discarded, and only a reply to the id just sent counts. The sync is
//! retried within the call's one deadline, since the agent starts late in
//! the guest's boot and its first sync on a serial port is mangled. It is
//! redone after any timeout or protocol hiccup.
//!
//! One agent command is on the wire at a time: callers queue for their
//! turn, and each caller's deadline covers its wait in the queue. The
//! channel layer (`channel.rs`) gives the rest: one deadline per call,
//! QEMU's death seen at once, no thread.

mod ops;

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value;

pub use ops::ExecResult;

use crate::channel::{Channel, Protocol, SendError};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::qmp::framing::{parse_message, snippet, LineTooLong, Message, Reply};
use crate::qmp::wire::{self, Arguments};
use crate::socket::Socket;

/// Longest agent line accepted: `guest-exec-status` carries up to 16 MiB of
/// output per stream as base64.
const MAX_LINE: usize = 48 << 20;

/// First wait for a sync reply before sending another sync; doubles up to
/// [`SYNC_RETRY_MAX`].
const SYNC_RETRY_FIRST: Duration = Duration::from_millis(200);
const SYNC_RETRY_MAX: Duration = Duration::from_secs(1);

/// Where the agent's channel sits in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AgentDevice {
    /// A virtio-serial port named `org.qemu.guest_agent.0` on a
    /// virtio-serial bus of its own.
    VirtioSerial,
    /// `-device TYPE,chardev=...` (an ISA serial port: "isa-serial").
    Device(String),
}

impl AgentDevice {
    /// The QEMU arguments for the channel on chardev socket `fd`.
    pub(crate) fn qemu_args(&self, fd: i32) -> Vec<String> {
        let mut args = vec![
            "-chardev".to_string(),
            format!("socket,id=qm-agent,fd={fd}"),
        ];
        match self {
            AgentDevice::VirtioSerial => args.extend([
                "-device".to_string(),
                "virtio-serial,id=qm-agent-bus".to_string(),
                "-device".to_string(),
                "virtserialport,bus=qm-agent-bus.0,chardev=qm-agent,name=org.qemu.guest_agent.0"
                    .to_string(),
            ]),
            AgentDevice::Device(device) => {
                args.push("-device".to_string());
                args.push(format!("{device},chardev=qm-agent"));
            }
        }
        args
    }

    fn describe(&self) -> String {
        match self {
            AgentDevice::VirtioSerial => "virtio-serial port org.qemu.guest_agent.0".to_string(),
            AgentDevice::Device(device) => format!("{device} port"),
        }
    }
}

/// What the channel waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Nothing,
    /// The answer to `guest-sync-delimited` with this id.
    Sync(u64),
    /// The reply to the command just sent.
    Reply,
}

/// The agent protocol's routing state.
#[derive(Debug)]
pub(crate) struct Agent {
    awaiting: Awaiting,
    /// The reply to the command in flight, or what went wrong instead.
    reply: Option<std::result::Result<Reply, String>>,
    /// The stream is known to be in step: the last sync was answered and
    /// nothing unexpected came since.
    synced: bool,
    /// Lines discarded (before a sync's answer, or unasked).
    discarded: u64,
}

impl Protocol for Agent {
    fn route(&mut self, line: &[u8]) -> std::result::Result<(), String> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match self.awaiting {
            Awaiting::Sync(id) => {
                // Only a reply to this id, after the last 0xFF, counts.
                let answered = memchr::memrchr(0xFF, line)
                    .map(|at| &line[at + 1..])
                    .and_then(|rest| serde_json::from_slice::<Value>(rest).ok())
                    .is_some_and(|v| v == serde_json::json!({ "return": id }));
                if answered {
                    self.awaiting = Awaiting::Nothing;
                    self.synced = true;
                } else {
                    self.discarded += 1;
                }
            }
            Awaiting::Reply => match parse_message(line) {
                Ok(None) => {}
                Ok(Some(Message::Reply(reply))) => {
                    self.reply = Some(Ok(reply));
                    self.awaiting = Awaiting::Nothing;
                }
                Ok(Some(_)) | Err(_) => {
                    self.reply = Some(Err(format!(
                        "the guest agent sent something that is not a reply: {}",
                        snippet(line)
                    )));
                    self.awaiting = Awaiting::Nothing;
                    self.synced = false;
                }
            },
            Awaiting::Nothing => {
                if !line.iter().all(u8::is_ascii_whitespace) {
                    // Nobody asked: the stream is out of step.
                    self.discarded += 1;
                    self.synced = false;
                }
            }
        }
        Ok(())
    }

    fn too_long(&mut self, err: LineTooLong) -> std::result::Result<(), String> {
        // Recoverable: the line was dropped; resynchronize next time.
        if self.awaiting == Awaiting::Reply {
            self.reply = Some(Err(format!(
                "the guest agent sent a line longer than {} bytes: {}",
                err.limit,
                snippet(&err.head)
            )));
            self.awaiting = Awaiting::Nothing;
        }
        self.synced = false;
        self.discarded += 1;
        Ok(())
    }
}

/// The guest agent's channel of one run.
pub(crate) struct AgentChannel {
    channel: Channel<Agent>,
    /// One command on the wire at a time; callers queue here.
    turn: Mutex<()>,
    device: AgentDevice,
}

impl std::fmt::Debug for AgentChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentChannel")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl AgentChannel {
    /// Talk to the agent over `socket` (our end of its chardev); `exit` is
    /// QEMU's pidfd.
    pub(crate) fn new(
        socket: Socket,
        exit: Option<Arc<OwnedFd>>,
        device: AgentDevice,
    ) -> AgentChannel {
        AgentChannel {
            channel: Channel::new(
                "guest agent",
                socket,
                exit,
                MAX_LINE,
                Agent {
                    awaiting: Awaiting::Nothing,
                    reply: None,
                    synced: false,
                    discarded: 0,
                },
            ),
            turn: Mutex::new(()),
            device,
        }
    }

    /// Wait for this caller's turn on the channel, within the deadline.
    fn turn(&self, deadline: Deadline) -> Result<parking_lot::MutexGuard<'_, ()>> {
        let guard = match deadline.remaining() {
            None => Some(self.turn.lock()),
            Some(left) => self.turn.try_lock_for(left),
        };
        guard.ok_or_else(|| {
            Error::Timeout(format!(
                "another guest agent call was still running {}",
                deadline.describe()
            ))
        })
    }

    /// Synchronize with the agent (see the module documentation), retrying
    /// until it answers or the deadline passes.
    pub(crate) fn wait_ready(&self, deadline: Deadline) -> Result<()> {
        let _turn = self.turn(deadline)?;
        self.sync(deadline)
    }

    fn sync(&self, deadline: Deadline) -> Result<()> {
        let started = Instant::now();
        let mut attempt_wait = SYNC_RETRY_FIRST;
        let mut attempts = 0u32;
        loop {
            let id = sync_id();
            let mut line = vec![0xFF];
            line.extend(wire::command(
                "guest-sync-delimited",
                Some(&Arguments::from_value(&serde_json::json!({ "id": id }))?),
            )?);
            self.channel
                .send(
                    &line,
                    None,
                    Some(deadline),
                    |agent| {
                        agent.awaiting = Awaiting::Sync(id);
                        agent.synced = false;
                    },
                    |agent| agent.awaiting = Awaiting::Nothing,
                )
                .map_err(|e| self.send_error(e, "guest-sync-delimited", deadline))?;
            attempts += 1;
            let attempt = Deadline::after(Some(attempt_wait)).min(deadline);
            let synced = self
                .channel
                .wait_for(attempt, None, |st| st.proto.synced.then_some(()))
                .map_err(|closed| closed.error("guest agent"))?;
            if synced.is_some() {
                return Ok(());
            }
            if deadline.expired() {
                self.channel.lock().proto.awaiting = Awaiting::Nothing;
                return Err(Error::Timeout(format!(
                    "no guest agent answered on the {} {} ({attempts} sync attempt(s) over \
                     {} ms): is qemu-ga running in the guest?",
                    self.device.describe(),
                    deadline.describe(),
                    started.elapsed().as_millis()
                )));
            }
            attempt_wait = (attempt_wait * 2).min(SYNC_RETRY_MAX);
        }
    }

    /// The command's bytes and this caller's turn on a synchronized
    /// channel (synchronizing first if its state is not known).
    fn take_turn(
        &self,
        cmd: &str,
        args: Option<&Arguments>,
        deadline: Deadline,
    ) -> Result<(Vec<u8>, parking_lot::MutexGuard<'_, ()>)> {
        let line = wire::command(cmd, args)?;
        let turn = self.turn(deadline)?;
        if !self.channel.lock().proto.synced {
            self.sync(deadline)?;
        }
        Ok((line, turn))
    }

    /// Run one agent command and return its reply (`return` or `error`),
    /// synchronizing first if the stream's state is not known.
    pub(crate) fn execute(
        &self,
        cmd: &str,
        args: Option<&Arguments>,
        deadline: Deadline,
    ) -> Result<Reply> {
        let (line, _turn) = self.take_turn(cmd, args, deadline)?;
        self.channel
            .send(
                &line,
                None,
                Some(deadline),
                |agent| {
                    agent.awaiting = Awaiting::Reply;
                    agent.reply = None;
                },
                |agent| agent.awaiting = Awaiting::Nothing,
            )
            .map_err(|e| self.send_error(e, cmd, deadline))?;
        let got = self
            .channel
            .wait_for(deadline, None, |st| st.proto.reply.take())
            .map_err(|closed| closed.error("guest agent"))?;
        match got {
            Some(Ok(reply)) => Ok(reply),
            Some(Err(hiccup)) => Err(Error::Protocol(hiccup)),
            None => {
                // A late reply must never be taken for the next command.
                let mut st = self.channel.lock();
                st.proto.awaiting = Awaiting::Nothing;
                st.proto.synced = false;
                Err(Error::Timeout(format!(
                    "no reply from the guest agent to '{cmd}' {}",
                    deadline.describe()
                )))
            }
        }
    }

    /// Send a command the agent never answers (`guest-shutdown`); the
    /// stream's state is unknown afterwards.
    pub(crate) fn send_only(
        &self,
        cmd: &str,
        args: Option<&Arguments>,
        deadline: Deadline,
    ) -> Result<()> {
        let (line, _turn) = self.take_turn(cmd, args, deadline)?;
        self.channel
            .send(
                &line,
                None,
                Some(deadline),
                |agent| agent.synced = false,
                |_| {},
            )
            .map_err(|e| self.send_error(e, cmd, deadline))
    }

    fn send_error(&self, e: SendError, cmd: &str, deadline: Deadline) -> Error {
        match e {
            SendError::NotSent { .. } | SendError::PartlySent { .. } => Error::Timeout(format!(
                "could not send '{cmd}' to the guest agent {}: nobody reads the {} \
                 (is qemu-ga running in the guest?)",
                deadline.describe(),
                self.device.describe()
            )),
            SendError::Closed(closed) => closed.error("guest agent"),
            SendError::Failed(err) => {
                Error::Disconnected(format!("cannot send '{cmd}' to the guest agent: {err}"))
            }
        }
    }

    /// Close the channel (the run ended).
    pub(crate) fn close(&self) {
        self.channel.close(crate::channel::Closed::Local);
    }
}

/// A fresh sync id: unique in the process, unpredictable enough that a
/// stale reply cannot match, and within JSON's exact integer range.
fn sync_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mixed = (nanos ^ (n << 32) ^ u64::from(std::process::id()) << 16)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 12) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> Agent {
        Agent {
            awaiting: Awaiting::Nothing,
            reply: None,
            synced: false,
            discarded: 0,
        }
    }

    #[test]
    fn only_the_answer_to_the_id_just_sent_syncs() {
        let mut a = agent();
        a.awaiting = Awaiting::Sync(7);
        // An echo of what was sent holds 0xFF and the sync command itself.
        a.route(b"\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":7}}\r")
            .unwrap();
        a.route(b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}")
            .unwrap();
        a.route(b"\xff{\"return\": 6}").unwrap();
        assert!(!a.synced);
        a.route(b"garbage\xff{\"return\": 7}\r").unwrap();
        assert!(a.synced);
        assert_eq!(a.awaiting, Awaiting::Nothing);
        assert_eq!(a.discarded, 3);
    }

    #[test]
    fn garbage_instead_of_a_reply_is_a_hiccup_that_unsyncs() {
        let mut a = agent();
        a.synced = true;
        a.awaiting = Awaiting::Reply;
        a.route(b"not json").unwrap();
        assert!(matches!(a.reply, Some(Err(_))));
        assert!(!a.synced);
        // Something unasked also means the stream is out of step.
        let mut a = agent();
        a.synced = true;
        a.route(b"{\"return\": {}}").unwrap();
        assert!(!a.synced);
    }

    #[test]
    fn sync_ids_differ_and_stay_exact_in_json() {
        let a = sync_id();
        let b = sync_id();
        assert_ne!(a, b);
        assert!(a < (1 << 53) && b < (1 << 53));
    }
}
