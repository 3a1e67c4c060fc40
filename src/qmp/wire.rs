//! What goes on the wire to QEMU: each command in the fewest bytes, and
//! only input QEMU's JSON parser accepts as one message.
//!
//! QEMU 7.2 reads QMP input one byte per main-loop iteration (~5 µs a byte
//! here), so every byte is latency. A command is written as
//! `{"execute":"NAME"}` or `{"execute":"NAME","arguments":{...}}`: no id
//! (replies are matched by their order, see `connection.rs`), no spaces, no
//! newline (QEMU's parser completes a message at its closing brace).
//!
//! Matching by order needs exactly one reply per command, so nothing may be
//! sent that QEMU's parser would split into several messages or answer with
//! several errors. Measured on QEMU 7.2: a string holding a Unicode
//! noncharacter (U+FDD0..U+FDEF, U+xFFFE, U+xFFFF, raw or escaped) or a
//! lone surrogate escape gets one error reply; nesting deeper than 1024
//! levels, more than 2 Mi tokens or more than 64 MiB of tokens make the
//! parser give up mid-message and answer every remaining token with an
//! error of its own. All of these are refused here, before sending, with
//! [`Error::InvalidArgument`] — a command QEMU would refuse anyway.

use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::qmp::framing::json_kind;

/// QEMU's JSON streamer: tokens in one message.
const MAX_TOKENS: usize = 2 << 20;
/// QEMU's JSON streamer: bytes of tokens in one message.
const MAX_TOKEN_BYTES: usize = 64 << 20;
/// QEMU's JSON streamer: `[` and `{` open at once.
const MAX_NESTING: usize = 1024;

/// The arguments of a command: a JSON object as compact text, sent as
/// written (an integer beyond 64 bits keeps its digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arguments(String);

impl Arguments {
    /// Arguments from a value, which must be a JSON object.
    pub fn from_value(value: &Value) -> Result<Arguments> {
        if !value.is_object() {
            return Err(Error::invalid(format!(
                "the arguments must be a JSON object, got {}",
                json_kind(value)
            )));
        }
        Ok(Arguments(
            serde_json::to_string(value).expect("a Value always serializes"),
        ))
    }

    /// Arguments from JSON text, which must be an object. Whitespace
    /// outside strings is dropped; everything else is kept as written.
    pub fn from_text(text: &str) -> Result<Arguments> {
        Self::from_text_named(text, "the arguments")
    }

    /// [`Arguments::from_text`], naming the input `what` in errors.
    pub(crate) fn from_text_named(text: &str, what: &str) -> Result<Arguments> {
        let raw: &RawValue = serde_json::from_str(text)
            .map_err(|e| Error::invalid(format!("{what} is not valid JSON: {e}")))?;
        if !raw.get().starts_with('{') {
            let value: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
            return Err(Error::invalid(format!(
                "{what} must be a JSON object, got {}",
                json_kind(&value)
            )));
        }
        Ok(Arguments(minify(raw.get())))
    }

    /// The compact JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The bytes of command `cmd` with `args`, checked against QEMU's parser.
pub(crate) fn command(cmd: &str, args: Option<&Arguments>) -> Result<Vec<u8>> {
    if cmd.is_empty() {
        return Err(Error::invalid("the command name must not be empty"));
    }
    let mut out = Vec::with_capacity(16 + cmd.len() + args.map_or(0, |a| a.0.len() + 14));
    out.extend_from_slice(b"{\"execute\":");
    serde_json::to_writer(&mut out, cmd).expect("writing to a Vec cannot fail");
    if let Some(args) = args {
        out.extend_from_slice(b",\"arguments\":");
        out.extend_from_slice(args.0.as_bytes());
    }
    out.push(b'}');
    check(&out).map_err(|why| Error::invalid(format!("'{cmd}' cannot be sent: {why}")))?;
    Ok(out)
}

/// Drop whitespace outside strings from valid JSON text.
fn minify(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

fn is_noncharacter(c: u32) -> bool {
    (0xFDD0..=0xFDEF).contains(&c) || c & 0xFFFE == 0xFFFE
}

/// Why QEMU's parser would not take `text` (compact, valid JSON) as one
/// message, if it would not.
fn check(text: &[u8]) -> std::result::Result<(), String> {
    if text.len() > MAX_TOKEN_BYTES {
        return Err(format!(
            "it is {} bytes long; QEMU refuses JSON messages over {} bytes",
            text.len(),
            MAX_TOKEN_BYTES
        ));
    }
    let text = std::str::from_utf8(text).map_err(|e| e.to_string())?;
    let mut tokens = 0usize;
    let mut depth = 0usize;
    let mut chars = text.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match c {
            '{' | '[' => {
                tokens += 1;
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(format!(
                        "it nests more than {MAX_NESTING} levels deep, which QEMU refuses"
                    ));
                }
            }
            '}' | ']' => {
                tokens += 1;
                depth = depth.saturating_sub(1);
            }
            ',' | ':' => tokens += 1,
            '"' => {
                tokens += 1;
                check_string(&mut chars)?;
            }
            _ => {
                // A number or keyword: one token, whatever its length.
                tokens += 1;
                while chars
                    .peek()
                    .is_some_and(|&(_, c)| !matches!(c, ',' | ':' | '}' | ']'))
                {
                    chars.next();
                }
            }
        }
        if tokens > MAX_TOKENS {
            return Err(format!(
                "it has more than {MAX_TOKENS} JSON tokens, which QEMU refuses"
            ));
        }
    }
    Ok(())
}

/// Check the rest of a string (after its opening quote) for what QEMU's
/// parser refuses: noncharacters and lone surrogates.
fn check_string(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
) -> std::result::Result<(), String> {
    let noncharacter =
        |c: u32| format!("it holds U+{c:04X}, a Unicode noncharacter, which QEMU refuses");
    while let Some((_, c)) = chars.next() {
        match c {
            '"' => return Ok(()),
            '\\' => {
                let Some((_, 'u')) = chars.next() else {
                    continue;
                };
                let mut unit = hex4(chars);
                if (0xD800..0xDC00).contains(&unit) {
                    // A high surrogate must be followed by a low one.
                    let mut ahead = chars.clone();
                    let low = match (ahead.next(), ahead.next()) {
                        (Some((_, '\\')), Some((_, 'u'))) => Some(hex4(&mut ahead)),
                        _ => None,
                    };
                    match low {
                        Some(low) if (0xDC00..0xE000).contains(&low) => {
                            *chars = ahead;
                            unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                        }
                        _ => return Err(format!("it holds a lone surrogate \\u{unit:04x}")),
                    }
                } else if (0xDC00..0xE000).contains(&unit) {
                    return Err(format!("it holds a lone surrogate \\u{unit:04x}"));
                }
                if is_noncharacter(unit) {
                    return Err(noncharacter(unit));
                }
            }
            c if is_noncharacter(c as u32) => return Err(noncharacter(c as u32)),
            _ => {}
        }
    }
    Ok(())
}

fn hex4(chars: &mut impl Iterator<Item = (usize, char)>) -> u32 {
    (0..4).fold(0, |acc, _| {
        let digit = chars.next().and_then(|(_, c)| c.to_digit(16)).unwrap_or(0);
        acc * 16 + digit
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(cmd: &str, args: Option<&str>) -> Result<String> {
        let args = args.map(Arguments::from_text).transpose()?;
        command(cmd, args.as_ref()).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn as_few_bytes_as_a_minimal_client() {
        assert_eq!(
            text("query-status", None).unwrap(),
            r#"{"execute":"query-status"}"#
        );
        assert_eq!(
            text("x", Some(" { \"a\" : [ 1 , \"b c\" ] } ")).unwrap(),
            r#"{"execute":"x","arguments":{"a":[1,"b c"]}}"#
        );
        let args = Arguments::from_value(&json!({"id": "a b"})).unwrap();
        assert_eq!(args.as_str(), r#"{"id":"a b"}"#);
    }

    #[test]
    fn big_integers_are_sent_as_written() {
        assert_eq!(
            text("x", Some(r#"{"n": 123456789012345678901234567890}"#)).unwrap(),
            r#"{"execute":"x","arguments":{"n":123456789012345678901234567890}}"#
        );
    }

    #[test]
    fn refuses_what_qemu_would_refuse() {
        for bad in [
            "{\"s\": \"\u{ffff}\"}",
            "{\"s\": \"\u{fdd0}\"}",
            "{\"s\": \"\u{1fffe}\"}",
            r#"{"s": "\uFFFE"}"#,
            r#"{"s": "\ufdef"}"#,
            r#"{"s": "\ud83f\udfff"}"#,
            r#"{"\uffff": 1}"#,
        ] {
            let err = text("x", Some(bad)).unwrap_err();
            assert!(err.to_string().contains("noncharacter"), "{bad}: {err}");
        }
        // Fine: an escaped NUL, a character outside the BMP.
        text("x", Some("{\"s\": \"\\u0000 \\ud83d\\ude00 \u{1f600}\"}")).unwrap();
        let deep = |n: usize| format!("{{\"a\":{}{}}}", "[".repeat(n), "]".repeat(n));
        // The command and arguments objects are two levels.
        text("x", Some(&deep(1022))).unwrap();
        let err = text("x", Some(&deep(1023))).unwrap_err();
        assert!(err.to_string().contains("1024 levels"), "{err}");
        let many = format!("{{\"a\":[{}]}}", vec!["1"; 1 << 20].join(","));
        let err = text("x", Some(&many)).unwrap_err();
        assert!(err.to_string().contains("tokens"), "{err}");
        let long = format!("{{\"a\":\"{}\"}}", "x".repeat(64 << 20));
        let err = text("x", Some(&long)).unwrap_err();
        assert!(err.to_string().contains("bytes"), "{err}");
    }

    #[test]
    fn arguments_must_be_an_object() {
        for bad in ["[]", "1", "\"x\"", "null", "{", "{\"a\":1} x"] {
            assert!(
                matches!(Arguments::from_text(bad), Err(Error::InvalidArgument(_))),
                "{bad}"
            );
        }
        assert!(Arguments::from_value(&json!([1])).is_err());
        assert!(text("", None).is_err());
    }
}
