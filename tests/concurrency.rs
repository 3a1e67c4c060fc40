//! Many machines at once, and several threads on one machine.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use qemu_machine::Machine;

#[test]
fn sixteen_machines_in_sixteen_threads() {
    let workers: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                let m = Machine::new(none_config());
                m.launch().unwrap_or_else(|e| panic!("machine {i}: {e}"));
                for _ in 0..200 {
                    let s = m.command("query-status", None, SHORT).unwrap();
                    assert_eq!(s["status"], "running");
                }
                m.command("stop", None, SHORT).unwrap();
                m.event_wait(Some("STOP"), None, SHORT).unwrap();
                m.shutdown(SHORT).unwrap();
                m.pid()
            })
        })
        .collect();
    for w in workers {
        assert_eq!(w.join().unwrap(), None);
    }
}

#[test]
fn event_waits_and_commands_share_one_machine() {
    let m = Arc::new(launched_none());
    for round in 0..20 {
        let waiter = {
            let m = Arc::clone(&m);
            std::thread::spawn(move || m.event_wait(Some("STOP"), None, SHORT))
        };
        let talker = {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                for _ in 0..50 {
                    m.command("query-status", None, SHORT).unwrap();
                }
            })
        };
        std::thread::sleep(Duration::from_millis(5));
        m.command("stop", None, SHORT).unwrap();
        let ev = waiter
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(ev["event"], "STOP");
        talker.join().unwrap();
        m.command("cont", None, SHORT).unwrap();
        m.event_wait(Some("RESUME"), None, SHORT).unwrap();
    }
    assert!(m.events_take().unwrap().is_empty());
    m.shutdown(SHORT).unwrap();
}

#[test]
fn many_threads_wait_for_different_events_at_once() {
    let m = Arc::new(launched_none());
    let names: [&'static str; 3] = ["STOP", "RESUME", "SHUTDOWN"];
    let waiters: Vec<_> = names
        .into_iter()
        .map(|name| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || m.event_wait(Some(name), None, SHORT))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    m.command("stop", None, SHORT).unwrap();
    m.command("cont", None, SHORT).unwrap();
    m.shutdown(SHORT).unwrap();
    for (w, name) in waiters.into_iter().zip(names) {
        assert_eq!(w.join().unwrap().unwrap()["event"], name);
    }
}
