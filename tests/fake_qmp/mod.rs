//! A fake QMP server for fault injection. It runs either in place of QEMU
//! (the test binary re-executes itself; the library hands it the QMP
//! socketpair end as `-chardev socket,id=mon,fd=N`) or in a thread of the
//! test, listening on a Unix or TCP socket that the library attaches to.
//!
//! It behaves like QEMU until its scenario says otherwise: it reads
//! commands as a stream of JSON objects (no separator needed, as QEMU's
//! parser), answers them one at a time in order, and copies an `id` into
//! the reply only if the command had one.
#![allow(dead_code)]

use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::{json, Value};

/// The environment variable that turns the test binary into the fake.
pub const SCENARIO_ENV: &str = "QM_FAKE_QMP_SCENARIO";

const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 0, "major": 99}, "package": "fake"}, "capabilities": []}}"#;

/// Bytes of the huge reply's payload.
pub const HUGE: usize = 64 << 20;

/// Bytes of each event of [`Scenario::BigEventFlood`].
pub const BIG_EVENT: usize = 64 << 10;

/// What the fake does differently from QEMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Like QEMU: `stop` (with a STOP event), `quit` (with SHUTDOWN, then
    /// closing), `slow` (answered after 500 ms), anything else echoed back
    /// as `{"echo": COMMAND}`; a command whose arguments hold
    /// `"unparseable": true` gets the error without id QEMU sends for input
    /// its parser rejects.
    Normal,
    // Negotiation faults.
    NoGreeting,
    MalformedGreeting,
    GarbageGreeting,
    CloseBeforeGreeting,
    CloseAfterGreeting,
    CloseAfterCapabilities,
    RefuseCapabilities,
    /// Events before the greeting, then normal.
    EventsBeforeGreeting,
    // Faults on the first command after negotiation.
    CutReply,
    Garbage,
    InvalidUtf8,
    HugeReply,
    /// A reply right after negotiation, before any command: it belongs to
    /// nothing.
    StrayReply,
    NeverReply,
    /// Events before, between and after replies (and during negotiation).
    Interleaved,
    /// A number no f64 can hold (valid JSON) in the first reply.
    HugeNumber,
    /// Replies whose keys are escaped (`"ret\u0075rn"`).
    EscapedKeys,
    /// After negotiation: small events without pause, forever; commands
    /// are never answered.
    EventFlood,
    /// After the greeting: small events without pause, forever;
    /// `qmp_capabilities` is never answered.
    NegotiationFlood,
    /// After negotiation: 64 KiB events without pause, forever.
    BigEventFlood,
    /// After negotiation: one line that never ends.
    EndlessLine,
}

impl Scenario {
    pub const ALL: [Scenario; 22] = [
        Scenario::Normal,
        Scenario::NoGreeting,
        Scenario::MalformedGreeting,
        Scenario::GarbageGreeting,
        Scenario::CloseBeforeGreeting,
        Scenario::CloseAfterGreeting,
        Scenario::CloseAfterCapabilities,
        Scenario::RefuseCapabilities,
        Scenario::EventsBeforeGreeting,
        Scenario::CutReply,
        Scenario::Garbage,
        Scenario::InvalidUtf8,
        Scenario::HugeReply,
        Scenario::StrayReply,
        Scenario::NeverReply,
        Scenario::Interleaved,
        Scenario::HugeNumber,
        Scenario::EscapedKeys,
        Scenario::EventFlood,
        Scenario::BigEventFlood,
        Scenario::EndlessLine,
        Scenario::NegotiationFlood,
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

pub fn event(name: &str, n: u64) -> String {
    format!(
        r#"{{"timestamp": {{"seconds": 1, "microseconds": {n}}}, "event": "{name}", "data": {{"n": {n}}}}}"#
    )
}

/// Serve one connection until it closes or the scenario ends it.
pub fn serve<S>(stream: S, scenario: Scenario)
where
    S: std::io::Read + Write + TryClone,
{
    let mut out = stream.try_clone_stream();
    let mut send = |bytes: &[u8]| -> bool {
        // The library may hang up first; that ends the scenario.
        out.write_all(bytes).is_ok()
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
        Scenario::EventsBeforeGreeting => {
            send(format!("{}\r\n{}\r\n", event("EARLY", 1), event("EARLY", 2)).as_bytes());
            send(format!("{GREETING}\r\n").as_bytes());
        }
        _ => {
            send(format!("{GREETING}\r\n").as_bytes());
        }
    }
    if scenario == Scenario::CloseAfterGreeting {
        return;
    }
    if scenario == Scenario::NegotiationFlood {
        let mut n = 0;
        while send(format!("{}\r\n", event("FLOOD", n)).as_bytes()) {
            n += 1;
        }
        return;
    }
    // Raw text, so an echo shows the request exactly as it was sent.
    let mut requests =
        serde_json::Deserializer::from_reader(BufReader::new(stream)).into_iter::<Box<RawValue>>();
    let Some(Ok(raw)) = requests.next() else {
        return;
    };
    let request: Value = serde_json::from_str(raw.get()).unwrap();
    if scenario == Scenario::CloseAfterCapabilities {
        return;
    }
    assert_eq!(request["execute"], "qmp_capabilities");
    let reply = |request: &Value, ret: Value| {
        let mut reply = json!({ "return": ret });
        if let Some(id) = request.get("id") {
            reply["id"] = id.clone();
        }
        format!("{reply}\r\n")
    };
    if scenario == Scenario::RefuseCapabilities {
        send(
            format!(
                "{}\r\n",
                json!({"error": {"class": "GenericError", "desc": "no thanks"}})
            )
            .as_bytes(),
        );
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    if scenario == Scenario::Interleaved {
        send(format!("{}\r\n", event("NEGOTIATING", 0)).as_bytes());
    }
    send(reply(&request, json!({})).as_bytes());
    match scenario {
        Scenario::StrayReply => {
            send(b"{\"return\": {\"stray\": true}}\r\n");
        }
        Scenario::EventFlood => {
            let mut n = 0;
            while send(format!("{}\r\n", event("FLOOD", n)).as_bytes()) {
                n += 1;
            }
            return;
        }
        Scenario::BigEventFlood => {
            let pad = "x".repeat(BIG_EVENT);
            let mut n = 0u64;
            loop {
                let line = format!(
                    r#"{{"timestamp": {{"seconds": 1, "microseconds": 0}}, "event": "BIG", "data": {{"n": {n}, "pad": "{pad}"}}}}"#
                );
                if !send(format!("{line}\r\n").as_bytes()) {
                    return;
                }
                n += 1;
            }
        }
        Scenario::EndlessLine => {
            let chunk = vec![b'x'; 1 << 20];
            send(b"{\"return\": \"");
            while send(&chunk) {}
            return;
        }
        _ => {}
    }

    let mut n = 0;
    for raw in requests {
        let Ok(raw) = raw else {
            return;
        };
        let request: Value = serde_json::from_str(raw.get()).unwrap();
        let cmd = request["execute"].as_str().unwrap_or_default().to_string();
        n += 1;
        match (scenario, cmd.as_str()) {
            (Scenario::NeverReply, _) => {}
            (_, "quit") => {
                send(reply(&request, json!({})).as_bytes());
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
            (Scenario::Garbage, _) => {
                send(b"this is not json\r\n");
            }
            (Scenario::InvalidUtf8, _) => {
                send(b"{\"return\": \"\xff\xfe\"}\r\n");
            }
            (Scenario::HugeReply, _) if n == 1 => {
                let payload = "x".repeat(HUGE);
                send(reply(&request, json!({ "data": payload })).as_bytes());
            }
            (Scenario::HugeNumber, _) if n == 1 => {
                send(b"{\"return\": {\"n\": 1e999}}\r\n");
            }
            (Scenario::EscapedKeys, _) => {
                send(b"{\"ret\\u0075rn\": {\"escaped\": true}}\r\n");
            }
            (Scenario::Interleaved, _) => {
                send(format!("{}\r\n", event("BEFORE", n)).as_bytes());
                send(reply(&request, json!({"n": n})).as_bytes());
                send(format!("{}\r\n", event("AFTER", n)).as_bytes());
            }
            (_, "stop") => {
                send(format!("{}\r\n", event("STOP", n)).as_bytes());
                send(reply(&request, json!({})).as_bytes());
            }
            (_, "slow") => {
                std::thread::sleep(Duration::from_millis(500));
                send(reply(&request, json!({"slow": true})).as_bytes());
            }
            _ if request["arguments"]["unparseable"] == true => {
                send(
                    b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray '%'\"}}\r\n",
                );
            }
            (_, "query-status") => {
                send(reply(&request, json!({"status": "running", "running": true})).as_bytes());
            }
            _ => {
                send(format!("{{\"return\": {{\"echo\": {}}}}}\r\n", raw.get()).as_bytes());
            }
        }
    }
}

/// Streams the fake can serve.
pub trait TryClone {
    fn try_clone_stream(&self) -> Self;
}

impl TryClone for UnixStream {
    fn try_clone_stream(&self) -> Self {
        self.try_clone().unwrap()
    }
}

impl TryClone for std::net::TcpStream {
    fn try_clone_stream(&self) -> Self {
        self.try_clone().unwrap()
    }
}

/// Entry point in place of QEMU: find the QMP descriptor in the QEMU-style
/// arguments and serve it.
pub fn serve_spawned(scenario: &str) {
    let stream = crate::common::inherited_socket("mon");
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

/// A fake listening on a free TCP port of 127.0.0.1, for one connection.
pub fn listen_tcp(scenario: Scenario) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            serve(stream, scenario);
        }
    });
    (port, server)
}
