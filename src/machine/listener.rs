//! [`Listener`]: a consumer of events with a queue of its own.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::Value;

use super::lifecycle::{Core, Need};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::qmp::connection::ListenerWake;
use crate::qmp::events::{EventFilter, DEFAULT_EVENT_QUEUE_BYTES, DEFAULT_EVENT_QUEUE_CAPACITY};
use crate::qmp::listeners::ListenerQueue;

/// Receives a copy of every event that passes its filters, from its
/// creation on, through any number of launches of its machine, until it is
/// dropped. Any number of listeners can watch one machine; each has its
/// own bounded queue (65536 events, 16 MiB; beyond that the oldest are
/// dropped and counted), and none affects the machine's own queue
/// ([`crate::Machine::event_wait`]).
///
/// Waiting on a listener reads QMP input like any other wait (no thread is
/// involved). A listener may outlive its machine: it then returns what it
/// has queued, then [`Error::Disconnected`].
#[derive(Debug)]
pub struct Listener {
    queue: Arc<ListenerQueue>,
    core: Weak<Core>,
}

impl Listener {
    pub(super) fn new(core: &Arc<Core>, filters: Option<Vec<EventFilter>>) -> Result<Listener> {
        let queue = Arc::new(
            ListenerQueue::new(
                filters,
                DEFAULT_EVENT_QUEUE_CAPACITY,
                DEFAULT_EVENT_QUEUE_BYTES,
            )
            .map_err(|e| Error::io("cannot create the listener's eventfd", e))?,
        );
        core.listeners.add(Arc::clone(&queue));
        Ok(Listener {
            queue,
            core: Arc::downgrade(core),
        })
    }

    /// The oldest queued event, waiting up to `timeout` for one.
    /// [`Error::Timeout`] if none came; [`Error::Disconnected`] once the
    /// machine's run has ended (or the machine is gone) and nothing is
    /// queued; [`Error::State`] before the machine's first launch has
    /// returned (as [`crate::Machine::event_wait`]), or if the listener is
    /// being dropped (C: freed) meanwhile.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Value> {
        let deadline = Deadline::after(timeout);
        if let Some(event) = self.queue.pop() {
            return Ok(event);
        }
        self.check_freed()?;
        let core = self
            .core
            .upgrade()
            .ok_or_else(|| Error::Disconnected("the listener's machine was freed".into()))?;
        let run = core.run(Need::Any)?;
        let qmp = run.qmp()?;
        match qmp.wait_listener(&self.queue, deadline) {
            Ok(Some(ListenerWake::Event(event))) => Ok(event),
            Ok(Some(ListenerWake::Freed)) => Err(freed()),
            Ok(None) => Err(Error::Timeout(format!(
                "no event for this listener {}",
                deadline.describe()
            ))),
            Err(closed) => match self.queue.pop() {
                Some(event) => Ok(event),
                None => Err(run.explain(closed.error("QMP"))),
            },
        }
    }

    /// Every queued event, oldest first, without waiting (routing what has
    /// arrived first).
    pub fn take(&self) -> Result<Vec<Value>> {
        self.check_freed()?;
        if let Some(core) = self.core.upgrade() {
            if let Ok(run) = core.run(Need::Any) {
                if let Some(qmp) = &run.qmp {
                    let _ = qmp.dispatch();
                }
            }
        }
        Ok(self.queue.take_all())
    }

    /// A descriptor that is readable exactly while events are queued (an
    /// eventfd owned by the listener): for event loops.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.queue.ready_fd().as_fd()
    }

    /// Events this listener dropped because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped()
    }

    /// Wake a thread blocked in [`Listener::wait`] on this listener with
    /// [`Error::State`]; later waits fail the same way. What freeing does
    /// first in C, where the handle can be shared between threads.
    pub fn close(&self) {
        self.queue.mark_freed();
        if let Some(core) = self.core.upgrade() {
            core.listeners.remove(&self.queue);
            if let Ok(run) = core.run(Need::Any) {
                if let Some(qmp) = &run.qmp {
                    qmp.wake_all();
                }
            }
        }
    }

    fn check_freed(&self) -> Result<()> {
        if self.queue.is_freed() {
            Err(freed())
        } else {
            Ok(())
        }
    }
}

fn freed() -> Error {
    Error::state("the listener was freed")
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(core) = self.core.upgrade() {
            if core.is_owner() {
                core.listeners.remove(&self.queue);
            }
        }
    }
}
