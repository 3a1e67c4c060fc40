//! QMP events: the queue that keeps them in arrival order, and the matching
//! rules callers use to pick one out.

use std::collections::VecDeque;

use serde_json::Value;

/// Default bound of an event queue in events. Beyond it (or beyond
/// [`DEFAULT_EVENT_QUEUE_BYTES`]) the oldest event is dropped and counted
/// (see [`crate::Machine::events_dropped`]).
pub const DEFAULT_EVENT_QUEUE_CAPACITY: usize = 65536;

/// Default bound of an event queue in bytes of event text.
pub const DEFAULT_EVENT_QUEUE_BYTES: usize = 16 << 20;

/// Does `event` match `pattern`?
///
/// The rules of QEMU's `QEMUMachine.event_match`: a JSON `null` pattern
/// matches anything; an object pattern matches an object that has every key
/// of the pattern with a matching value (recursively, so the pattern is a
/// sub-dict); any other pattern must equal the value (numbers compare by
/// value, so `1` matches `1.0`).
///
/// ```
/// use qemu_machine::event_match;
/// use serde_json::json;
/// let ev = json!({"event": "JOB_STATUS_CHANGE", "data": {"id": "j0", "status": "ready"}});
/// assert!(event_match(&ev, &json!({"data": {"id": "j0"}})));
/// assert!(event_match(&ev, &json!({"data": {"status": null}})));
/// assert!(!event_match(&ev, &json!({"data": {"id": "j1"}})));
/// ```
pub fn event_match(event: &Value, pattern: &Value) -> bool {
    match (pattern, event) {
        (Value::Null, _) => true,
        (Value::Object(want), Value::Object(have)) => want
            .iter()
            .all(|(key, sub)| have.get(key).is_some_and(|v| event_match(v, sub))),
        (Value::Object(_), _) => false,
        (Value::Number(a), Value::Number(b)) => a == b || a.as_f64() == b.as_f64(),
        (want, have) => want == have,
    }
}

/// Selects events by name and by an [`event_match`] pattern.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// Event name (`"STOP"`); `None` accepts any name.
    pub name: Option<String>,
    /// Pattern applied to the whole event object (so usually
    /// `{"data": {...}}`); `None` accepts any event.
    pub pattern: Option<Value>,
}

impl EventFilter {
    /// A filter for the named event with an optional pattern.
    pub fn new(name: Option<&str>, pattern: Option<Value>) -> Self {
        EventFilter {
            name: name.map(str::to_owned),
            pattern,
        }
    }

    /// Whether `event` passes this filter.
    pub fn matches(&self, event: &Value) -> bool {
        if let Some(name) = &self.name {
            if event.get("event").and_then(Value::as_str) != Some(name.as_str()) {
                return false;
            }
        }
        self.pattern
            .as_ref()
            .is_none_or(|pattern| event_match(event, pattern))
    }

    /// A filter list that can match something: not empty.
    pub(crate) fn check_list(filters: &[EventFilter]) -> crate::Result<()> {
        if filters.is_empty() {
            return Err(crate::Error::invalid(
                "no event filters: no event could ever match",
            ));
        }
        Ok(())
    }

    pub(crate) fn describe(filters: &[EventFilter]) -> String {
        let parts: Vec<String> = filters
            .iter()
            .map(|f| {
                let name = f.name.as_deref().unwrap_or("event");
                match &f.pattern {
                    Some(p) => format!("{name} matching {p}"),
                    None => name.to_string(),
                }
            })
            .collect();
        if parts.is_empty() {
            "nothing (empty filter list)".to_string()
        } else {
            parts.join(" or ")
        }
    }
}

/// FIFO of received events, bounded by count and by bytes (the size of
/// each event as QEMU sent it). Each event carries a sequence number so a
/// waiter can resume its scan where it left off instead of re-matching the
/// whole queue after every wake-up.
#[derive(Debug)]
pub(crate) struct EventQueue {
    items: VecDeque<Queued>,
    next_seq: u64,
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
    dropped: u64,
}

#[derive(Debug)]
struct Queued {
    seq: u64,
    size: usize,
    event: Value,
}

impl EventQueue {
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> Self {
        EventQueue {
            items: VecDeque::new(),
            next_seq: 0,
            capacity: capacity.max(1),
            max_bytes: max_bytes.max(1),
            bytes: 0,
            dropped: 0,
        }
    }

    /// Queue `event` (`size` bytes as received), dropping the oldest
    /// events while either bound is exceeded; an event larger than the
    /// byte bound on its own is kept (alone).
    pub(crate) fn push(&mut self, event: Value, size: usize) {
        while !self.items.is_empty()
            && (self.items.len() >= self.capacity || self.bytes + size > self.max_bytes)
        {
            let old = self.items.pop_front().expect("not empty");
            self.bytes -= old.size;
            self.dropped += 1;
        }
        self.bytes += size;
        self.items.push_back(Queued {
            seq: self.next_seq,
            size,
            event,
        });
        self.next_seq += 1;
    }

    /// Remove and return the first event with a sequence number `>= from`
    /// that satisfies `pred`. On a miss, returns the sequence number to
    /// resume from next time.
    pub(crate) fn take_first(
        &mut self,
        from: u64,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Result<Value, u64> {
        let start = self.items.partition_point(|q| q.seq < from);
        let found = self
            .items
            .range(start..)
            .position(|q| pred(&q.event))
            .map(|i| start + i);
        match found {
            Some(i) => {
                let q = self.items.remove(i).expect("index in range");
                self.bytes -= q.size;
                Ok(q.event)
            }
            None => Err(self.next_seq),
        }
    }

    /// The oldest event.
    pub(crate) fn pop(&mut self) -> Option<Value> {
        let q = self.items.pop_front()?;
        self.bytes -= q.size;
        Some(q.event)
    }

    pub(crate) fn take_all(&mut self) -> Vec<Value> {
        self.bytes = 0;
        self.items.drain(..).map(|q| q.event).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// Every event of a run as QEMU sent it, for failure artifacts: bounded by
/// bytes (the oldest go first, counted), independent of what was taken
/// from the queues.
#[derive(Debug, Default)]
pub(crate) struct EventHistory {
    lines: VecDeque<Box<[u8]>>,
    bytes: usize,
    dropped: u64,
}

/// Bound of the event history.
const HISTORY_BYTES: usize = 8 << 20;

impl EventHistory {
    pub(crate) fn push(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        while !self.lines.is_empty() && self.bytes + line.len() > HISTORY_BYTES {
            let old = self.lines.pop_front().expect("not empty");
            self.bytes -= old.len();
            self.dropped += 1;
        }
        self.bytes += line.len();
        self.lines.push_back(line.into());
    }

    /// The events as JSON lines, oldest first, and how many older ones were
    /// dropped.
    pub(crate) fn to_jsonl(&self) -> (Vec<u8>, u64) {
        let mut out = Vec::with_capacity(self.bytes + self.lines.len());
        for line in &self.lines {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        (out, self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seed_examples() {
        assert!(event_match(
            &json!({"foo": {"bar": 1}}),
            &json!({"foo": null})
        ));
        assert!(event_match(&json!({"foo": 5}), &json!({"foo": null})));
        assert!(!event_match(
            &json!({"foo": {"bar": 1}}),
            &json!({"foo": {"abc": null}})
        ));
        assert!(event_match(
            &json!({"foo": {"bar": 1, "rab": 2}}),
            &json!({"foo": {"rab": 2}})
        ));
        assert!(event_match(&json!("anything"), &Value::Null));
        assert!(!event_match(&json!("abc"), &json!({"a": null})));
        assert!(event_match(&json!({"n": 1.0}), &json!({"n": 1})));
        assert!(event_match(&json!({"l": [1, 2]}), &json!({"l": [1, 2]})));
        assert!(!event_match(&json!({"l": [1, 2]}), &json!({"l": [1]})));
    }

    #[test]
    fn filter_by_name_and_pattern() {
        let ev = json!({"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}});
        assert!(EventFilter::new(Some("SHUTDOWN"), None).matches(&ev));
        assert!(!EventFilter::new(Some("STOP"), None).matches(&ev));
        assert!(EventFilter::new(None, Some(json!({"data": {"guest": true}}))).matches(&ev));
        assert!(
            !EventFilter::new(Some("SHUTDOWN"), Some(json!({"data": {"guest": false}})))
                .matches(&ev)
        );
    }

    #[test]
    fn queue_keeps_order_and_resumes_scan() {
        let mut q = EventQueue::new(3, 1 << 20);
        for i in 0..4 {
            q.push(json!({"event": "E", "n": i}), 10);
        }
        assert_eq!(q.dropped(), 1);
        let resume = q.take_first(0, |e| e["n"] == 9).unwrap_err();
        assert_eq!(resume, 4);
        assert_eq!(q.take_first(0, |e| e["n"] == 2).unwrap()["n"], 2);
        // Events scanned before are skipped when resuming.
        q.push(json!({"event": "E", "n": 1}), 10);
        assert_eq!(q.take_first(resume, |e| e["n"] == 1).unwrap()["n"], 1);
        let rest: Vec<_> = q.take_all().iter().map(|e| e["n"].clone()).collect();
        assert_eq!(rest, vec![json!(1), json!(3)]);
    }

    #[test]
    fn queue_is_bounded_by_bytes() {
        let mut q = EventQueue::new(1000, 100);
        for i in 0..10 {
            q.push(json!({"n": i}), 30);
        }
        assert_eq!(q.len(), 3);
        assert_eq!(q.dropped(), 7);
        assert_eq!(q.pop().unwrap()["n"], 7);
        // One event larger than the bound is kept on its own.
        q.push(json!({"n": "big"}), 500);
        assert_eq!(q.len(), 1);
        assert_eq!(q.dropped(), 9);
    }
}
