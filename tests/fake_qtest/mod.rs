//! A fake qtest peer for faults QEMU does not produce on demand. The test
//! binary runs in place of QEMU (QMP off); the library hands it the qtest
//! socketpair end as `-chardev socket,id=qtest,fd=N`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// The environment variable that turns the test binary into the fake.
pub const SCENARIO_ENV: &str = "QM_FAKE_QTEST_SCENARIO";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `readb` answers `OK 0x...2a`, with IRQ lines before and after every
    /// reply; `fail` answers `FAIL ...`; anything else `OK`.
    Interleaved,
    /// Garbage instead of a reply.
    Garbage,
    /// Half a reply, then the connection closes.
    CutReply,
}

impl Scenario {
    pub const ALL: [Scenario; 3] = [Scenario::Interleaved, Scenario::Garbage, Scenario::CutReply];

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

fn serve(stream: UnixStream, scenario: Scenario) {
    let mut out = stream.try_clone().unwrap();
    let mut n = 0u32;
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        n += 1;
        let reply = match (scenario, line.split(' ').next().unwrap_or("")) {
            (Scenario::Garbage, _) => "this is not qtest\n".to_string(),
            (Scenario::CutReply, _) => {
                let _ = out.write_all(b"OK 0x00");
                return;
            }
            (_, "readb") => format!(
                "IRQ raise {n}\nOK 0x000000000000002a\nIRQ lower {}\n",
                n - 1
            ),
            (_, "fail") => "FAIL Unknown command 'fail'\n".to_string(),
            _ => "OK\n".to_string(),
        };
        let _ = out.write_all(reply.as_bytes());
    }
}

/// Entry point in place of QEMU.
pub fn serve_spawned(scenario: &str) {
    let stream = crate::common::inherited_socket("qtest");
    serve(stream, Scenario::parse(scenario));
    std::thread::sleep(Duration::from_secs(60));
}
