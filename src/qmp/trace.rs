//! The QMP traffic trace: every line sent and received, with a direction
//! marker and a `CLOCK_MONOTONIC` timestamp, appended to a file.
//!
//! ```text
//! 51234.123456 << {"QMP": {"version": ...}}
//! 51234.123789 >> {"execute":"qmp_capabilities","id":0}
//! ```

use std::io::{self, Write};
use std::path::Path;

use crate::sink::Sink;

/// An open trace file. Lines are written whole and unbuffered, so the trace
/// is complete even if the process dies. It never blocks or signals the
/// caller (see [`Sink`]): a trace whose reader falls behind loses lines, and
/// says how many.
#[derive(Debug)]
pub(crate) struct Trace {
    sink: Sink,
}

impl Trace {
    /// Open `path` for appending (created if missing).
    pub(crate) fn open(path: &Path) -> io::Result<Trace> {
        let trace = Trace {
            sink: Sink::open(path)?,
        };
        trace.note("qemu-machine QMP trace: connection opened");
        Ok(trace)
    }

    /// A line we sent (without its newline).
    pub(crate) fn sent(&self, line: &[u8]) {
        self.write(b">>", line);
    }

    /// A line we received.
    pub(crate) fn received(&self, line: &[u8]) {
        self.write(b"<<", line);
    }

    /// A comment line.
    pub(crate) fn note(&self, text: &str) {
        self.write(b"##", text.as_bytes());
    }

    fn write(&self, marker: &[u8], line: &[u8]) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut record = Vec::with_capacity(line.len() + 24);
        let _ = write!(record, "{} ", monotonic_timestamp());
        record.extend_from_slice(marker);
        record.push(b' ');
        record.extend_from_slice(line);
        record.push(b'\n');
        self.sink.write(&record, |n| {
            format!(
                "{} ## {n} trace line(s) dropped: the trace file could not take them in time",
                monotonic_timestamp()
            )
            .into_bytes()
        });
    }
}

/// `CLOCK_MONOTONIC` as "seconds.microseconds".
fn monotonic_timestamp() -> String {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    format!("{}.{:06}", ts.tv_sec, ts.tv_nsec / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_timestamp_and_direction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let t = Trace::open(&path).unwrap();
        t.sent(b"{\"execute\":\"x\"}\n");
        t.received(b"{\"return\": {}}\r");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].ends_with(" >> {\"execute\":\"x\"}"),
            "{}",
            lines[1]
        );
        assert!(lines[2].ends_with(" << {\"return\": {}}"), "{}", lines[2]);
        let stamp: f64 = lines[1].split(' ').next().unwrap().parse().unwrap();
        let later: f64 = lines[2].split(' ').next().unwrap().parse().unwrap();
        assert!(stamp > 0.0 && later >= stamp);
    }
}
