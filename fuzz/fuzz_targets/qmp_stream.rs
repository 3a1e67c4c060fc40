//! The QMP stream reader: arbitrary bytes, split at arbitrary points, must
//! give the same lines and the same messages as when they arrive at once,
//! and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qemu_machine::qmp::framing::{parse_message, LineBuffer, LineTooLong, Message};

/// Small enough that the fuzzer reaches the too-long path.
const MAX_LINE: usize = 512;

#[derive(Debug, PartialEq)]
enum Item {
    Line(Vec<u8>),
    TooLong(LineTooLong),
}

/// Feed `chunks` one by one, collecting every line (and the first error,
/// which ends the stream as it ends a connection).
fn read_all<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> Vec<Item> {
    let mut buf = LineBuffer::new(MAX_LINE);
    let mut items = Vec::new();
    for chunk in chunks {
        buf.push(chunk);
        loop {
            match buf.next_line() {
                Ok(Some(line)) => {
                    assert!(!line.contains(&b'\n'));
                    assert!(line.len() <= MAX_LINE);
                    items.push(Item::Line(line.to_vec()));
                }
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(e.limit, MAX_LINE);
                    items.push(Item::TooLong(e));
                    return items;
                }
            }
        }
    }
    items
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let whole = read_all(std::iter::once(stream));
    // Split points from a small PRNG seeded by the first byte.
    let mut state = u32::from(seed) | 1;
    let mut chunks = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state as usize % 17).min(rest.len()).max(1);
        let (head, tail) = rest.split_at(n);
        chunks.push(head);
        rest = tail;
    }
    let split = read_all(chunks.into_iter());
    // A too-long line is detected at least as early when data arrives in
    // pieces; before it, everything agrees.
    let agree = whole.len().min(split.len());
    for (a, b) in whole.iter().zip(&split).take(agree) {
        match (a, b) {
            (Item::Line(x), Item::Line(y)) => assert_eq!(x, y),
            (Item::TooLong(_), Item::TooLong(_)) => {}
            _ => panic!("split reading diverged: {a:?} vs {b:?}"),
        }
    }
    for item in &whole {
        if let Item::Line(line) = item {
            match parse_message(line) {
                Ok(Some(Message::Reply(reply))) => {
                    // The text of the whole reply parses exactly when its
                    // value can be had, and to the same value.
                    let whole = serde_json::from_str::<serde_json::Value>(&reply.to_json_text());
                    match (whole, reply.to_value()) {
                        (Ok(text), Ok(value)) => {
                            assert_eq!(text, value);
                            assert_eq!(text.as_object().unwrap().len(), 1);
                        }
                        (Err(_), Err(msg)) => assert!(!msg.is_empty()),
                        (text, value) => panic!("disagree: {text:?} vs {value:?}"),
                    }
                }
                Ok(Some(Message::Event(ev))) => assert!(ev["event"].is_string()),
                Ok(Some(Message::Greeting(g))) => assert!(g.get("QMP").is_some()),
                Ok(None) => assert!(line.iter().all(u8::is_ascii_whitespace)),
                Err(msg) => assert!(!msg.is_empty()),
            }
        }
    }
});
