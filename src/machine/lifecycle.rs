//! The lifecycle of a machine: one state, changed in one place.
//!
//! ```text
//!            launch                 launch done
//!   Idle ─────────────▶ Launching ─────────────▶ Running
//!    ▲                    │ failed / cancelled       │ shutdown, kill, wait,
//!    │                    ▼                          ▼ release
//!    │                  Ended ◀──────────────────── Ending
//!    │                    │ launch                   ▲
//!    └────────────────────┘ (to Launching)           │ shutdown, release
//!                                       Attached ────┘ (QEMU started elsewhere)
//! ```
//!
//! - **Idle**: never launched; configuring allowed.
//! - **Launching**: one thread is in `launch`. Others can cancel it
//!   (`kill`, `release`: QEMU is not started, or killed, and the launch
//!   fails with [`Error::Launch`] saying so); waits honour their timeouts;
//!   other calls are refused with [`Error::State`] saying a launch is in
//!   progress.
//! - **Running** / **Attached**: QEMU runs (or the attachment is open).
//!   A QEMU that dies on its own stays in this state until someone ends
//!   it; every call meanwhile fails with [`Error::Disconnected`].
//! - **Ending**: exactly one thread (the one that made the transition)
//!   cleans up — kill and reap, drain, remove files — with no lock held.
//!   Others wait for Ended within their deadline; `kill` hurries it.
//! - **Ended**: the run's exit status, log, events and console output stay
//!   readable until the next launch; configuring allowed.
//!
//! The lock only guards transitions and is never held across I/O,
//! reaping or sleeping: every blocking step runs on an `Arc<Run>` taken
//! out of the state.

use std::sync::Arc;

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::config::Config;
use super::launch::{self, LaunchToken};
use super::run::Run;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::owner::Owner;
use crate::qmp::listeners::ListenerSet;

/// Where a machine is in its life.
#[derive(Debug, Clone)]
pub(crate) enum Phase {
    Idle,
    Launching(Arc<LaunchToken>),
    Running(Arc<Run>),
    Attached(Arc<Run>),
    Ending(Arc<Run>),
    Ended(Arc<Run>),
}

impl Phase {
    /// The run this phase holds, if any.
    pub(crate) fn run(&self) -> Option<&Arc<Run>> {
        match self {
            Phase::Idle | Phase::Launching(_) => None,
            Phase::Running(r) | Phase::Attached(r) | Phase::Ending(r) | Phase::Ended(r) => Some(r),
        }
    }
}

#[derive(Debug)]
struct Life {
    config: Config,
    phase: Phase,
}

/// What a call needs from the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// To act on QEMU (commands, console writes): it must be running.
    Live,
    /// To read what the run left (events, console output, log): any run,
    /// also one that has ended.
    Any,
}

/// A machine's state, shared by its handle and its listeners.
#[derive(Debug)]
pub(crate) struct Core {
    owner: Owner,
    /// Default name: `qemu-<pid>-<id>`.
    pub id: u64,
    life: Mutex<Life>,
    /// Signalled on every transition.
    changed: Condvar,
    pub listeners: Arc<ListenerSet>,
}

impl Core {
    pub(crate) fn new(config: Config, id: u64, phase: Phase) -> Core {
        Core {
            owner: Owner::current(),
            id,
            life: Mutex::new(Life { config, phase }),
            changed: Condvar::new(),
            listeners: Arc::default(),
        }
    }

    /// Refuse calls on a forked child's copy, before any lock is taken
    /// (its locks may be held by threads that do not exist in the child).
    pub(crate) fn check_owner(&self) -> Result<()> {
        self.owner.check()
    }

    pub(crate) fn is_owner(&self) -> bool {
        self.owner.is_current()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Life>> {
        self.owner.check()?;
        Ok(self.life.lock())
    }

    /// A copy of the phase, for looking at without holding the lock.
    pub(crate) fn phase(&self) -> Result<Phase> {
        Ok(self.lock()?.phase.clone())
    }

    /// Move to `to` and wake everyone waiting for a change.
    fn set(&self, life: &mut Life, to: Phase) {
        life.phase = to;
        self.changed.notify_all();
    }

    /// Wait for the phase to change, until the deadline; `false` if it
    /// passed.
    fn wait_change(&self, life: &mut MutexGuard<'_, Life>, deadline: Deadline) -> bool {
        deadline.wait(&self.changed, life)
    }

    /// Change the configuration, in Idle and Ended only.
    pub(crate) fn configure<R>(&self, change: impl FnOnce(&mut Config) -> R) -> Result<R> {
        let mut life = self.lock()?;
        Self::configurable(&life.phase)?;
        Ok(change(&mut life.config))
    }

    /// Like [`Core::configure`] for a change that can fail. Bad input is
    /// reported as such in every state: when the machine cannot be
    /// configured now, the change is tried on a copy first.
    pub(crate) fn try_configure<R>(
        &self,
        change: impl FnOnce(&mut Config) -> Result<R>,
    ) -> Result<R> {
        let mut life = self.lock()?;
        if let Err(state) = Self::configurable(&life.phase) {
            let mut copy = life.config.clone();
            drop(life);
            change(&mut copy)?;
            return Err(state);
        }
        change(&mut life.config)
    }

    fn configurable(phase: &Phase) -> Result<()> {
        match phase {
            Phase::Idle => {}
            Phase::Ended(run) if !run.is_attached() => {}
            Phase::Attached(_) | Phase::Ended(_) => {
                return Err(Error::state(
                    "an attached machine cannot be configured (QEMU was started elsewhere)",
                ))
            }
            Phase::Launching(_) => {
                return Err(Error::state(
                    "cannot configure the machine while it is being launched",
                ))
            }
            Phase::Running(_) | Phase::Ending(_) => {
                return Err(Error::state(
                    "cannot configure a launched machine; shut it down first",
                ))
            }
        }
        Ok(())
    }

    pub(crate) fn config(&self) -> Result<Config> {
        Ok(self.lock()?.config.clone())
    }

    /// Launch: Idle/Ended → Launching → Running (or Ended on failure).
    pub(crate) fn launch(&self) -> Result<()> {
        let (config, token, previous) = {
            let mut life = self.lock()?;
            match &life.phase {
                Phase::Idle => {}
                Phase::Ended(run) if !run.is_attached() => {}
                Phase::Attached(_) | Phase::Ended(_) => {
                    return Err(Error::state(
                        "an attached machine cannot be launched (QEMU was started elsewhere)",
                    ))
                }
                Phase::Launching(_) => {
                    return Err(Error::state(
                        "the machine is already being launched (in another thread)",
                    ))
                }
                Phase::Running(_) | Phase::Ending(_) => {
                    return Err(Error::state("the machine is already launched"))
                }
            }
            let token = Arc::new(LaunchToken::default());
            let previous = std::mem::replace(&mut life.phase, Phase::Launching(Arc::clone(&token)));
            self.changed.notify_all();
            (life.config.clone(), token, previous)
        };
        // The previous run's events, output and status go now, outside
        // the lock.
        drop(previous);
        let (run, outcome) = launch::launch(&config, &token, self.id, &self.listeners);
        let mut life = self.life.lock();
        let to = if outcome.is_ok() {
            Phase::Running(run)
        } else {
            Phase::Ended(run)
        };
        self.set(&mut life, to);
        outcome
    }

    /// Move a live run to Ending, if it still is live; `false` if another
    /// thread got there first.
    fn begin_ending(&self, run: &Arc<Run>) -> bool {
        let mut life = self.life.lock();
        match &life.phase {
            Phase::Running(r) | Phase::Attached(r) if Arc::ptr_eq(r, run) => {
                let run = Arc::clone(run);
                self.set(&mut life, Phase::Ending(run));
                true
            }
            _ => false,
        }
    }

    /// Ending → Ended.
    fn end(&self, run: &Arc<Run>) {
        let mut life = self.life.lock();
        if matches!(&life.phase, Phase::Ending(r) if Arc::ptr_eq(r, run)) {
            self.set(&mut life, Phase::Ended(Arc::clone(run)));
        }
    }

    /// Clean a run up and record it as ended (the caller made it Ending).
    fn finish(&self, run: &Arc<Run>) {
        run.finish();
        self.end(run);
    }

    /// Graceful shutdown: `quit` (or SIGTERM), wait, else kill. Always
    /// cleans up by the deadline (a launch still running at the deadline
    /// is cancelled; another thread's shutdown still running is hurried
    /// with SIGKILL).
    pub(crate) fn shutdown(&self, deadline: Deadline) -> Result<()> {
        let mut life = self.lock()?;
        loop {
            match life.phase.clone() {
                Phase::Idle | Phase::Ended(_) => return Ok(()),
                Phase::Launching(token) => {
                    if !self.wait_change(&mut life, deadline) {
                        token.cancel();
                        self.wait_until_not(&mut life, |p| matches!(p, Phase::Launching(_)));
                        return Err(Error::AbnormalShutdown(format!(
                            "the machine was still being launched {}; the launch was cancelled \
                             and QEMU killed",
                            deadline.describe()
                        )));
                    }
                }
                Phase::Running(run) | Phase::Attached(run) => {
                    drop(life);
                    if !self.begin_ending(&run) {
                        life = self.life.lock();
                        continue;
                    }
                    let result = run.stop(deadline);
                    self.finish(&run);
                    return result;
                }
                Phase::Ending(run) => {
                    if !self.wait_change(&mut life, deadline) {
                        run.kill();
                        self.wait_until_not(&mut life, |p| matches!(p, Phase::Ending(_)));
                    }
                    if matches!(life.phase, Phase::Ended(_)) {
                        drop(life);
                        return run.verdict();
                    }
                }
            }
        }
    }

    /// SIGKILL and clean up; interrupts a launch, shutdown or wait in
    /// progress.
    pub(crate) fn kill(&self) -> Result<()> {
        let mut life = self.lock()?;
        loop {
            match life.phase.clone() {
                Phase::Idle | Phase::Ended(_) => return Ok(()),
                Phase::Attached(_) => {
                    return Err(Error::state(
                        "an attached QEMU was not started by this library and cannot be killed; \
                         use shutdown (quit) instead",
                    ))
                }
                Phase::Launching(token) => {
                    token.cancel();
                    self.wait_until_not(&mut life, |p| matches!(p, Phase::Launching(_)));
                }
                Phase::Running(run) => {
                    drop(life);
                    if self.begin_ending(&run) {
                        run.kill();
                        self.finish(&run);
                        return Ok(());
                    }
                    life = self.life.lock();
                }
                Phase::Ending(run) => {
                    run.kill();
                    self.wait_until_not(&mut life, |p| matches!(p, Phase::Ending(_)));
                }
            }
        }
    }

    /// Wait for QEMU to exit on its own (for an attachment: to close the
    /// connection), then clean up. [`Error::Timeout`] leaves it running.
    pub(crate) fn wait(&self, deadline: Deadline) -> Result<()> {
        let mut life = self.lock()?;
        loop {
            match life.phase.clone() {
                Phase::Idle | Phase::Ended(_) => return Ok(()),
                Phase::Launching(_) | Phase::Ending(_) => {
                    if !self.wait_change(&mut life, deadline) {
                        let what = match life.phase {
                            Phase::Launching(_) => "is still being launched",
                            _ => "is still being shut down by another thread",
                        };
                        return Err(Error::Timeout(format!(
                            "the machine {what} {}",
                            deadline.describe()
                        )));
                    }
                }
                Phase::Running(run) | Phase::Attached(run) => {
                    drop(life);
                    if !run.wait_exit(deadline) {
                        return Err(Error::Timeout(format!(
                            "QEMU did not exit {}; it is still running",
                            deadline.describe()
                        )));
                    }
                    if self.begin_ending(&run) {
                        self.finish(&run);
                        return Ok(());
                    }
                    life = self.life.lock();
                }
            }
        }
    }

    /// What dropping a machine does: kill our QEMU (cancelling a launch),
    /// or disconnect from an attached one, and clean up. Every call blocked
    /// on the machine returns.
    pub(crate) fn release(&self) {
        if !self.is_owner() {
            return;
        }
        let mut life = self.life.lock();
        loop {
            match life.phase.clone() {
                Phase::Idle | Phase::Ended(_) => return,
                Phase::Launching(token) => {
                    token.cancel();
                    self.wait_until_not(&mut life, |p| matches!(p, Phase::Launching(_)));
                }
                Phase::Running(run) | Phase::Attached(run) => {
                    drop(life);
                    if self.begin_ending(&run) {
                        run.kill();
                        self.finish(&run);
                        return;
                    }
                    life = self.life.lock();
                }
                Phase::Ending(run) => {
                    run.kill();
                    self.wait_until_not(&mut life, |p| matches!(p, Phase::Ending(_)));
                }
            }
        }
    }

    /// Wait (without a deadline) until the phase leaves one that another
    /// thread is about to end promptly (a cancelled launch, a killed run).
    fn wait_until_not(&self, life: &mut MutexGuard<'_, Life>, phase: impl Fn(&Phase) -> bool) {
        while phase(&life.phase) {
            self.changed.wait(life);
        }
    }

    /// The run a call acts on, or why there is none.
    pub(crate) fn run(&self, need: Need) -> Result<Arc<Run>> {
        let life = self.lock()?;
        match (&life.phase, need) {
            (Phase::Idle, _) => Err(Error::state("the machine has not been launched")),
            (Phase::Launching(_), _) => Err(Error::state(
                "the machine is still being launched (qm_launch has not returned yet)",
            )),
            (Phase::Running(run) | Phase::Attached(run), _) => Ok(Arc::clone(run)),
            (Phase::Ending(run) | Phase::Ended(run), Need::Any) => Ok(Arc::clone(run)),
            (Phase::Ending(_), Need::Live) => Err(Error::state("the machine is being shut down")),
            (Phase::Ended(_), Need::Live) => Err(Error::state(
                "the machine is not running (it was shut down)",
            )),
        }
    }

    /// QEMU's pid while it exists (also during a launch, once spawned).
    pub(crate) fn pid(&self) -> Option<i32> {
        let phase = self.phase().ok()?;
        match phase {
            Phase::Launching(token) => token.pid(),
            Phase::Running(run) | Phase::Ending(run) => {
                let process = run.process.as_ref()?;
                process.reaped_status().is_none().then(|| process.pid())
            }
            _ => None,
        }
    }
}
