//! Live migration in one call: [`migrate`].

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use serde_json::{json, Value};

use super::launch::Transport;
use super::lifecycle::Need;
use super::Machine;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::qmp::events::EventFilter;
use crate::socket::{poll_until, Socket};

/// How long the message's extra facts (each side's status) may take.
const STATUS_GRACE: Duration = Duration::from_secs(1);

/// Live-migrate `src` into `dst` (launched with `-incoming defer`) over a
/// socketpair passed to both with `getfd`: migration events are enabled on
/// both, `migrate-incoming` runs on `dst` and `migrate` on `src` with
/// `fd:` URIs, and the call waits for both sides' MIGRATION events to say
/// `completed` (then for `src` to settle in `postmigrate`), all within one
/// deadline. `failed` or `cancelled` on either side is [`Error::Command`]
/// with both sides' status; QEMU dying on either side ends the call at
/// once with [`Error::Disconnected`]; at the deadline the migration is
/// cancelled (`migrate_cancel`) and the error is [`Error::Timeout`]. Both monitors must be Unix sockets
/// (the default socketpair is).
pub fn migrate(src: &Machine, dst: &Machine, timeout: Option<Duration>) -> Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let deadline = Deadline::after(timeout);
    let left = || deadline.remaining();
    for (side, m) in [("source", src), ("destination", dst)] {
        let run = m.core.run(Need::Live)?;
        if run.transport != Transport::Unix || run.qmp.is_none() {
            return Err(Error::AddDevice(format!(
                "the {side} needs a QMP monitor on a Unix socket to receive the migration \
                 channel"
            )));
        }
    }
    let events = json!({"capabilities": [{"capability": "events", "state": true}]});
    src.command("migrate-set-capabilities", Some(&events), left())?;
    dst.command("migrate-set-capabilities", Some(&events), left())?;
    let filter = || Some(vec![EventFilter::new(Some("MIGRATION"), None)]);
    let watch_src = src.listen(filter())?;
    let watch_dst = dst.listen(filter())?;
    let (ours, theirs) =
        Socket::pair().map_err(|e| Error::io("cannot create the migration socket pair", e))?;
    let name = format!("qm-migration-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    src.send_fd(ours.as_fd(), &name, left())?;
    dst.send_fd(theirs.as_fd(), &name, left())?;
    // QEMU holds its copies now.
    drop((ours, theirs));
    let uri = json!({ "uri": format!("fd:{name}") });
    dst.command("migrate-incoming", Some(&uri), left())?;
    src.command("migrate", Some(&uri), left())?;

    let mut statuses = [None::<String>, None];
    loop {
        for (i, watch) in [&watch_src, &watch_dst].into_iter().enumerate() {
            for event in watch.take()? {
                if let Some(status) = event["data"]["status"].as_str() {
                    statuses[i] = Some(status.to_string());
                }
            }
        }
        let [s, d] = &statuses;
        if s.as_deref() == Some("completed") && d.as_deref() == Some("completed") {
            return settle(src, deadline);
        }
        let ended = |st: &Option<String>| matches!(st.as_deref(), Some("failed" | "cancelled"));
        if ended(s) || ended(d) {
            return Err(Error::Command {
                command: "migrate".into(),
                class: "MigrationFailed".into(),
                desc: both_statuses(src, dst, &statuses),
            });
        }
        if deadline.expired() {
            let statuses = both_statuses(src, dst, &statuses);
            // Leave no migration running behind the caller's back.
            let cancelled = src
                .command("migrate_cancel", None, Some(STATUS_GRACE))
                .is_ok();
            return Err(Error::Timeout(format!(
                "the migration did not complete {}; {statuses}; {}",
                deadline.describe(),
                if cancelled {
                    "it was cancelled"
                } else {
                    "it could not be cancelled (migrate_cancel failed)"
                }
            )));
        }
        wait_for_input(src, dst, deadline).map_err(|e| match e {
            Error::Disconnected(why) => Error::Disconnected(format!(
                "{why}\n(while migrating; {})",
                both_statuses(src, dst, &statuses)
            )),
            other => other,
        })?;
    }
}

/// Sleep until either machine has QMP input (or has ended), then route it.
fn wait_for_input(src: &Machine, dst: &Machine, deadline: Deadline) -> Result<()> {
    let (Some(a), Some(b)) = (src.poll_fd()?, dst.poll_fd()?) else {
        // Not running any more: dispatch says how.
        src.dispatch()?;
        return dst.dispatch();
    };
    // SAFETY: the descriptors belong to the two runs, which outlive this
    // call (the machines are borrowed for it).
    let (a, b) = unsafe {
        (
            std::os::fd::BorrowedFd::borrow_raw(a),
            std::os::fd::BorrowedFd::borrow_raw(b),
        )
    };
    let mut fds = [
        PollFd::from_borrowed_fd(a, PollFlags::IN),
        PollFd::from_borrowed_fd(b, PollFlags::IN),
    ];
    poll_until(&mut fds, deadline).map_err(|e| Error::io("waiting for the migration", e))?;
    src.dispatch()?;
    dst.dispatch()
}

/// Just after `completed`, the source may report `finish-migrate` for a
/// moment before `postmigrate`: wait for it to settle.
fn settle(src: &Machine, deadline: Deadline) -> Result<()> {
    let mut pause = Duration::from_millis(1);
    loop {
        let status = src.command("query-status", None, deadline.remaining())?;
        if status["status"] != "finish-migrate" || deadline.expired() {
            return Ok(());
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// "source: failed (error text); destination: exited ..." for messages,
/// each side asked briefly with `query-migrate`.
fn both_statuses(src: &Machine, dst: &Machine, events: &[Option<String>; 2]) -> String {
    let describe = |m: &Machine, event: &Option<String>| -> String {
        let asked: Result<Value> = m.command("query-migrate", None, Some(STATUS_GRACE));
        match asked {
            Ok(info) => {
                let status = info["status"].as_str().unwrap_or("none");
                match info["error-desc"].as_str() {
                    Some(why) => format!("{status} ({why})"),
                    None => status.to_string(),
                }
            }
            Err(_) => match (m.exit_status(), event) {
                (Some(exit), _) => {
                    // QEMU's last words say why (a refused machine type...).
                    let log = m.log().unwrap_or_default();
                    let lines: Vec<&str> = log.trim_end().lines().map(str::trim).collect();
                    let last = &lines[lines.len().saturating_sub(3)..];
                    if last.is_empty() {
                        format!("QEMU {exit}")
                    } else {
                        format!("QEMU {exit} ({})", last.join(" / "))
                    }
                }
                (None, Some(last)) => format!("{last} (last event; QEMU does not answer)"),
                (None, None) => "unknown (QEMU does not answer)".to_string(),
            },
        }
    };
    format!(
        "source: {}; destination: {}",
        describe(src, &events[0]),
        describe(dst, &events[1])
    )
}

impl Machine {
    /// Live-migrate this machine into `dst`: see [`migrate`].
    pub fn migrate_to(&self, dst: &Machine, timeout: Option<Duration>) -> Result<()> {
        migrate(self, dst, timeout)
    }
}
