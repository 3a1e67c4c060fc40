//! Events for many consumers and for event loops: listeners, the machine's
//! pollable descriptor with `dispatch`, split commands (tickets), the
//! greeting — against a real QEMU. (A listener overflowing under an event
//! flood is in `faults.rs`.)

mod common;

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use qemu_machine::{Error, EventFilter, Machine};
use rustix::event::{PollFd, PollFlags};
use serde_json::Value;

fn filter(name: &str) -> EventFilter {
    EventFilter::new(Some(name), None)
}

fn names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

/// Readable now? (poll with a zero timeout)
fn readable(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
    rustix::event::poll(&mut fds, Some(&rustix::event::Timespec::default())).unwrap() > 0
}

#[test]
fn listeners_and_the_queue_each_see_their_events_in_order() {
    let m = Arc::new(launched_none());
    let stops = m.listen(Some(vec![filter("STOP")])).unwrap();
    let everything = m.listen(None).unwrap();
    // Four threads send commands while the events flow.
    let busy: Vec<_> = (0..4)
        .map(|_| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                for _ in 0..50 {
                    m.command("query-status", None, SHORT).unwrap();
                }
            })
        })
        .collect();
    for _ in 0..20 {
        m.command("stop", None, SHORT).unwrap();
        m.command("cont", None, SHORT).unwrap();
    }
    for b in busy {
        b.join().unwrap();
    }
    let mut all = Vec::new();
    while all.len() < 40 {
        all.push(everything.wait(SHORT).unwrap());
    }
    let expected: Vec<String> = (0..40)
        .map(|i| if i % 2 == 0 { "STOP" } else { "RESUME" }.to_string())
        .collect();
    assert_eq!(names(&all), expected);
    let mut only_stops = Vec::new();
    while only_stops.len() < 20 {
        only_stops.push(stops.wait(SHORT).unwrap());
    }
    assert_eq!(names(&only_stops), vec!["STOP"; 20]);
    // Nothing more, nothing twice.
    assert!(matches!(stops.wait(ms(100)), Err(Error::Timeout(_))));
    assert!(everything.take().unwrap().is_empty());
    // The machine's own queue has its own copy of all of them.
    assert_eq!(names(&m.events_take().unwrap()), expected);
    // A listener made now sees only what comes now.
    let late = m.listen(None).unwrap();
    assert!(late.take().unwrap().is_empty());
    m.command("stop", None, SHORT).unwrap();
    assert_eq!(late.wait(SHORT).unwrap()["event"], "STOP");
    assert_eq!(stops.dropped(), 0);
    m.shutdown(SHORT).unwrap();
}

#[test]
fn a_listener_fd_is_readable_exactly_while_events_are_queued() {
    let m = launched_none();
    let l = m.listen(None).unwrap();
    assert!(!readable(l.fd()));
    m.command("stop", None, SHORT).unwrap();
    // The event is routed by a call on the machine (no reader thread).
    m.dispatch().unwrap();
    let t = Instant::now();
    while !readable(l.fd()) {
        m.dispatch().unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
    }
    assert_eq!(l.take().unwrap().len(), 1);
    assert!(!readable(l.fd()));
    m.shutdown(SHORT).unwrap();
}

#[test]
fn a_listener_lives_across_launches_and_outlives_its_machine() {
    let m = Machine::new(none_config());
    let l = m.listen(Some(vec![filter("STOP")])).unwrap();
    // Before the first launch: a state error, as for the machine's queue.
    assert!(matches!(l.wait(ms(0)), Err(Error::State(_))));
    for _ in 0..2 {
        m.launch().unwrap();
        m.command("stop", None, SHORT).unwrap();
        assert_eq!(l.wait(SHORT).unwrap()["event"], "STOP");
        m.shutdown(SHORT).unwrap();
    }
    // After the run: what is queued, then Disconnected at once.
    m.launch().unwrap();
    m.command("stop", None, SHORT).unwrap();
    m.shutdown(SHORT).unwrap();
    assert_eq!(l.wait(SHORT).unwrap()["event"], "STOP");
    let t = Instant::now();
    assert!(matches!(l.wait(None), Err(Error::Disconnected(_))));
    assert!(t.elapsed() < slack(Duration::from_secs(1)));
    drop(m);
    assert!(matches!(l.wait(None), Err(Error::Disconnected(_))));
}

#[test]
fn closing_a_listener_wakes_its_waiter() {
    let m = launched_none();
    let l = Arc::new(m.listen(None).unwrap());
    let waiter = {
        let l = Arc::clone(&l);
        std::thread::spawn(move || l.wait(None))
    };
    std::thread::sleep(Duration::from_millis(200));
    l.close();
    let err = waiter.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::State(_)), "{err}");
    m.shutdown(SHORT).unwrap();
}

#[test]
fn split_commands_and_tickets() {
    let m = launched_none();
    // Pipelined: all sent, then all received, in any order.
    let tickets: Vec<_> = (0..50)
        .map(|_| m.command_send("query-status", None).unwrap())
        .collect();
    for t in tickets.iter().rev() {
        let reply: Value = serde_json::from_str(&m.command_receive(*t, SHORT).unwrap()).unwrap();
        assert_eq!(reply["return"]["status"], "running");
    }
    // Polling keeps the ticket; the reply is kept for it meanwhile.
    let t = m.command_send("query-status", None).unwrap();
    let mut polls = 0;
    let reply = loop {
        match m.command_receive(t, ms(0)) {
            Ok(reply) => break reply,
            Err(Error::Timeout(why)) => {
                assert!(why.contains("no reply to 'query-status' (ticket"), "{why}");
                polls += 1
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(reply.contains("running"), "{reply} after {polls} polls");
    // Received once only; unknown tickets and other machines' are refused.
    assert!(matches!(
        m.command_receive(t, ms(0)),
        Err(Error::InvalidArgument(_))
    ));
    let other = launched_none();
    let theirs = other.command_send("query-status", None).unwrap();
    assert!(matches!(
        m.command_receive(theirs, ms(0)),
        Err(Error::InvalidArgument(_))
    ));
    other.command_receive(theirs, SHORT).unwrap();
    // The run ending answers every outstanding ticket.
    let pending = m.command_send("query-status", None).unwrap();
    let stopped = m.command_send("stop", None).unwrap();
    m.kill().unwrap();
    for t in [pending, stopped] {
        match m.command_receive(t, SHORT) {
            Err(Error::Disconnected(_)) | Ok(_) => {}
            other => panic!("{other:?}"),
        }
    }
    other.shutdown(SHORT).unwrap();
}

/// A reply routed by another thread's blocking call still wakes the event
/// loop: the loop's descriptor turns readable until it dispatches.
#[test]
fn the_machine_fd_wakes_for_input_another_thread_routed() {
    let m = Arc::new(launched_none());
    let raw = m.poll_fd().unwrap().unwrap();
    // SAFETY: the machine (and so its descriptor) outlives this test body.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    let blocker = {
        let m = Arc::clone(&m);
        std::thread::spawn(move || m.event_wait(Some("NEVER"), None, ms(3000)))
    };
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..3 {
        let ticket = m.command_send("query-status", None).unwrap();
        // The blocked thread leads the read side: it reads and routes the
        // reply while this thread waits as a follower. The socket is
        // drained then; only the routed flag can make the loop's
        // descriptor readable.
        assert!(m
            .command_receive(ticket, ms(5000))
            .unwrap()
            .contains("running"));
        assert!(readable(fd), "the loop was never told of the reply");
        m.dispatch().unwrap();
        assert!(!readable(fd), "readable after dispatch");
    }
    assert!(matches!(blocker.join().unwrap(), Err(Error::Timeout(_))));
    m.shutdown(SHORT).unwrap();
}

#[test]
fn the_greeting_is_kept() {
    let m = launched_none();
    let greeting = m.greeting().unwrap();
    assert!(
        greeting["QMP"]["version"]["qemu"]["major"]
            .as_u64()
            .unwrap()
            >= 7
    );
    assert!(greeting["QMP"]["capabilities"].is_array());
    m.shutdown(SHORT).unwrap();
}

/// An event loop with no other thread drives 8 machines: every command
/// answered, every event delivered; then QEMU is killed mid-loop and every
/// ticket and listener ends within a second.
#[test]
fn one_poll_loop_drives_eight_machines() {
    let machines: Vec<Machine> = (0..8).map(|_| launched_none()).collect();
    let listeners: Vec<_> = machines
        .iter()
        .map(|m| {
            m.listen(Some(vec![filter("STOP"), filter("RESUME")]))
                .unwrap()
        })
        .collect();
    let mut tickets: Vec<Vec<qemu_machine::Ticket>> = machines
        .iter()
        .map(|m| {
            ["stop", "query-status", "cont", "query-status"]
                .iter()
                .map(|c| m.command_send(c, None).unwrap())
                .collect()
        })
        .collect();
    let mut events = vec![Vec::new(); 8];
    let t = Instant::now();
    while tickets.iter().any(|t| !t.is_empty()) || events.iter().any(|e| e.len() < 2) {
        assert!(t.elapsed() < Duration::from_secs(20), "the loop stalled");
        let fds: Vec<i32> = machines
            .iter()
            .map(|m| m.poll_fd().unwrap().unwrap())
            .collect();
        // SAFETY: the machines (and so their descriptors) outlive the loop.
        let borrowed: Vec<BorrowedFd<'_>> = fds
            .iter()
            .map(|&fd| unsafe { BorrowedFd::borrow_raw(fd) })
            .collect();
        let mut polled: Vec<PollFd<'_>> = borrowed
            .iter()
            .map(|fd| PollFd::from_borrowed_fd(*fd, PollFlags::IN))
            .chain(
                listeners
                    .iter()
                    .map(|l| PollFd::from_borrowed_fd(l.fd(), PollFlags::IN)),
            )
            .collect();
        let timeout = rustix::event::Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        rustix::event::poll(&mut polled, Some(&timeout)).unwrap();
        for (i, m) in machines.iter().enumerate() {
            m.dispatch().unwrap();
            tickets[i].retain(|t| match m.command_receive(*t, ms(0)) {
                Ok(reply) => {
                    assert!(reply.starts_with("{\"return\""), "{reply}");
                    false
                }
                Err(Error::Timeout(_)) => true,
                Err(e) => panic!("{e}"),
            });
            events[i].extend(listeners[i].take().unwrap());
        }
    }
    for e in &events {
        assert_eq!(names(e), ["STOP", "RESUME"]);
    }
    // QEMU killed mid-loop: the descriptor fires, everything ends.
    let victim = &machines[3];
    let fd = victim.poll_fd().unwrap().unwrap();
    // Stopped first, so that the command cannot be answered before the end.
    signal(victim.pid().unwrap(), libc::SIGSTOP);
    let pending = victim.command_send("query-status", None).unwrap();
    signal(victim.pid().unwrap(), libc::SIGKILL);
    let t = Instant::now();
    // SAFETY: the machine outlives this borrow.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    while !readable(borrowed) {
        assert!(t.elapsed() < slack(Duration::from_secs(1)));
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut ended = false;
    while !ended {
        ended = matches!(victim.dispatch(), Err(Error::Disconnected(_)));
        assert!(t.elapsed() < slack(Duration::from_secs(1)));
    }
    assert!(matches!(
        victim.command_receive(pending, ms(0)),
        Err(Error::Disconnected(_))
    ));
    assert!(matches!(
        listeners[3].wait(ms(0)),
        Err(Error::Disconnected(_))
    ));
    assert!(t.elapsed() < slack(Duration::from_secs(1)));
    // The descriptor stays readable once the run has ended.
    assert!(readable(borrowed));
    assert!(fd == borrowed.as_raw_fd());
    for m in &machines {
        let _ = m.shutdown(SHORT);
    }
}
