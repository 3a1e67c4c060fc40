//! QMP framing: the byte stream from QEMU is a sequence of JSON objects,
//! one per line. [`LineBuffer`] turns arbitrary reads into whole lines and
//! [`parse_message`] turns one line into a [`Message`]. Neither does any
//! I/O, so both can be fed arbitrary input by tests and fuzzers.
//! [`LineBuffer`] serves the guest agent and qtest channels too.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Longest line accepted. `query-qmp-schema` is ~150 KiB; a few QMP replies
/// (large `query-*` results, screendumps as base64) run to tens of MiB.
/// The buffer's memory peaks near this bound, whatever the peer sends.
pub const MAX_LINE: usize = 128 << 20;

/// Free space guaranteed for each read. Small, because every connection
/// has a buffer and most messages are a few hundred bytes; the buffer
/// doubles as large messages need.
const MIN_READ: usize = 4 << 10;
/// After a huge line the buffer is given back once it drains.
const SHRINK_ABOVE: usize = 1 << 20;

/// The line is longer than the limit: the peer is not speaking QMP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineTooLong {
    /// The limit that was exceeded.
    pub limit: usize,
    /// The first bytes of the offending line.
    pub head: Vec<u8>,
}

/// Accumulates bytes and yields complete `\n`-terminated lines.
#[derive(Debug)]
pub struct LineBuffer {
    /// Always fully initialised; `start..end` holds unconsumed bytes.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes after `start` already known to contain no newline.
    scanned: usize,
    max_line: usize,
    /// Dropping the rest of a line that was too long, up to its newline.
    discarding: bool,
}

impl Default for LineBuffer {
    fn default() -> Self {
        LineBuffer::new(MAX_LINE)
    }
}

impl LineBuffer {
    /// A buffer that rejects lines longer than `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        LineBuffer {
            buf: Vec::new(),
            start: 0,
            end: 0,
            scanned: 0,
            max_line,
            discarding: false,
        }
    }

    /// Append bytes received from the peer.
    pub fn push(&mut self, data: &[u8]) {
        self.reserve(data.len());
        self.buf[self.end..self.end + data.len()].copy_from_slice(data);
        self.commit(data.len());
    }

    /// Free space to read into (at least 4 KiB); call
    /// [`LineBuffer::commit`] with the number of bytes written.
    pub fn spare(&mut self) -> &mut [u8] {
        self.reserve(MIN_READ);
        &mut self.buf[self.end..]
    }

    /// Make room for at least `min` more bytes after `end`: reuse the space
    /// of consumed lines first, grow (at least doubling) only if needed.
    fn reserve(&mut self, min: usize) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > SHRINK_ABOVE {
                self.buf = Vec::new();
            }
        }
        if self.buf.len() - self.end >= min {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < min {
            // Doubling keeps appends cheap; the cap keeps the peak near the
            // longest line accepted (a longer one is refused before more
            // is read).
            let cap = self.max_line.saturating_add(2 * MIN_READ);
            let want = (self.end + min).max((self.buf.len() * 2).min(cap));
            self.buf.resize(want, 0);
        }
    }

    /// Mark `n` bytes of the last [`LineBuffer::spare`] slice as filled.
    pub fn commit(&mut self, n: usize) {
        assert!(self.end + n <= self.buf.len(), "commit past spare space");
        self.end += n;
    }

    /// The next complete line, without its `\n`. `Ok(None)` when no complete
    /// line is buffered yet. A line longer than the limit is an error; the
    /// buffer then drops it (up to its newline, however late that comes) and
    /// goes on with the next line, so a protocol that can recover may.
    pub fn next_line(&mut self) -> Result<Option<&[u8]>, LineTooLong> {
        if self.discarding {
            match memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                Some(pos) => {
                    self.start += pos + 1;
                    self.discarding = false;
                }
                None => {
                    self.start = self.end;
                    return Ok(None);
                }
            }
        }
        let from = self.start + self.scanned;
        match memchr::memchr(b'\n', &self.buf[from..self.end]) {
            Some(pos) => {
                let nl = from + pos;
                let line_start = self.start;
                self.start = nl + 1;
                self.scanned = 0;
                if nl - line_start > self.max_line {
                    return Err(self.too_long(line_start, nl));
                }
                Ok(Some(&self.buf[line_start..nl]))
            }
            None => {
                self.scanned = self.end - self.start;
                if self.scanned > self.max_line {
                    let err = self.too_long(self.start, self.end);
                    self.start = self.end;
                    self.scanned = 0;
                    self.discarding = true;
                    return Err(err);
                }
                Ok(None)
            }
        }
    }

    /// Bytes received after the last complete line.
    pub fn partial(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn too_long(&self, from: usize, to: usize) -> LineTooLong {
        let head_end = (from + 256).min(to);
        LineTooLong {
            limit: self.max_line,
            head: self.buf[from..head_end].to_vec(),
        }
    }
}

/// One message from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// `{"QMP": {...}}`, sent once when the connection opens.
    Greeting(Value),
    /// `{"event": NAME, "data": ..., "timestamp": ...}`.
    Event(Value),
    /// `{"return": ...}` or `{"error": ...}` (any `id` left out: replies are
    /// matched by their order).
    Reply(Reply),
}

/// A reply to a command as QEMU sent it: its `return` or `error` member,
/// kept as JSON text. It is parsed only when asked for as a value, so a
/// large reply (`query-qmp-schema`, ~200 KiB) reaches a caller who wants
/// text without being built into a tree and printed again.
#[derive(Debug, Clone)]
pub struct Reply {
    error: bool,
    raw: Box<RawValue>,
}

impl PartialEq for Reply {
    fn eq(&self, other: &Reply) -> bool {
        self.error == other.error && self.raw.get() == other.raw.get()
    }
}

impl Reply {
    /// QEMU answered `{"error": ...}`.
    pub fn is_error(&self) -> bool {
        self.error
    }

    /// The `return` value, or the `error` object, as JSON text.
    pub fn member_text(&self) -> &str {
        self.raw.get()
    }

    /// The whole reply, `{"return": ...}` or `{"error": ...}`, as JSON text.
    pub fn to_json_text(&self) -> String {
        let key = if self.error { "error" } else { "return" };
        format!("{{\"{key}\": {}}}", self.raw.get())
    }

    /// The `return` value or the `error` object, parsed. The text was
    /// checked when it arrived, but only as JSON syntax: a number beyond
    /// the range of `f64` (`1e999`) is valid JSON no `Value` can hold, and
    /// fails here with what was received.
    pub fn member(&self) -> Result<Value, String> {
        serde_json::from_str(self.raw.get()).map_err(|e| {
            format!(
                "the reply cannot be represented ({e}): {}",
                snippet(self.raw.get().as_bytes())
            )
        })
    }

    /// The whole reply, parsed (see [`Reply::member`]).
    pub fn to_value(&self) -> Result<Value, String> {
        let key = if self.error { "error" } else { "return" };
        let mut map = Map::new();
        map.insert(key.to_string(), self.member()?);
        Ok(Value::Object(map))
    }
}

/// The top-level members that tell messages apart. Keys are compared after
/// unescaping (`"ret\u0075rn"` is `return`); values stay raw text.
#[derive(Deserialize)]
struct Members<'a> {
    #[serde(rename = "QMP", borrow, default, deserialize_with = "present")]
    greeting: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    event: Option<&'a RawValue>,
    #[serde(rename = "return", borrow, default, deserialize_with = "present")]
    ret: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

/// A member that is there, whatever its value (`null` included).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Parse one line. Blank lines give `Ok(None)`. The error text quotes what
/// was received.
///
/// Only the top level is taken apart: a reply's member is validated but
/// kept as text (see [`Reply`]); greetings and events, which are small and
/// are matched against, are parsed whole.
pub fn parse_message(line: &[u8]) -> Result<Option<Message>, String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    // A derived struct would also take a JSON array (field by position).
    let is_object = line.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let parsed = if is_object {
        serde_json::from_slice::<Members<'_>>(line)
    } else {
        serde_json::from_slice::<Members<'_>>(b"not an object")
    };
    let members: Members<'_> = match parsed {
        Ok(members) => members,
        Err(e) => {
            return Err(match serde_json::from_slice::<Value>(line) {
                Ok(Value::Object(_)) => format!("malformed message ({e}): {}", snippet(line)),
                Ok(other) => format!(
                    "expected a JSON object, got {}: {}",
                    json_kind(&other),
                    snippet(line)
                ),
                Err(_) => format!("invalid JSON ({e}): {}", snippet(line)),
            })
        }
    };
    let whole = || serde_json::from_slice::<Value>(line).map_err(|e| format!("invalid JSON ({e})"));
    if members.greeting.is_some() {
        return Ok(Some(Message::Greeting(whole()?)));
    }
    if let Some(name) = members.event {
        if !name.get().starts_with('"') {
            return Err(format!("event name is not a string: {}", snippet(line)));
        }
        return Ok(Some(Message::Event(whole()?)));
    }
    let (error, raw) = match (members.error, members.ret) {
        (Some(raw), _) => (true, raw),
        (None, Some(raw)) => (false, raw),
        (None, None) => {
            return Err(format!(
                "neither a greeting, an event nor a reply: {}",
                snippet(line)
            ))
        }
    };
    Ok(Some(Message::Reply(Reply {
        error,
        raw: raw.to_owned(),
    })))
}

/// A printable excerpt of received bytes for error messages.
pub fn snippet(bytes: &[u8]) -> String {
    const MAX: usize = 200;
    let shown = &bytes[..bytes.len().min(MAX)];
    let text: String = String::from_utf8_lossy(shown).escape_debug().collect();
    if bytes.len() > MAX {
        format!("\"{text}\"... ({} bytes)", bytes.len())
    } else {
        format!("\"{text}\"")
    }
}

/// What kind of JSON value this is, for messages ("an array").
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(buf: &mut LineBuffer) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(l) = buf.next_line().unwrap() {
            out.push(l.to_vec());
        }
        out
    }

    #[test]
    fn splits_lines_across_pushes() {
        let mut b = LineBuffer::default();
        b.push(b"{\"a\":1}\r\n{\"b\"");
        assert_eq!(lines(&mut b), vec![b"{\"a\":1}\r".to_vec()]);
        b.push(b":2}\n\n");
        assert_eq!(lines(&mut b), vec![b"{\"b\":2}".to_vec(), Vec::new()]);
        assert!(b.partial().is_empty());
    }

    #[test]
    fn rejects_overlong_lines_with_and_without_newline() {
        let mut b = LineBuffer::new(8);
        b.push(b"0123456789");
        let err = b.next_line().unwrap_err();
        assert_eq!(err.limit, 8);
        let mut b = LineBuffer::new(8);
        b.push(b"0123456789\n");
        assert!(b.next_line().is_err());
        let mut b = LineBuffer::new(8);
        b.push(b"01234567\n");
        assert_eq!(b.next_line().unwrap(), Some(&b"01234567"[..]));
    }

    #[test]
    fn large_line_then_buffer_shrinks() {
        let mut b = LineBuffer::default();
        let big = vec![b'x'; 3 << 20];
        b.push(&big);
        b.push(b"\n");
        assert_eq!(b.next_line().unwrap().unwrap().len(), 3 << 20);
        b.push(b"{}\n");
        assert!(b.buf.len() <= SHRINK_ABOVE);
        assert_eq!(b.next_line().unwrap(), Some(&b"{}"[..]));
    }

    #[test]
    fn classifies_messages() {
        let g = parse_message(br#"{"QMP": {"version": {}, "capabilities": []}}"#).unwrap();
        assert!(matches!(g, Some(Message::Greeting(_))));
        let e = parse_message(br#"{"event": "STOP", "timestamp": {}}"#).unwrap();
        assert!(matches!(e, Some(Message::Event(_))));
        let Some(Message::Reply(reply)) =
            parse_message(br#"{"return": {"a": [1, 2]}, "id": 7}"#).unwrap()
        else {
            panic!("a reply")
        };
        assert!(!reply.is_error());
        assert_eq!(reply.member_text(), r#"{"a": [1, 2]}"#);
        assert_eq!(
            reply.to_value().unwrap(),
            serde_json::json!({"return": {"a": [1, 2]}})
        );
        assert_eq!(reply.to_json_text(), r#"{"return": {"a": [1, 2]}}"#);
        let Some(Message::Reply(reply)) =
            parse_message(br#"{"error": {"class": "X", "desc": "y"}}"#).unwrap()
        else {
            panic!("a reply")
        };
        assert!(reply.is_error());
        assert_eq!(reply.member().unwrap()["class"], "X");
        // Valid JSON, but no f64 holds it: an error when asked for, not a
        // panic.
        let Some(Message::Reply(reply)) = parse_message(br#"{"return": 1e999}"#).unwrap() else {
            panic!("a reply")
        };
        assert!(reply.member().unwrap_err().contains("1e999"));
        assert_eq!(reply.member_text(), "1e999");
        // Invalid UTF-8 inside a reply is caught though it is not parsed.
        assert!(parse_message(b"{\"return\": \"\xff\xfe\"}").is_err());
        assert!(parse_message(br#"{"return": [1,}"#).is_err());
        assert_eq!(parse_message(b"  \r").unwrap(), None);
        assert!(parse_message(b"[1]").unwrap_err().contains("an array"));
        assert!(parse_message(b"{\"x\":1}").unwrap_err().contains("neither"));
        assert!(parse_message(b"\xff\xfe")
            .unwrap_err()
            .contains("invalid JSON"));
        assert!(parse_message(br#"{"event": 1}"#).is_err());
        // Keys are compared unescaped; `null` is a value like any other.
        let Some(Message::Reply(reply)) = parse_message(br#"{"ret\u0075rn": {"x": 1}}"#).unwrap()
        else {
            panic!("a reply")
        };
        assert_eq!(reply.member_text(), r#"{"x": 1}"#);
        let Some(Message::Reply(reply)) = parse_message(br#"{"return": null}"#).unwrap() else {
            panic!("a reply")
        };
        assert_eq!(reply.member_text(), "null");
        assert!(matches!(
            parse_message(br#"{"\u0065vent": "STOP"}"#).unwrap(),
            Some(Message::Event(_))
        ));
        assert!(parse_message(br#"{"return": 1, "return": 2}"#)
            .unwrap_err()
            .contains("malformed message"));
    }

    #[test]
    fn a_too_long_line_is_dropped_and_reading_goes_on() {
        let mut b = LineBuffer::new(8);
        b.push(b"0123456789abc");
        assert!(b.next_line().is_err());
        b.push(b"def\n{}\n");
        assert_eq!(b.next_line().unwrap(), Some(&b"{}"[..]));
        let mut b = LineBuffer::new(8);
        b.push(b"0123456789\nok\n");
        assert!(b.next_line().is_err());
        assert_eq!(b.next_line().unwrap(), Some(&b"ok"[..]));
    }

    #[test]
    fn memory_stays_near_the_limit() {
        let limit = 1 << 20;
        let mut b = LineBuffer::new(limit);
        let mut refused = false;
        for _ in 0..1000 {
            let spare = b.spare();
            let n = spare.len().min(64 << 10);
            spare[..n].fill(b'x');
            b.commit(n);
            if b.next_line().is_err() {
                refused = true;
            }
            assert!(b.buf.len() <= limit + 2 * MIN_READ, "{}", b.buf.len());
        }
        assert!(refused);
    }
}
