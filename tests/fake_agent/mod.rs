//! A fake guest agent for faults a real qemu-ga cannot produce on demand.
//! The test binary runs in place of QEMU (with QMP off); the library hands
//! it the agent's socketpair end as `-chardev socket,id=qm-agent,fd=N`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{json, Value};

/// The environment variable that turns the test binary into the fake.
pub const SCENARIO_ENV: &str = "QM_FAKE_AGENT_SCENARIO";

/// What the fake does differently from qemu-ga.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Answers like qemu-ga; `guest-info` gives `{"version": "fake"}`,
    /// anything else is echoed as `{"echo": COMMAND}`.
    Normal,
    /// Only garbage, never a reply.
    Garbage,
    /// Answers syncs without the 0xFF sentinel.
    NoSentinel,
    /// Answers syncs with the wrong id.
    WrongSyncId,
    /// Syncs fine; the first command gets a 64 MiB line; then normal.
    HugeLine,
    /// Every reply written in small pieces with pauses.
    SplitReplies,
    /// Answers syncs, never commands.
    SyncOnly,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::Normal,
        Scenario::Garbage,
        Scenario::NoSentinel,
        Scenario::WrongSyncId,
        Scenario::HugeLine,
        Scenario::SplitReplies,
        Scenario::SyncOnly,
    ];

    pub fn name(self) -> String {
        format!("{self:?}")
    }

    pub fn parse(name: &str) -> Scenario {
        *Scenario::ALL
            .iter()
            .find(|s| s.name() == name)
            .unwrap_or_else(|| panic!("unknown scenario {name}"))
    }
}

/// Requests as a stream of JSON objects; 0xFF bytes (the client's parser
/// reset) are skipped, as qemu-ga does after complaining about them.
struct Requests {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Requests {
    fn next(&mut self) -> Option<Value> {
        loop {
            let mut values = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
            match values.next() {
                Some(Ok(value)) => {
                    let used = values.byte_offset();
                    self.buf.drain(..used);
                    return Some(value);
                }
                Some(Err(e)) if !e.is_eof() => {
                    // Not JSON: drop what is there, as a parser reset would.
                    self.buf.clear();
                }
                _ => {}
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
            self.buf
                .extend(chunk[..n].iter().copied().filter(|&b| b != 0xFF));
        }
    }
}

fn serve(stream: UnixStream, scenario: Scenario) {
    let mut out = stream.try_clone().unwrap();
    let mut requests = Requests {
        stream,
        buf: Vec::new(),
    };
    let mut send = |bytes: &[u8]| {
        if scenario == Scenario::SplitReplies {
            for piece in bytes.chunks(3) {
                let _ = out.write_all(piece);
                std::thread::sleep(Duration::from_millis(2));
            }
        } else {
            let _ = out.write_all(bytes);
        }
    };
    let mut huge_sent = false;
    while let Some(request) = requests.next() {
        let cmd = request["execute"].as_str().unwrap_or_default();
        if cmd == "guest-sync-delimited" {
            let id = request["arguments"]["id"].as_u64().unwrap_or(0);
            match scenario {
                Scenario::Garbage => send(b"garbage \xfe\xfd\n"),
                Scenario::NoSentinel => send(format!("{}\n", json!({ "return": id })).as_bytes()),
                Scenario::WrongSyncId => {
                    send(format!("\u{ff}{}\n", json!({ "return": id + 1 })).as_bytes())
                }
                _ => {
                    let mut reply = vec![0xFF];
                    reply.extend(format!("{}\n", json!({ "return": id })).as_bytes());
                    send(&reply);
                }
            }
            continue;
        }
        match scenario {
            Scenario::SyncOnly => {}
            Scenario::Garbage => send(b"more garbage\n"),
            Scenario::HugeLine if !huge_sent => {
                huge_sent = true;
                let mut line = vec![b'x'; 64 << 20];
                line.push(b'\n');
                send(&line);
            }
            _ if cmd == "guest-info" => send(b"{\"return\": {\"version\": \"fake\"}}\n"),
            _ => send(format!("{}\n", json!({ "return": { "echo": request } })).as_bytes()),
        }
    }
}

/// Entry point in place of QEMU.
pub fn serve_spawned(scenario: &str) {
    let stream = crate::common::inherited_socket("qm-agent");
    serve(stream, Scenario::parse(scenario));
    // Like QEMU, stay until told to go.
    std::thread::sleep(Duration::from_secs(60));
}
