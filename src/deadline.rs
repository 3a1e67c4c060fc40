//! One deadline per blocking call: computed once from the caller's timeout
//! and consulted by every wait inside the call, so a wait that wakes up for
//! unrelated reasons never restarts its clock.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, MutexGuard};

/// A point in time after which a blocking call gives up, or "never".
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline {
    at: Option<Instant>,
    /// The timeout the caller gave, for messages.
    budget: Option<Duration>,
}

impl Deadline {
    /// `None` waits forever; `Some(ZERO)` polls. A timeout so large that it
    /// overflows the clock is treated as forever.
    pub(crate) fn after(timeout: Option<Duration>) -> Self {
        Deadline {
            at: timeout.and_then(|t| Instant::now().checked_add(t)),
            budget: timeout,
        }
    }

    pub(crate) fn never() -> Self {
        Deadline::after(None)
    }

    /// No waiting at all: look once.
    pub(crate) fn poll() -> Self {
        Deadline::after(Some(Duration::ZERO))
    }

    /// Time left; `None` when there is no deadline.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        self.at.map(|d| d.saturating_duration_since(Instant::now()))
    }

    pub(crate) fn expired(&self) -> bool {
        matches!(self.at, Some(d) if Instant::now() >= d)
    }

    /// The earlier of two deadlines (with that one's budget for messages).
    pub(crate) fn min(self, other: Deadline) -> Deadline {
        match (self.at, other.at) {
            (Some(a), Some(b)) if b < a => other,
            (None, Some(_)) => other,
            _ => self,
        }
    }

    /// This deadline, or `now + grace` if that is later (for cleanup that
    /// must get a chance even when the call's own time is up).
    pub(crate) fn at_least(self, grace: Duration) -> Deadline {
        match self.remaining() {
            Some(left) if left < grace => Deadline::after(Some(grace)),
            _ => self,
        }
    }

    /// "within 500 ms", for timeout messages.
    pub(crate) fn describe(&self) -> String {
        match self.budget {
            None => "ever".to_string(),
            Some(t) => format!("within {} ms", t.as_millis()),
        }
    }

    /// The remaining time for `ppoll`, or `None` for forever.
    pub(crate) fn timespec(&self) -> Option<rustix::event::Timespec> {
        self.remaining().map(|r| rustix::event::Timespec {
            tv_sec: r.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: r.subsec_nanos().into(),
        })
    }

    /// Wait on `cond` until notified or this deadline passes. `false` only
    /// once the deadline has passed (a caller should then check its
    /// condition one last time).
    pub(crate) fn wait<T>(&self, cond: &Condvar, guard: &mut MutexGuard<'_, T>) -> bool {
        match self.at {
            None => {
                cond.wait(guard);
                true
            }
            Some(at) => !cond.wait_until(guard, at).timed_out() || !self.expired(),
        }
    }
}
