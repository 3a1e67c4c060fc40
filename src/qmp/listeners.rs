//! Event listeners: any number per machine, each with its own bounded
//! queue of the events that pass its filters, from its creation on, across
//! launches, until it is freed. Routing an event costs one filter check per
//! listener; a command costs nothing.
//!
//! Each queue has an eventfd that is readable exactly while the queue holds
//! events, for event loops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;

use crate::qmp::events::{EventFilter, EventQueue};
use crate::socket::EventFd;

/// The listeners of one machine. Lock order: a connection's state, then
/// this list, then a listener's queue.
#[derive(Debug, Default)]
pub(crate) struct ListenerSet {
    list: Mutex<Vec<Arc<ListenerQueue>>>,
}

impl ListenerSet {
    /// Hand `event` (`size` bytes as received) to every listener it passes.
    pub(crate) fn deliver(&self, event: &Value, size: usize) {
        let list = self.list.lock();
        for listener in list.iter() {
            if listener.accepts(event) {
                listener.push(event.clone(), size);
            }
        }
    }

    pub(crate) fn add(&self, listener: Arc<ListenerQueue>) {
        self.list.lock().push(listener);
    }

    pub(crate) fn remove(&self, listener: &Arc<ListenerQueue>) {
        self.list.lock().retain(|l| !Arc::ptr_eq(l, listener));
    }
}

/// One listener's queue.
#[derive(Debug)]
pub(crate) struct ListenerQueue {
    /// `None`: every event.
    filters: Option<Vec<EventFilter>>,
    queue: Mutex<EventQueue>,
    ready: EventFd,
    freed: AtomicBool,
}

impl ListenerQueue {
    pub(crate) fn new(
        filters: Option<Vec<EventFilter>>,
        capacity: usize,
        max_bytes: usize,
    ) -> std::io::Result<ListenerQueue> {
        Ok(ListenerQueue {
            filters,
            queue: Mutex::new(EventQueue::new(capacity, max_bytes)),
            ready: EventFd::new()?,
            freed: AtomicBool::new(false),
        })
    }

    fn accepts(&self, event: &Value) -> bool {
        self.filters
            .as_ref()
            .is_none_or(|filters| filters.iter().any(|f| f.matches(event)))
    }

    fn push(&self, event: Value, size: usize) {
        let mut queue = self.queue.lock();
        let was_empty = queue.is_empty();
        queue.push(event, size);
        if was_empty {
            self.ready.set();
        }
    }

    /// The oldest queued event.
    pub(crate) fn pop(&self) -> Option<Value> {
        let mut queue = self.queue.lock();
        let event = queue.pop();
        if queue.is_empty() {
            self.ready.clear();
        }
        event
    }

    /// Every queued event, oldest first.
    pub(crate) fn take_all(&self) -> Vec<Value> {
        let mut queue = self.queue.lock();
        let events = queue.take_all();
        self.ready.clear();
        events
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.queue.lock().dropped()
    }

    /// The eventfd: readable exactly while events are queued.
    pub(crate) fn ready_fd(&self) -> &EventFd {
        &self.ready
    }

    /// Mark freed and wake a waiter that polls the eventfd.
    pub(crate) fn mark_freed(&self) {
        self.freed.store(true, Ordering::SeqCst);
        self.ready.set();
    }

    pub(crate) fn is_freed(&self) -> bool {
        self.freed.load(Ordering::SeqCst)
    }
}
