//! A fake QMP server for fault injection. It runs either in place of QEMU
//! (the test binary re-executes itself; the library hands it the QMP
//! socketpair end as `-chardev socket,id=mon,fd=N`) or in a thread of the
//! test, listening on a Unix socket that the library attaches to.
//!
//! It behaves like QEMU until its scenario says otherwise.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::fd::FromRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

/// The environment variable that turns the test binary into the fake.
pub const SCENARIO_ENV: &str = "QM_FAKE_QMP_SCENARIO";

const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 0, "major": 99}, "package": "fake"}, "capabilities": []}}"#;

/// Bytes of the huge reply's payload.
pub const HUGE: usize = 64 << 20;

/// What the fake does differently from QEMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Behaves (for `query-status`, `stop`, `quit`) like QEMU.
    Normal,
    // Negotiation faults.
    NoGreeting,
    MalformedGreeting,
    GarbageGreeting,
    CloseBeforeGreeting,
    CloseAfterGreeting,
    CloseAfterCapabilities,
    RefuseCapabilities,
    // Faults on the first command after negotiation.
    CutReply,
    Garbage,
    InvalidUtf8,
    HugeReply,
    ErrorWithoutId,
    UnknownIdThenReply,
    UnknownIdOnly,
    NeverReply,
    /// Events before, between and after replies (and during negotiation).
    Interleaved,
    /// A number no f64 can hold (valid JSON) in the first reply.
    HugeNumber,
}

impl Scenario {
    pub const ALL: [Scenario; 18] = [
        Scenario::Normal,
        Scenario::NoGreeting,
        Scenario::MalformedGreeting,
        Scenario::GarbageGreeting,
        Scenario::CloseBeforeGreeting,
        Scenario::CloseAfterGreeting,
        Scenario::CloseAfterCapabilities,
        Scenario::RefuseCapabilities,
        Scenario::CutReply,
        Scenario::Garbage,
        Scenario::InvalidUtf8,
        Scenario::HugeReply,
        Scenario::ErrorWithoutId,
        Scenario::UnknownIdThenReply,
        Scenario::UnknownIdOnly,
        Scenario::NeverReply,
        Scenario::Interleaved,
        Scenario::HugeNumber,
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

fn event(name: &str, n: u64) -> String {
    format!(
        r#"{{"timestamp": {{"seconds": 1, "microseconds": {n}}}, "event": "{name}", "data": {{"n": {n}}}}}"#
    )
}

/// Serve one connection until it closes or the scenario ends it.
pub fn serve(stream: UnixStream, scenario: Scenario) {
    let mut out = stream.try_clone().unwrap();
    let mut input = BufReader::new(stream);
    let mut send = |bytes: &[u8]| {
        // The library may hang up first; that ends the scenario.
        let _ = out.write_all(bytes);
    };
    match scenario {
        Scenario::NoGreeting => {
            std::thread::sleep(Duration::from_secs(60));
            return;
        }
        Scenario::CloseBeforeGreeting => return,
        Scenario::MalformedGreeting => {
            send(b"{\"QMP\": \"not an object\"}\r\n");
            std::thread::sleep(Duration::from_secs(60));
            return;
        }
        Scenario::GarbageGreeting => {
            send(b"garbage \xff\xfe\r\n");
            std::thread::sleep(Duration::from_secs(60));
            return;
        }
        _ => send(format!("{GREETING}\r\n").as_bytes()),
    }
    if scenario == Scenario::CloseAfterGreeting {
        return;
    }
    let mut line = String::new();
    if input.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    if scenario == Scenario::CloseAfterCapabilities {
        return;
    }
    let request: Value = serde_json::from_str(&line).expect("the library sends JSON");
    assert_eq!(request["execute"], "qmp_capabilities");
    let id = request["id"].clone();
    if scenario == Scenario::RefuseCapabilities {
        send(
            format!(
                "{}\r\n",
                json!({"error": {"class": "GenericError", "desc": "no thanks"}, "id": id})
            )
            .as_bytes(),
        );
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    if scenario == Scenario::Interleaved {
        send(format!("{}\r\n", event("NEGOTIATING", 0)).as_bytes());
    }
    send(format!("{}\r\n", json!({"return": {}, "id": id})).as_bytes());

    let mut n = 0;
    loop {
        line.clear();
        if input.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let request: Value = serde_json::from_str(&line).expect("the library sends JSON");
        let id = request["id"].clone();
        let cmd = request["execute"].as_str().unwrap_or_default().to_string();
        let reply = |ret: Value| format!("{}\r\n", json!({"return": ret, "id": id}));
        n += 1;
        match (scenario, cmd.as_str()) {
            (Scenario::NeverReply, _) => {}
            (_, "quit") => {
                send(reply(json!({})).as_bytes());
                send(
                    format!(
                        "{}\r\n",
                        r#"{"timestamp": {"seconds": 2, "microseconds": 0}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}"#
                    )
                    .as_bytes(),
                );
                return;
            }
            (Scenario::CutReply, _) => {
                send(br#"{"return": {"status": "runn"#);
                return;
            }
            (Scenario::Garbage, _) => send(b"this is not json\r\n"),
            (Scenario::InvalidUtf8, _) => send(b"{\"return\": \"\xff\xfe\"}\r\n"),
            (Scenario::ErrorWithoutId, _) => send(
                b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}\r\n",
            ),
            (Scenario::HugeReply, _) if n == 1 => {
                let payload = "x".repeat(HUGE);
                send(reply(json!({ "data": payload })).as_bytes());
            }
            (Scenario::UnknownIdThenReply, _) if n == 1 => {
                send(b"{\"return\": {\"stray\": true}, \"id\": 987654321}\r\n");
                send(reply(json!({"status": "running"})).as_bytes());
            }
            (Scenario::HugeNumber, _) if n == 1 => {
                send(format!("{{\"return\": {{\"n\": 1e999}}, \"id\": {id}}}\r\n").as_bytes());
            }
            (Scenario::UnknownIdOnly, _) => {
                send(b"{\"return\": {\"stray\": true}, \"id\": 987654321}\r\n");
            }
            (Scenario::Interleaved, _) => {
                send(format!("{}\r\n", event("BEFORE", n)).as_bytes());
                send(reply(json!({"n": n})).as_bytes());
                send(format!("{}\r\n", event("AFTER", n)).as_bytes());
            }
            (_, "stop") => {
                send(format!("{}\r\n", event("STOP", n)).as_bytes());
                send(reply(json!({})).as_bytes());
            }
            _ => send(reply(json!({"status": "running", "running": true})).as_bytes()),
        }
    }
}

/// Entry point in place of QEMU: find the QMP descriptor in the QEMU-style
/// arguments and serve it.
pub fn serve_spawned(scenario: &str) {
    let args: Vec<String> = std::env::args().collect();
    let fd: i32 = args
        .iter()
        .find_map(|a| a.strip_prefix("socket,id=mon,fd="))
        .expect("-chardev socket,id=mon,fd=N among the arguments")
        .parse()
        .unwrap();
    // SAFETY: the library handed this descriptor to us for exactly this.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    serve(stream, Scenario::parse(scenario));
}

/// A fake listening on `path` in a thread of the test, for one connection.
pub fn listen(path: &Path, scenario: Scenario) -> JoinHandle<()> {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            serve(stream, scenario);
        }
    })
}
