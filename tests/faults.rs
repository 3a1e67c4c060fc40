//! Fault injection: a fake QMP server for what QEMU cannot do on demand,
//! and real QEMUs killed or stopped at every stage. Nothing may hang,
//! crash or leak; every fault maps to a defined error within its timeout.
//!
//! This test has its own harness (`harness = false`): the binary doubles as
//! the fake QMP server when started with `QM_FAKE_QMP_SCENARIO` set, and it
//! runs its tests with SIGPIPE at its default disposition (Rust binaries
//! normally ignore it), so a write that raised SIGPIPE would kill it.

mod common;
mod fake_agent;
mod fake_qmp;
mod fake_qtest;

use std::os::unix::fs::OpenOptionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use fake_qmp::{Scenario, SCENARIO_ENV};
use qemu_machine::{Config, Error, ExitStatus, Machine};
use serde_json::json;

/// A machine whose "QEMU" is this binary playing `scenario`.
fn fake_machine(scenario: Scenario, launch_timeout_ms: u64) -> Machine {
    let me = std::env::current_exe().unwrap();
    let mut config = Config::new(me.to_str().unwrap());
    // `env` puts the scenario into the fake's environment only.
    config
        .wrapper_arg("env")
        .wrapper_arg(format!("{SCENARIO_ENV}={}", scenario.name()))
        .launch_timeout(Some(Duration::from_millis(launch_timeout_ms)));
    Machine::new(config)
}

fn launched_fake(scenario: Scenario) -> Machine {
    let m = fake_machine(scenario, 10_000);
    m.launch().expect("the fake negotiates");
    m
}

fn assert_reaped_and_clean(m: &Machine) {
    assert!(!m.is_running());
    assert!(m.temp_dir().is_none(), "temporary directory removed");
}

fn elapsed_ms(t: Instant) -> u128 {
    t.elapsed().as_millis()
}

// ---- negotiation faults (fake spawned in place of QEMU) ----

fn negotiation_faults_fail_the_launch() {
    let cases: [(Scenario, &str); 7] = [
        (
            Scenario::NoGreeting,
            "no QMP greeting within 300 ms (received nothing)",
        ),
        (Scenario::MalformedGreeting, "malformed QMP greeting"),
        (Scenario::GarbageGreeting, "invalid JSON"),
        (
            Scenario::CloseBeforeGreeting,
            "closed the QMP connection before the QMP greeting",
        ),
        (
            Scenario::CloseAfterGreeting,
            "before the reply to qmp_capabilities",
        ),
        (
            Scenario::CloseAfterCapabilities,
            "before the reply to qmp_capabilities",
        ),
        (Scenario::RefuseCapabilities, "qmp_capabilities was refused"),
    ];
    for (scenario, needle) in cases {
        let base = scratch_dir();
        let m = fake_machine(scenario, 300);
        m.configure(|c| {
            c.base_temp_dir(base.path());
        })
        .unwrap();
        let t = Instant::now();
        let err = m.launch().unwrap_err();
        assert!(
            elapsed_ms(t) < slack_ms(3000),
            "{scenario:?} took {} ms",
            elapsed_ms(t)
        );
        let Error::Launch(info) = &err else {
            panic!("{scenario:?}: expected Launch, got {err:?}")
        };
        assert!(info.reason.contains(needle), "{scenario:?}: {err}");
        assert!(info.exit_status.is_some(), "{scenario:?}: reaped");
        assert_reaped_and_clean(&m);
        assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 0);
    }
    assert!(child_pids().is_empty(), "{:?}", child_pids());
}

// ---- faults after negotiation ----

fn garbage_is_a_sticky_protocol_error_and_shutdown_cleans_up() {
    for (scenario, needle) in [
        (Scenario::Garbage, "this is not json"),
        (Scenario::InvalidUtf8, "invalid JSON"),
    ] {
        let m = launched_fake(scenario);
        let pid = m.pid().unwrap();
        let err = m.command("query-status", None, SHORT).unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{scenario:?}: {err}");
        assert!(err.to_string().contains(needle), "{scenario:?}: {err}");
        // Sticky: every later call sees it at once.
        let t = Instant::now();
        assert!(matches!(
            m.command("query-status", None, None),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            m.event_wait(Some("X"), None, None),
            Err(Error::Protocol(_))
        ));
        assert!(elapsed_ms(t) < slack_ms(500));
        // The library hung up on the peer; the fake exits when it sees
        // that (QEMU would not), so it may have ended on its own already.
        match m.shutdown(SHORT) {
            Ok(()) => assert_eq!(m.exit_status(), Some(ExitStatus::Exited(0))),
            Err(err) => assert!(matches!(err, Error::AbnormalShutdown(_)), "{err}"),
        }
        assert!(!process_exists(pid));
        assert_reaped_and_clean(&m);
    }
}

fn reply_cut_mid_line_then_close_disconnects() {
    let m = launched_fake(Scenario::CutReply);
    let err = m.command("query-status", None, SHORT).unwrap_err();
    assert!(matches!(err, Error::Disconnected(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("in the middle of a message"), "{msg}");
    assert!(msg.contains("runn"), "says what was received: {msg}");
    assert!(matches!(
        m.shutdown(SHORT),
        Ok(()) | Err(Error::AbnormalShutdown(_))
    ));
    assert_reaped_and_clean(&m);
}

fn a_64_mib_reply_arrives_whole() {
    let m = launched_fake(Scenario::HugeReply);
    let reply = m
        .command("query-huge", None, Some(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(reply["data"].as_str().unwrap().len(), fake_qmp::HUGE);
    // The connection is still in step afterwards.
    assert_eq!(
        m.command("query-status", None, SHORT).unwrap()["running"],
        true
    );
    m.shutdown(SHORT).unwrap();
}

fn a_number_no_f64_holds_is_an_error_not_a_panic() {
    let m = launched_fake(Scenario::HugeNumber);
    let err = m.command("query-x", None, SHORT).unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err}");
    assert!(err.to_string().contains("1e999"), "{err}");
    // Only that reply: the connection is still in step.
    assert_eq!(
        m.command("query-status", None, SHORT).unwrap()["running"],
        true
    );
    m.shutdown(SHORT).unwrap();
    // As text (the C API's path) the reply arrives as QEMU sent it.
    let m = launched_fake(Scenario::HugeNumber);
    assert_eq!(
        m.command_text("query-x", None, SHORT).unwrap(),
        r#"{"n": 1e999}"#
    );
    m.shutdown(SHORT).unwrap();
}

fn a_reply_to_no_command_is_dropped_and_counted() {
    let m = launched_fake(Scenario::StrayReply);
    // Let the stray reply arrive, and be routed, before the first command
    // goes out. (Replies are matched by order: a reply read while a
    // command is in flight is that command's. QEMU never sends one
    // unasked.)
    std::thread::sleep(Duration::from_millis(100));
    m.dispatch().unwrap();
    let reply = m.command("query-status", None, SHORT).unwrap();
    assert_eq!(reply["status"], "running");
    assert_eq!(m.stray_replies(), 1);
    m.shutdown(SHORT).unwrap();
}

/// Item 8 of the hardening issue: QEMU's error without id for input its
/// parser rejects is the reply to the command that carried it; the
/// connection lives on.
fn a_parse_error_belongs_to_its_command() {
    let m = launched_fake(Scenario::Normal);
    let err = m
        .command("x", Some(&json!({"unparseable": true})), SHORT)
        .unwrap_err();
    let Error::Command { class, desc, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(class, "GenericError");
    assert!(desc.contains("JSON parse error"), "{desc}");
    let echo = m.command("after", None, SHORT).unwrap();
    assert_eq!(echo["echo"]["execute"], "after");
    m.shutdown(SHORT).unwrap();
}

/// Replies are matched by order: a reply that comes after its caller gave
/// up takes its command's place and is dropped; the next command gets its
/// own reply.
fn a_late_reply_is_not_taken_for_the_next_command() {
    let m = launched_fake(Scenario::Normal);
    let err = m.command("slow", None, ms(200)).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    let echo = m.command("next", None, SHORT).unwrap();
    assert_eq!(echo["echo"]["execute"], "next", "{echo}");
    assert_eq!(m.stray_replies(), 1);
    // Several threads at once, each gets its own reply.
    let m = Arc::new(m);
    let workers: Vec<_> = (0..8)
        .map(|t| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                for i in 0..50 {
                    let name = format!("t{t}-{i}");
                    let args = json!({"n": i, "t": t});
                    let echo = m.command(&name, Some(&args), SHORT).unwrap();
                    assert_eq!(echo["echo"]["execute"], name.as_str());
                    assert_eq!(echo["echo"]["arguments"], args);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    m.shutdown(SHORT).unwrap();
}

fn events_before_the_greeting_are_queued() {
    let m = launched_fake(Scenario::EventsBeforeGreeting);
    let early = m.events_take().unwrap();
    assert_eq!(early.len(), 2, "{early:?}");
    assert_eq!(early[0]["event"], "EARLY");
    m.shutdown(SHORT).unwrap();
}

fn replies_with_escaped_keys_are_understood() {
    let m = launched_fake(Scenario::EscapedKeys);
    let reply = m.command("query-x", None, SHORT).unwrap();
    assert_eq!(reply["escaped"], true);
    m.shutdown(SHORT).unwrap();
}

/// Item 3: deadlines hold while data keeps arriving.
fn deadlines_hold_under_an_event_flood() {
    let m = launched_fake(Scenario::EventFlood);
    let t = Instant::now();
    let err = m.command("query-status", None, ms(1000)).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(
        elapsed_ms(t) < slack_ms(1500),
        "command took {} ms",
        elapsed_ms(t)
    );
    let t = Instant::now();
    let err = m.event_wait(Some("NEVER"), None, ms(1000)).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(
        elapsed_ms(t) < slack_ms(1500),
        "event wait took {} ms",
        elapsed_ms(t)
    );
    assert!(m.events_dropped() > 0 || !m.events_take().unwrap().is_empty());
    m.kill().unwrap();

    // Launch and attach: negotiation against a peer that floods instead
    // of answering.
    let m = fake_machine(Scenario::NegotiationFlood, 1000);
    let t = Instant::now();
    assert!(matches!(m.launch(), Err(Error::Launch(_))));
    assert!(
        elapsed_ms(t) < slack_ms(1500),
        "launch took {} ms",
        elapsed_ms(t)
    );
    let (port, _server) = fake_qmp::listen_tcp(Scenario::NegotiationFlood);
    let t = Instant::now();
    let err = Machine::attach_tcp("127.0.0.1", port, ms(1000)).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(
        elapsed_ms(t) < slack_ms(1500),
        "attach took {} ms",
        elapsed_ms(t)
    );
}

/// Item 16: an integer beyond 64 bits in arguments given as text reaches
/// QEMU as written.
fn big_integers_are_sent_as_written() {
    let m = launched_fake(Scenario::Normal);
    let args =
        qemu_machine::Arguments::from_text(r#"{"n": 123456789012345678901234567890}"#).unwrap();
    let echo = m.command_text("x", Some(&args), SHORT).unwrap();
    assert!(
        echo.contains("123456789012345678901234567890"),
        "sent as written: {echo}"
    );
    m.shutdown(SHORT).unwrap();
}

/// Item 7: a trace that is a FIFO whose reader exits never raises SIGPIPE
/// (this harness runs with SIGPIPE at its default action: it would die).
fn a_trace_reader_that_exits_raises_no_sigpipe() {
    let dir = scratch_dir();
    let fifo = dir.path().join("trace");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    let reader = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let mut config = none_config();
    config.qmp_trace(&fifo);
    let m = Machine::new(config);
    m.launch().unwrap();
    drop(reader);
    for _ in 0..20 {
        m.command("query-status", None, SHORT).unwrap();
    }
    m.shutdown(SHORT).unwrap();
}

/// A machine whose "QEMU" is this binary playing a guest agent's
/// `scenario` (QMP off).
fn fake_agent_machine(scenario: fake_agent::Scenario) -> Machine {
    let me = std::env::current_exe().unwrap();
    let mut config = Config::new(me.to_str().unwrap());
    config
        .wrapper_arg("env")
        .wrapper_arg(format!("{}={}", fake_agent::SCENARIO_ENV, scenario.name()))
        .qmp(false)
        .agent(Some("isa-serial"))
        .unwrap();
    let m = Machine::new(config);
    m.launch().unwrap();
    m
}

/// The agent's faults: every case a defined status, no hang.
fn agent_faults_have_defined_statuses() {
    use fake_agent::Scenario as A;
    for scenario in [A::Garbage, A::NoSentinel, A::WrongSyncId] {
        let m = fake_agent_machine(scenario);
        let t = Instant::now();
        let err = m.agent_wait_ready(ms(700)).unwrap_err();
        assert!(matches!(err, Error::Timeout(_)), "{scenario:?}: {err}");
        assert!(err.to_string().contains("no guest agent answered"), "{err}");
        assert!(elapsed_ms(t) < slack_ms(1500), "{scenario:?}");
        m.kill().unwrap();
    }
    // Replies split mid-line arrive whole.
    let m = fake_agent_machine(A::SplitReplies);
    let info = m.agent_command("guest-info", None, SHORT).unwrap();
    assert_eq!(info["version"], "fake");
    m.kill().unwrap();
    // A 64 MiB line: a protocol error for that call; the next resyncs.
    let m = fake_agent_machine(A::HugeLine);
    let err = m.agent_command("guest-info", None, Some(Duration::from_secs(60)));
    assert!(matches!(err, Err(Error::Protocol(_))), "{err:?}");
    let info = m.agent_command("guest-info", None, SHORT).unwrap();
    assert_eq!(info["version"], "fake");
    m.kill().unwrap();
    // Syncs answered, commands never: the command times out on time, and
    // the next call resyncs first.
    let m = fake_agent_machine(A::SyncOnly);
    m.agent_wait_ready(SHORT).unwrap();
    let t = Instant::now();
    let err = m.agent_command("guest-info", None, ms(300)).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(elapsed_ms(t) < slack_ms(800));
    m.agent_wait_ready(SHORT).unwrap();
    m.kill().unwrap();
    // Normal: arguments reach the agent as sent.
    let m = fake_agent_machine(A::Normal);
    let echo = m
        .agent_command("guest-x", Some(&json!({"a": 1})), SHORT)
        .unwrap();
    assert_eq!(echo["echo"]["arguments"]["a"], 1);
    m.kill().unwrap();
}

/// A machine whose "QEMU" is this binary playing a qtest `scenario`.
fn fake_qtest_machine(scenario: fake_qtest::Scenario) -> Machine {
    let me = std::env::current_exe().unwrap();
    let mut config = Config::new(me.to_str().unwrap());
    config
        .wrapper_arg("env")
        .wrapper_arg(format!("{}={}", fake_qtest::SCENARIO_ENV, scenario.name()))
        .qmp(false)
        .qtest()
        .qtest_timeout(SHORT);
    let m = Machine::new(config);
    m.launch().unwrap();
    m
}

/// qtest's faults: IRQ lines anywhere never confuse replies; FAIL is a
/// command error; garbage and a cut reply end the channel.
fn qtest_faults_have_defined_statuses() {
    use fake_qtest::Scenario as Q;
    let m = fake_qtest_machine(Q::Interleaved);
    for _ in 0..3 {
        assert_eq!(m.qtest_read(0x10, 1).unwrap(), 0x2a);
    }
    // The last report of each line counts: 3 was raised last, 2 lowered.
    assert!(m.qtest_get_irq(3).unwrap());
    assert!(!m.qtest_get_irq(2).unwrap());
    let err = m.qtest_raw("fail").unwrap_err();
    let Error::Command { class, desc, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(class, "FAIL");
    assert!(desc.contains("Unknown command"), "{desc}");
    assert_eq!(m.qtest_raw("anything").unwrap(), "OK");
    m.kill().unwrap();

    let m = fake_qtest_machine(Q::Garbage);
    let err = m.qtest_read(0, 1).unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err}");
    assert!(err.to_string().contains("this is not qtest"), "{err}");
    assert!(matches!(m.qtest_read(0, 1), Err(Error::Protocol(_))));
    m.kill().unwrap();

    let m = fake_qtest_machine(Q::CutReply);
    let err = m.qtest_read(0, 1).unwrap_err();
    assert!(matches!(err, Error::Disconnected(_)), "{err}");
    assert!(err.to_string().contains("OK 0x00"), "{err}");
    m.kill().unwrap();
}

/// A listener whose queue is full drops and counts; a listener that keeps
/// up is unaffected.
fn a_full_listener_drops_and_counts_alone() {
    let m = launched_fake(Scenario::EventFlood);
    let idle = m.listen(None).unwrap();
    let busy = m.listen(None).unwrap();
    let t = Instant::now();
    let mut taken = 0usize;
    while idle.dropped() == 0 {
        assert!(elapsed_ms(t) < 30_000, "the idle listener never overflowed");
        taken += busy.take().unwrap().len();
    }
    taken += busy.take().unwrap().len();
    assert!(taken > 65536, "{taken}");
    assert_eq!(
        busy.dropped(),
        0,
        "the listener that keeps up loses nothing"
    );
    assert_eq!(
        idle.take().unwrap().len(),
        65536,
        "the full one keeps its bound"
    );
    m.kill().unwrap();
}

/// This process's resident memory (VmRSS) and peak (VmHWM), in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Item 15: memory is bounded by bytes, not only by event count.
fn memory_stays_bounded_against_big_events_and_endless_lines() {
    let (rss_before, _) = memory_kib();
    let m = launched_fake(Scenario::BigEventFlood);
    // Read the flood until it has overflowed the queue (how long that
    // takes depends on the machine's load), then some more.
    let t = Instant::now();
    let mut rounds_after_overflow = 0;
    while rounds_after_overflow < 3 {
        assert!(
            elapsed_ms(t) < 60_000,
            "the flood never overflowed the queue"
        );
        let err = m.event_wait(Some("NEVER"), None, ms(500)).unwrap_err();
        assert!(matches!(err, Error::Timeout(_)), "{err}");
        if m.events_dropped() > 0 {
            rounds_after_overflow += 1;
        }
    }
    let (rss, _) = memory_kib();
    // The queue keeps 16 MiB of event text; allow for the parsed values.
    assert!(
        rss.saturating_sub(rss_before) < 96 << 10,
        "RSS grew from {rss_before} to {rss} KiB"
    );
    m.kill().unwrap();

    let (_, peak_before) = memory_kib();
    let m = launched_fake(Scenario::EndlessLine);
    let err = m
        .command("query-status", None, Some(Duration::from_secs(60)))
        .unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err}");
    assert!(err.to_string().contains("longer than"), "{err}");
    let (_, peak) = memory_kib();
    // The line limit is 128 MiB: the buffer peaks near it, not at twice.
    assert!(
        peak.saturating_sub(peak_before) < 160 << 10,
        "peak grew from {peak_before} to {peak} KiB"
    );
    m.kill().unwrap();
}

fn a_reply_that_never_comes_times_out_on_time() {
    let m = launched_fake(Scenario::NeverReply);
    for timeout in [0u64, 200, 700] {
        let t = Instant::now();
        let err = m.command("query-status", None, ms(timeout)).unwrap_err();
        let took = elapsed_ms(t);
        assert!(matches!(err, Error::Timeout(_)), "{err}");
        assert!(
            err.to_string().contains(&format!("within {timeout} ms")),
            "{err}"
        );
        assert!(
            took >= timeout as u128 && took <= slack_ms(timeout as u128),
            "timeout {timeout} took {took} ms"
        );
    }
    // quit gets no reply either: shutdown kills after its own timeout.
    let t = Instant::now();
    let err = m.shutdown(ms(300)).unwrap_err();
    assert!(matches!(err, Error::AbnormalShutdown(_)), "{err}");
    assert!(elapsed_ms(t) < slack_ms(2000));
    assert_eq!(m.exit_status(), Some(ExitStatus::Signaled(libc::SIGKILL)));
}

fn events_interleaved_with_replies_keep_their_order() {
    let m = launched_fake(Scenario::Interleaved);
    for n in 1..=3 {
        assert_eq!(m.command("query-x", None, SHORT).unwrap()["n"], n);
    }
    let label =
        |e: &serde_json::Value| format!("{}{}", e["event"].as_str().unwrap(), e["data"]["n"]);
    let mut names: Vec<String> = m.events_take().unwrap().iter().map(label).collect();
    // The last AFTER may still be in flight when the reply is in hand.
    if names.len() == 6 {
        let last = m
            .event_wait(Some("AFTER"), Some(&json!({"data": {"n": 3}})), SHORT)
            .unwrap();
        names.push(label(&last));
    }
    assert_eq!(
        names,
        [
            "NEGOTIATING0",
            "BEFORE1",
            "AFTER1",
            "BEFORE2",
            "AFTER2",
            "BEFORE3",
            "AFTER3"
        ]
    );
    m.shutdown(SHORT).unwrap();
}

// ---- the same fake, attached to instead of spawned ----

fn attached_fakes() {
    let dir = scratch_dir();
    type Expected = fn(&Error) -> bool;
    let cases: [(Scenario, Expected); 4] = [
        (Scenario::GarbageGreeting, |e| {
            matches!(e, Error::Protocol(_))
        }),
        (Scenario::CloseAfterGreeting, |e| {
            matches!(e, Error::Disconnected(_))
        }),
        (Scenario::RefuseCapabilities, |e| {
            matches!(e, Error::Protocol(_))
        }),
        (Scenario::NoGreeting, |e| matches!(e, Error::Timeout(_))),
    ];
    for (i, (scenario, expected)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("fake{i}.sock"));
        let _server = fake_qmp::listen(&path, scenario);
        let t = Instant::now();
        let err = Machine::attach_unix(&path, ms(300)).unwrap_err();
        assert!(expected(&err), "{scenario:?}: {err:?}");
        assert!(elapsed_ms(t) < slack_ms(2000));
    }
    let path = dir.path().join("never.sock");
    let _server = fake_qmp::listen(&path, Scenario::NeverReply);
    let m = Machine::attach_unix(&path, SHORT).unwrap();
    let t = Instant::now();
    assert!(matches!(
        m.command("query-status", None, ms(300)),
        Err(Error::Timeout(_))
    ));
    assert!(elapsed_ms(t) < slack_ms(600));
    // The fake never quits: shutdown times out, and only disconnects.
    assert!(matches!(m.shutdown(ms(200)), Err(Error::Timeout(_))));

    let path = dir.path().join("interleaved.sock");
    let server = fake_qmp::listen(&path, Scenario::Interleaved);
    let m = Machine::attach_unix(&path, SHORT).unwrap();
    assert_eq!(m.command("query-x", None, SHORT).unwrap()["n"], 1);
    m.event_wait(Some("AFTER"), None, SHORT).unwrap();
    m.shutdown(SHORT).unwrap();
    server.join().unwrap();
}

// ---- real QEMU, killed or stopped at every stage ----

fn sigkill_during_launch() {
    // A shell that waits before exec'ing QEMU: the launch is in progress
    // (no greeting yet) when the kill comes.
    let mut config = none_config();
    delayed_start(&mut config, 0.5);
    let m = Arc::new(Machine::new(config));
    let launcher = {
        let m = Arc::clone(&m);
        std::thread::spawn(move || m.launch())
    };
    let pid = loop {
        if let Some(pid) = m.pid() {
            break pid;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let t = Instant::now();
    signal(pid, libc::SIGKILL);
    let err = launcher.join().unwrap().unwrap_err();
    assert!(elapsed_ms(t) < slack_ms(1000));
    let Error::Launch(info) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(info.exit_status, Some(ExitStatus::Signaled(libc::SIGKILL)));
    assert_reaped_and_clean(&m);

    // qm_kill from another thread interrupts a launch the same way.
    let launcher = {
        let m = Arc::clone(&m);
        std::thread::spawn(move || m.launch())
    };
    while m.pid().is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let t = Instant::now();
    m.kill().unwrap();
    assert!(matches!(launcher.join().unwrap(), Err(Error::Launch(_))));
    assert!(elapsed_ms(t) < slack_ms(1000));
    assert_reaped_and_clean(&m);
}

/// Run `call` in a thread, SIGKILL QEMU after 200 ms, and return what the
/// call returned and how long after the kill it took.
fn kill_during<T: Send + 'static>(
    m: &Arc<Machine>,
    call: impl FnOnce(&Machine) -> T + Send + 'static,
) -> (T, Duration) {
    let pid = m.pid().unwrap();
    let worker = {
        let m = Arc::clone(m);
        std::thread::spawn(move || {
            let r = call(&m);
            (r, Instant::now())
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let killed = Instant::now();
    signal(pid, libc::SIGKILL);
    let (result, done) = worker.join().unwrap();
    (result, done - killed)
}

fn sigkill_during_command_event_wait_and_shutdown() {
    // A command to a stopped QEMU gets no reply until the kill.
    let m = Arc::new(launched_none());
    signal(m.pid().unwrap(), libc::SIGSTOP);
    let (r, after) = kill_during(&m, |m| m.command("query-status", None, None));
    let err = r.unwrap_err();
    assert!(matches!(err, Error::Disconnected(_)), "{err}");
    assert!(err.to_string().contains("signal 9"), "{err}");
    assert!(after < Duration::from_secs(1), "{after:?}");
    assert!(matches!(m.shutdown(SHORT), Err(Error::AbnormalShutdown(_))));

    let m = Arc::new(launched_none());
    let (r, after) = kill_during(&m, |m| m.event_wait(Some("NEVER"), None, None));
    assert!(matches!(r, Err(Error::Disconnected(_))));
    assert!(after < Duration::from_secs(1), "{after:?}");
    m.kill().unwrap();

    // A shutdown waiting on a stopped QEMU returns as soon as it dies.
    let m = Arc::new(launched_none());
    signal(m.pid().unwrap(), libc::SIGSTOP);
    let (r, after) = kill_during(&m, |m| m.shutdown(Some(Duration::from_secs(20))));
    let err = r.unwrap_err();
    assert!(matches!(err, Error::AbnormalShutdown(_)), "{err}");
    assert!(after < Duration::from_secs(1), "{after:?}");
    assert_eq!(m.exit_status(), Some(ExitStatus::Signaled(libc::SIGKILL)));
    assert_reaped_and_clean(&m);
}

fn sigkill_during_console_wait() {
    let m = Arc::new(booted_guest(guest_config()));
    let (r, after) = kill_during(&m, |m| m.console_wait("NEVER-SEEN", None, None));
    assert!(matches!(r, Err(Error::Disconnected(_))));
    assert!(after < Duration::from_secs(1), "{after:?}");
    // Writes to the dead console fail cleanly (and raise no SIGPIPE).
    assert!(matches!(
        m.console_write(b"x\r"),
        Err(Error::Disconnected(_))
    ));
    assert!(matches!(m.shutdown(SHORT), Err(Error::AbnormalShutdown(_))));
}

fn sigstop_then_command_timeout_then_abnormal_shutdown() {
    let m = launched_none();
    let pid = m.pid().unwrap();
    signal(pid, libc::SIGSTOP);
    for timeout in [300u64, 1000] {
        let t = Instant::now();
        let err = m.command("query-status", None, ms(timeout)).unwrap_err();
        let took = elapsed_ms(t);
        assert!(matches!(err, Error::Timeout(_)), "{err}");
        assert!(
            took + 200 >= timeout as u128 && took <= timeout as u128 + 200,
            "timeout {timeout} ms honoured within 200 ms: took {took} ms"
        );
    }
    let err = m.shutdown(ms(300)).unwrap_err();
    assert!(matches!(err, Error::AbnormalShutdown(_)), "{err}");
    assert_eq!(m.exit_status(), Some(ExitStatus::Signaled(libc::SIGKILL)));
    assert!(!child_pids().contains(&pid));
}

fn writes_to_a_dead_qemu_raise_no_sigpipe() {
    // SAFETY: reading the disposition without changing it.
    let disposition = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old);
        old.sa_sigaction
    };
    assert_eq!(
        disposition,
        libc::SIG_DFL,
        "the test must not ignore SIGPIPE"
    );
    for _ in 0..5 {
        let m = launched_none();
        signal(m.pid().unwrap(), libc::SIGKILL);
        // Wait until QEMU is certainly gone, then write to its socket.
        let t = Instant::now();
        while m.is_running() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        for _ in 0..3 {
            assert!(matches!(
                m.command("query-status", None, SHORT),
                Err(Error::Disconnected(_))
            ));
        }
        assert!(matches!(m.shutdown(SHORT), Err(Error::AbnormalShutdown(_))));
    }
}

fn arguments_never_pass_through_a_shell() {
    let dir = scratch_dir();
    let marker = dir.path().join("pwned");
    let name = format!(
        "$(touch {}); `touch {}` 'quoted' \"dq\"",
        marker.display(),
        marker.display()
    );
    let mut config = none_config();
    config.args(["-name", &name]);
    let m = Machine::new(config);
    m.launch().unwrap();
    let reported = m.command("query-name", None, SHORT).unwrap();
    assert_eq!(reported["name"], name.as_str());
    m.shutdown(SHORT).unwrap();
    assert!(!marker.exists(), "no shell ran");
}

/// The environment variable that makes this binary a host process that
/// launches QEMU and then dies by SIGKILL without cleaning up.
const DYING_HOST_ENV: &str = "QM_DYING_HOST";

fn dying_host() {
    let m = launched_none();
    println!("{}", m.pid().unwrap());
    // SAFETY: ends this process on purpose, machine and all.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
}

fn qemu_dies_with_its_host_process() {
    let host = std::process::Command::new(std::env::current_exe().unwrap())
        .env(DYING_HOST_ENV, "1")
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&host.status),
        Some(libc::SIGKILL)
    );
    let pid: i32 = String::from_utf8(host.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let t = Instant::now();
    let gone = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z ") || !s.contains("qemu-system"))
            .unwrap_or(true)
    };
    while !gone() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(gone(), "QEMU {pid} outlived its host process");
}

type Test = (&'static str, fn());

/// Every test, by name.
macro_rules! tests {
    ($($test:ident),* $(,)?) => {
        &[$((stringify!($test), $test as fn())),*]
    };
}

const TESTS: &[Test] = tests![
    negotiation_faults_fail_the_launch,
    garbage_is_a_sticky_protocol_error_and_shutdown_cleans_up,
    reply_cut_mid_line_then_close_disconnects,
    a_64_mib_reply_arrives_whole,
    a_reply_to_no_command_is_dropped_and_counted,
    a_parse_error_belongs_to_its_command,
    a_late_reply_is_not_taken_for_the_next_command,
    events_before_the_greeting_are_queued,
    replies_with_escaped_keys_are_understood,
    deadlines_hold_under_an_event_flood,
    memory_stays_bounded_against_big_events_and_endless_lines,
    big_integers_are_sent_as_written,
    a_trace_reader_that_exits_raises_no_sigpipe,
    agent_faults_have_defined_statuses,
    a_full_listener_drops_and_counts_alone,
    qtest_faults_have_defined_statuses,
    a_number_no_f64_holds_is_an_error_not_a_panic,
    a_reply_that_never_comes_times_out_on_time,
    events_interleaved_with_replies_keep_their_order,
    attached_fakes,
    sigkill_during_launch,
    sigkill_during_command_event_wait_and_shutdown,
    sigkill_during_console_wait,
    sigstop_then_command_timeout_then_abnormal_shutdown,
    writes_to_a_dead_qemu_raise_no_sigpipe,
    arguments_never_pass_through_a_shell,
    qemu_dies_with_its_host_process,
];

fn main() {
    if let Ok(scenario) = std::env::var(SCENARIO_ENV) {
        fake_qmp::serve_spawned(&scenario);
        return;
    }
    if let Ok(scenario) = std::env::var(fake_agent::SCENARIO_ENV) {
        fake_agent::serve_spawned(&scenario);
        return;
    }
    if let Ok(scenario) = std::env::var(fake_qtest::SCENARIO_ENV) {
        fake_qtest::serve_spawned(&scenario);
        return;
    }
    if std::env::var_os(DYING_HOST_ENV).is_some() {
        dying_host();
        return;
    }
    // The Rust runtime ignores SIGPIPE in every binary it starts; a host
    // process (a C test program) would not. Put the default back so that a
    // library write raising SIGPIPE kills this test.
    // SAFETY: setting a disposition before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let selected: Vec<&Test> = TESTS
        .iter()
        .filter(|(name, _)| filter.as_deref().is_none_or(|f| name.contains(f)))
        .collect();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, test) in &selected {
        let t = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(test));
        let verdict = if outcome.is_ok() { "ok" } else { "FAILED" };
        println!(
            "test {name} ... {verdict} ({:.1}s)",
            t.elapsed().as_secs_f64()
        );
        if outcome.is_err() {
            failed.push(*name);
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        selected.len() - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        println!("failures: {failed:?}");
        std::process::exit(1);
    }
}
