//! The event matcher: for arbitrary JSON values it never panics, null
//! matches everything, every value matches itself, and any sub-object of an
//! event matches it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qemu_machine::{event_match, EventFilter};
use serde_json::Value;

/// Keep every other key, recursively: a sub-object of `v`.
fn sub_pattern(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .step_by(2)
                .map(|(k, v)| (k.clone(), sub_pattern(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == 0);
    let (Some(a), Some(b)) = (parts.next(), parts.next()) else {
        return;
    };
    let (Ok(event), Ok(pattern)) = (
        serde_json::from_slice::<Value>(a),
        serde_json::from_slice::<Value>(b),
    ) else {
        return;
    };
    let _ = event_match(&event, &pattern);
    assert!(event_match(&event, &Value::Null));
    assert!(event_match(&event, &event));
    assert!(event_match(&event, &sub_pattern(&event)));
    let name = event.get("event").and_then(Value::as_str);
    let filter = EventFilter::new(name, Some(pattern.clone()));
    assert_eq!(filter.matches(&event), event_match(&event, &pattern));
});
