//! What a failed test leaves for its reader: QEMU's log, the console
//! output, the QMP trace, every event of the run, the command line and how
//! the run ended, written into a directory (see
//! [`Machine::save_artifacts`]).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::lifecycle::Need;
use super::run::{quote_command_line, Run};
use super::Machine;
use crate::error::{Error, Result};

impl Machine {
    /// Write the run's artifacts into `dir` (created, mode 0700, if
    /// missing): `qemu.log`, `console.log` (with a console),
    /// `qmp-trace.log` (when traced), `events.jsonl` (every event of the
    /// run seen so far, including those already taken), `command-line.txt`
    /// and `status.txt` (running, or how it ended). Safe at any moment —
    /// running, after a shutdown, after a failed launch — and from any
    /// thread; it never waits for QEMU. A second call overwrites the files.
    /// [`Error::State`] before the first launch.
    pub fn save_artifacts(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        let run = self.core.run(Need::Any).map_err(|e| match e {
            Error::State(why) => Error::state(format!("nothing to save: {why}")),
            other => other,
        })?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        save(dir, &run)
    }
}

fn save(dir: &Path, run: &Run) -> Result<()> {
    if let Ok(log) = run.log() {
        write(dir, "qemu.log", log.as_bytes())?;
    }
    if let Some(console) = &run.console {
        let (mut output, dropped) = console.snapshot();
        if dropped > 0 {
            let mut noted = format!("[... {dropped} earlier bytes dropped ...]\n").into_bytes();
            noted.append(&mut output);
            output = noted;
        }
        write(dir, "console.log", &output)?;
    }
    if let Some(path) = run.trace_path.lock().clone() {
        // Only a regular file can be copied without waiting on a reader.
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file() && !m.file_type().is_fifo()) {
            let trace = std::fs::read(&path)
                .map_err(|e| Error::io(format!("cannot read the trace {}", path.display()), e))?;
            write(dir, "qmp-trace.log", &trace)?;
        }
    }
    let mut status = format!("{}\n", run.status_line());
    if let Some(qmp) = &run.qmp {
        let (events, dropped) = qmp.event_history();
        write(dir, "events.jsonl", &events)?;
        if dropped > 0 {
            status.push_str(&format!(
                "events.jsonl: the {dropped} oldest events were dropped (history bound)\n"
            ));
        }
        if qmp.events_dropped() > 0 {
            status.push_str(&format!(
                "event queue: {} events dropped because it was full\n",
                qmp.events_dropped()
            ));
        }
    }
    if let Some(console) = &run.console {
        if console.dropped() > 0 {
            status.push_str(&format!(
                "console: {} bytes dropped from memory\n",
                console.dropped()
            ));
        }
    }
    let mut command_line = quote_command_line(&run.command_line);
    command_line.push('\n');
    write(dir, "command-line.txt", command_line.as_bytes())?;
    write(dir, "status.txt", status.as_bytes())
}

/// Replace `dir/name` with `data`, whole (a reader never sees half a file).
fn write(dir: &Path, name: &str, data: &[u8]) -> Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = dir.join(name);
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{unique}.tmp", std::process::id()));
    let fail = |e| Error::io(format!("cannot write {}", path.display()), e);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    file.write_all(data).map_err(fail)?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(fail)
}
