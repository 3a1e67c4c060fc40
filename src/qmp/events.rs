//! QMP events: the queue that keeps them in arrival order, and the matching
//! rules callers use to pick one out.

use std::collections::VecDeque;

use serde_json::Value;

/// Default bound of the event queue. Beyond it the oldest event is dropped
/// and counted (see [`crate::Machine::events_dropped`]).
pub const DEFAULT_EVENT_QUEUE_CAPACITY: usize = 65536;

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

/// FIFO of received events. Each event carries a sequence number so a
/// waiter can resume its scan where it left off instead of re-matching the
/// whole queue after every wake-up.
#[derive(Debug)]
pub(crate) struct EventQueue {
    items: VecDeque<(u64, Value)>,
    next_seq: u64,
    capacity: usize,
    dropped: u64,
}

impl EventQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        EventQueue {
            items: VecDeque::new(),
            next_seq: 0,
            capacity: capacity.max(1),
            dropped: 0,
        }
    }

    pub(crate) fn push(&mut self, event: Value) {
        if self.items.len() >= self.capacity {
            self.items.pop_front();
            self.dropped += 1;
        }
        self.items.push_back((self.next_seq, event));
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
        let start = self.items.partition_point(|(seq, _)| *seq < from);
        let found = self
            .items
            .range(start..)
            .position(|(_, ev)| pred(ev))
            .map(|i| start + i);
        match found {
            Some(i) => Ok(self.items.remove(i).expect("index in range").1),
            None => Err(self.next_seq),
        }
    }

    pub(crate) fn take_all(&mut self) -> Vec<Value> {
        self.items.drain(..).map(|(_, ev)| ev).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
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
        let mut q = EventQueue::new(3);
        for i in 0..4 {
            q.push(json!({"event": "E", "n": i}));
        }
        assert_eq!(q.dropped(), 1);
        let resume = q.take_first(0, |e| e["n"] == 9).unwrap_err();
        assert_eq!(resume, 4);
        assert_eq!(q.take_first(0, |e| e["n"] == 2).unwrap()["n"], 2);
        // Events scanned before are skipped when resuming.
        q.push(json!({"event": "E", "n": 1}));
        assert_eq!(q.take_first(resume, |e| e["n"] == 1).unwrap()["n"], 1);
        let rest: Vec<_> = q.take_all().iter().map(|e| e["n"].clone()).collect();
        assert_eq!(rest, vec![json!(1), json!(3)]);
    }
}
