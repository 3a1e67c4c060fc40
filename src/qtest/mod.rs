//! The qtest protocol (QEMU's `-qtest`, as its own `libqtest` speaks it):
//! device-level tests without guest code. One command per line; QEMU
//! answers each with `OK [...]`, `FAIL ...` or `ERR ...`, in order, and
//! sends `IRQ raise N` / `IRQ lower N` at any time for intercepted
//! interrupt lines. So replies are matched by order (as QMP's, see
//! `qmp/connection.rs`), and IRQ lines only update the state that
//! [`QtestChannel::irq`] reads.
//!
//! QEMU `g_assert`s (aborts) on malformed input — an empty line, a missing
//! argument, a number that does not parse, a doubled space — so every
//! command is built here from typed values, and raw lines are checked
//! before anything is sent.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::channel::{Channel, Closed, Ordered, OrderedReplies, Protocol, SendError};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::qmp::framing::snippet;
use crate::socket::Socket;

/// Longest qtest line accepted (a `b64read` reply of one chunk).
const MAX_LINE: usize = 8 << 20;
/// Bytes per `b64read` / `b64write`.
const MEM_CHUNK: usize = 1 << 20;

/// qtest's routing state.
#[derive(Debug, Default)]
pub(crate) struct Qtest {
    /// Replies: the text after `OK`, or the whole `FAIL`/`ERR` line.
    replies: OrderedReplies<std::result::Result<String, String>>,
    /// The level of every intercepted line QEMU has reported.
    irqs: HashMap<i64, bool>,
}

impl Ordered for Qtest {
    type Reply = std::result::Result<String, String>;
    fn ordered(&mut self) -> &mut OrderedReplies<Self::Reply> {
        &mut self.replies
    }
}

impl Protocol for Qtest {
    fn route(&mut self, line: &[u8]) -> std::result::Result<(), String> {
        let text = std::str::from_utf8(line)
            .map_err(|_| format!("not UTF-8: {}", snippet(line)))?
            .trim_end_matches('\r');
        if let Some(irq) = text.strip_prefix("IRQ ") {
            let (level, number) = match irq.split_once(' ') {
                Some(("raise", n)) => (true, n),
                Some(("lower", n)) => (false, n),
                _ => return Err(format!("malformed IRQ line: {}", snippet(line))),
            };
            let number: i64 = number
                .parse()
                .map_err(|_| format!("malformed IRQ line: {}", snippet(line)))?;
            self.irqs.insert(number, level);
            return Ok(());
        }
        let reply = if text == "OK" {
            Ok(String::new())
        } else if let Some(rest) = text.strip_prefix("OK ") {
            Ok(rest.to_string())
        } else if text.starts_with("FAIL") || text.starts_with("ERR") {
            Err(text.to_string())
        } else if text.is_empty() {
            return Ok(());
        } else {
            return Err(format!(
                "neither a reply nor an IRQ line: {}",
                snippet(line)
            ));
        };
        self.replies.answer(reply);
        Ok(())
    }
}

/// The qtest channel of one run.
pub(crate) struct QtestChannel {
    channel: Channel<Qtest>,
}

impl std::fmt::Debug for QtestChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QtestChannel").finish_non_exhaustive()
    }
}

/// An access width in bytes.
fn check_size(size: u32, allowed: &[u32], what: &str) -> Result<()> {
    if allowed.contains(&size) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what} size must be one of {allowed:?} bytes, got {size}"
        )))
    }
}

fn check_fits(value: u64, size: u32) -> Result<()> {
    if size < 8 && value >> (size * 8) != 0 {
        return Err(Error::invalid(format!(
            "value {value:#x} does not fit in {size} byte(s)"
        )));
    }
    Ok(())
}

/// A word of a qtest line: not empty, no space, newline or NUL (QEMU
/// splits lines at single spaces and asserts on what it cannot parse).
fn check_word(word: &str, what: &str) -> Result<()> {
    if word.is_empty() || word.contains([' ', '\t', '\n', '\r', '\0']) {
        return Err(Error::invalid(format!(
            "{what} must be non-empty, without spaces, newlines or NUL bytes: {word:?}"
        )));
    }
    Ok(())
}

fn parse_hex(text: &str, cmd: &str) -> Result<u64> {
    text.strip_prefix("0x")
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| Error::Protocol(format!("qtest: '{cmd}' answered {text:?}")))
}

impl QtestChannel {
    pub(crate) fn new(socket: Socket, exit: Option<Arc<OwnedFd>>) -> QtestChannel {
        QtestChannel {
            channel: Channel::new("qtest", socket, exit, MAX_LINE, Qtest::default()),
        }
    }

    /// Send one line and wait for its reply: the text after `OK`.
    fn call(&self, line: String, deadline: Deadline) -> Result<String> {
        let cmd = line.split(' ').next().unwrap_or_default().to_string();
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        let ticket = self
            .channel
            .send_request(&bytes, None, Some(deadline))
            .map_err(|e| match e {
                SendError::NotSent { .. } | SendError::PartlySent { .. } => Error::Timeout(
                    format!("could not send qtest '{cmd}' {}", deadline.describe()),
                ),
                SendError::Closed(closed) => closed.error("qtest"),
                SendError::Failed(err) => {
                    Error::Disconnected(format!("cannot send qtest '{cmd}': {err}"))
                }
            })?;
        match self.channel.wait_reply(ticket, deadline, true) {
            Ok(Some(Ok(text))) => Ok(text),
            Ok(Some(Err(failure))) => {
                let (class, desc) = failure.split_once(' ').unwrap_or((&failure, ""));
                let mut desc = desc.to_string();
                if cmd.starts_with("clock_") && desc.contains("Unknown command") {
                    desc = format!(
                        "{desc} ({cmd} needs the qtest accelerator, -accel qtest; this QEMU \
                         runs another one)"
                    );
                }
                Err(Error::Command {
                    command: cmd,
                    class: class.to_string(),
                    desc,
                })
            }
            // The late reply keeps its place and is dropped.
            Ok(None) => Err(Error::Timeout(format!(
                "no qtest reply to '{cmd}' {}",
                deadline.describe()
            ))),
            Err(closed) => Err(closed.error("qtest")),
        }
    }

    /// One raw protocol line (checked: no empty words, no newline); the
    /// whole `OK ...` reply.
    pub(crate) fn raw(&self, line: &str, deadline: Deadline) -> Result<String> {
        if line.is_empty() || line.split(' ').any(str::is_empty) {
            return Err(Error::invalid(format!(
                "a qtest line must be words separated by single spaces, got {line:?}"
            )));
        }
        for word in line.split(' ') {
            check_word(word, "each word of the line")?;
        }
        let rest = self.call(line.to_string(), deadline)?;
        Ok(if rest.is_empty() {
            "OK".to_string()
        } else {
            format!("OK {rest}")
        })
    }

    pub(crate) fn read(&self, addr: u64, size: u32, deadline: Deadline) -> Result<u64> {
        check_size(size, &[1, 2, 4, 8], "a memory read's")?;
        let cmd = ["readb", "readw", "readl", "readq"][size.trailing_zeros() as usize];
        let text = self.call(format!("{cmd} {addr:#x}"), deadline)?;
        parse_hex(&text, cmd)
    }

    pub(crate) fn write(&self, addr: u64, size: u32, value: u64, deadline: Deadline) -> Result<()> {
        check_size(size, &[1, 2, 4, 8], "a memory write's")?;
        check_fits(value, size)?;
        let cmd = ["writeb", "writew", "writel", "writeq"][size.trailing_zeros() as usize];
        self.call(format!("{cmd} {addr:#x} {value:#x}"), deadline)
            .map(drop)
    }

    pub(crate) fn port_in(&self, port: u16, size: u32, deadline: Deadline) -> Result<u32> {
        check_size(size, &[1, 2, 4], "a port read's")?;
        let cmd = ["inb", "inw", "inl"][size.trailing_zeros() as usize];
        let text = self.call(format!("{cmd} {port:#x}"), deadline)?;
        let value = parse_hex(&text, cmd)?;
        u32::try_from(value).map_err(|_| Error::Protocol(format!("qtest: '{cmd}' gave {text}")))
    }

    pub(crate) fn port_out(
        &self,
        port: u16,
        size: u32,
        value: u32,
        deadline: Deadline,
    ) -> Result<()> {
        check_size(size, &[1, 2, 4], "a port write's")?;
        check_fits(u64::from(value), size)?;
        let cmd = ["outb", "outw", "outl"][size.trailing_zeros() as usize];
        self.call(format!("{cmd} {port:#x} {value:#x}"), deadline)
            .map(drop)
    }

    /// Read guest memory into `buf`, in chunks of `b64read`.
    pub(crate) fn memread(&self, addr: u64, buf: &mut [u8], deadline: Deadline) -> Result<()> {
        check_range(addr, buf.len())?;
        let mut at = addr;
        for chunk in buf.chunks_mut(MEM_CHUNK) {
            let text = self.call(format!("b64read {at:#x} {:#x}", chunk.len()), deadline)?;
            let data = BASE64
                .decode(text.trim())
                .map_err(|e| Error::Protocol(format!("qtest: b64read gave invalid base64: {e}")))?;
            if data.len() != chunk.len() {
                return Err(Error::Protocol(format!(
                    "qtest: b64read of {} bytes gave {}",
                    chunk.len(),
                    data.len()
                )));
            }
            chunk.copy_from_slice(&data);
            at += chunk.len() as u64;
        }
        Ok(())
    }

    /// Write `data` to guest memory, in chunks of `b64write`.
    pub(crate) fn memwrite(&self, addr: u64, data: &[u8], deadline: Deadline) -> Result<()> {
        check_range(addr, data.len())?;
        let mut at = addr;
        for chunk in data.chunks(MEM_CHUNK) {
            // QEMU refuses base64 shorter than 3 characters; one byte is
            // 4 characters, so every chunk is long enough.
            self.call(
                format!(
                    "b64write {at:#x} {:#x} {}",
                    chunk.len(),
                    BASE64.encode(chunk)
                ),
                deadline,
            )?;
            at += chunk.len() as u64;
        }
        Ok(())
    }

    pub(crate) fn memset(&self, addr: u64, byte: u8, len: usize, deadline: Deadline) -> Result<()> {
        check_range(addr, len)?;
        if len == 0 {
            return Ok(());
        }
        self.call(format!("memset {addr:#x} {len:#x} {byte:#x}"), deadline)
            .map(drop)
    }

    /// Advance the virtual clock by `ns` (`None`: to the next timer
    /// deadline) and return the new virtual time.
    pub(crate) fn clock_step(&self, ns: Option<i64>, deadline: Deadline) -> Result<i64> {
        let line = match ns {
            Some(ns) => format!("clock_step {ns}"),
            None => "clock_step".to_string(),
        };
        let text = self.call(line, deadline)?;
        text.trim()
            .parse()
            .map_err(|_| Error::Protocol(format!("qtest: clock_step answered {text:?}")))
    }

    /// Move the virtual clock to `ns` (if later) and return the new time.
    pub(crate) fn clock_set(&self, ns: i64, deadline: Deadline) -> Result<i64> {
        let text = self.call(format!("clock_set {ns}"), deadline)?;
        text.trim()
            .parse()
            .map_err(|_| Error::Protocol(format!("qtest: clock_set answered {text:?}")))
    }

    pub(crate) fn irq_intercept(
        &self,
        qom_path: &str,
        output: bool,
        deadline: Deadline,
    ) -> Result<()> {
        check_word(qom_path, "the QOM path")?;
        let cmd = if output {
            "irq_intercept_out"
        } else {
            "irq_intercept_in"
        };
        self.call(format!("{cmd} {qom_path}"), deadline).map(drop)
    }

    pub(crate) fn set_irq_in(
        &self,
        qom_path: &str,
        name: &str,
        line: i32,
        level: i32,
        deadline: Deadline,
    ) -> Result<()> {
        check_word(qom_path, "the QOM path")?;
        check_word(name, "the IRQ name")?;
        if line < 0 {
            return Err(Error::invalid(format!(
                "the IRQ line must not be negative, got {line}"
            )));
        }
        self.call(
            format!("set_irq_in {qom_path} {name} {line} {level}"),
            deadline,
        )
        .map(drop)
    }

    /// Whether intercepted line `line` is raised, as far as QEMU has
    /// reported (routing what has arrived first; never waits).
    pub(crate) fn irq(&self, line: i32) -> Result<bool> {
        if line < 0 {
            return Err(Error::invalid(format!(
                "the IRQ line must not be negative, got {line}"
            )));
        }
        self.channel
            .dispatch()
            .map_err(|closed| closed.error("qtest"))?;
        Ok(self
            .channel
            .lock()
            .proto
            .irqs
            .get(&i64::from(line))
            .copied()
            .unwrap_or(false))
    }

    pub(crate) fn close(&self) {
        self.channel.close(Closed::Local);
    }
}

/// A memory range must not wrap around the address space.
fn check_range(addr: u64, len: usize) -> Result<()> {
    if addr.checked_add(len as u64).is_none() {
        return Err(Error::invalid(format!(
            "{len} bytes at {addr:#x} run past the end of the address space"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn irq_lines_anywhere_and_replies_classified() {
        let mut q = Qtest::default();
        q.route(b"IRQ raise 8").unwrap();
        q.route(b"OK 0x01").unwrap();
        q.route(b"IRQ lower 8").unwrap();
        q.route(b"IRQ raise 0").unwrap();
        q.route(b"FAIL Unknown command 'x'").unwrap();
        q.route(b"OK").unwrap();
        assert_eq!(q.replies.stray(), 3, "no request was in flight");
        assert!(!q.irqs[&8]);
        assert!(q.irqs[&0]);
        assert!(q.route(b"garbage").is_err());
        assert!(q.route(b"IRQ up 3").is_err());
    }

    #[test]
    fn checks_what_qemu_would_assert_on() {
        assert!(check_word("", "x").is_err());
        assert!(check_word("a b", "x").is_err());
        assert!(check_word("a\nb", "x").is_err());
        assert!(check_word("/machine/ioapic", "x").is_ok());
        assert!(check_size(3, &[1, 2, 4, 8], "x").is_err());
        assert!(check_fits(0x100, 1).is_err());
        assert!(check_fits(0xff, 1).is_ok());
        assert!(check_fits(u64::MAX, 8).is_ok());
        assert!(check_range(u64::MAX, 2).is_err());
    }
}
