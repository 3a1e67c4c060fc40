//! QMP framing: the byte stream from QEMU is a sequence of JSON objects,
//! one per line. [`LineBuffer`] turns arbitrary reads into whole lines and
//! [`parse_message`] turns one line into a [`Message`]. Neither does any
//! I/O, so both can be fed arbitrary input by tests and fuzzers.

use serde_json::{Map, Value};

/// Longest line accepted. `query-qmp-schema` is ~150 KiB; a few QMP replies
/// (large `query-*` results, screendumps as base64) run to tens of MiB.
pub const MAX_LINE: usize = 256 << 20;

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
            let want = (self.end + min).max(self.buf.len() * 2);
            self.buf.resize(want, 0);
        }
    }

    /// Mark `n` bytes of the last [`LineBuffer::spare`] slice as filled.
    pub fn commit(&mut self, n: usize) {
        assert!(self.end + n <= self.buf.len(), "commit past spare space");
        self.end += n;
    }

    /// The next complete line, without its `\n`. `Ok(None)` when no complete
    /// line is buffered yet.
    pub fn next_line(&mut self) -> Result<Option<&[u8]>, LineTooLong> {
        let from = self.start + self.scanned;
        match memchr::memchr(b'\n', &self.buf[from..self.end]) {
            Some(pos) => {
                let nl = from + pos;
                let line_start = self.start;
                self.start = nl + 1;
                self.scanned = 0;
                if nl - line_start > self.max_line {
                    return Err(self.too_long(line_start));
                }
                Ok(Some(&self.buf[line_start..nl]))
            }
            None => {
                self.scanned = self.end - self.start;
                if self.scanned > self.max_line {
                    return Err(self.too_long(self.start));
                }
                Ok(None)
            }
        }
    }

    /// Bytes received after the last complete line.
    pub fn partial(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn too_long(&self, from: usize) -> LineTooLong {
        let head_end = (from + 256).min(self.end);
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
    /// `{"return": ...}` or `{"error": ...}`, with the `id` taken out.
    Reply {
        /// The `id` the reply carried, if any.
        id: Option<Value>,
        /// The reply without its `id`.
        body: Value,
    },
}

/// Parse one line. Blank lines give `Ok(None)`. The error text quotes what
/// was received.
pub fn parse_message(line: &[u8]) -> Result<Option<Message>, String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let mut object: Map<String, Value> = match serde_json::from_slice(line) {
        Ok(Value::Object(map)) => map,
        Ok(other) => {
            return Err(format!(
                "expected a JSON object, got {}: {}",
                json_kind(&other),
                snippet(line)
            ))
        }
        Err(e) => return Err(format!("invalid JSON ({e}): {}", snippet(line))),
    };
    if object.contains_key("QMP") {
        return Ok(Some(Message::Greeting(Value::Object(object))));
    }
    if let Some(name) = object.get("event") {
        if !name.is_string() {
            return Err(format!("event name is not a string: {}", snippet(line)));
        }
        return Ok(Some(Message::Event(Value::Object(object))));
    }
    if object.contains_key("return") || object.contains_key("error") {
        let id = object.remove("id");
        return Ok(Some(Message::Reply {
            id,
            body: Value::Object(object),
        }));
    }
    Err(format!(
        "neither a greeting, an event nor a reply: {}",
        snippet(line)
    ))
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
        let r = parse_message(br#"{"return": {}, "id": 7}"#).unwrap();
        assert_eq!(
            r,
            Some(Message::Reply {
                id: Some(Value::from(7)),
                body: serde_json::json!({"return": {}})
            })
        );
        assert_eq!(parse_message(b"  \r").unwrap(), None);
        assert!(parse_message(b"[1]").unwrap_err().contains("an array"));
        assert!(parse_message(b"{\"x\":1}").unwrap_err().contains("neither"));
        assert!(parse_message(b"\xff\xfe")
            .unwrap_err()
            .contains("invalid JSON"));
        assert!(parse_message(br#"{"event": 1}"#).is_err());
    }
}
