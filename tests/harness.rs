//! What test harnesses need: failure artifacts, capability probes and
//! migration in one call, against real QEMUs.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use qemu_machine::{migrate, probe, Capability, Config, Error, Machine};
use serde_json::json;

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn artifacts_after_a_normal_run() {
    let dir = scratch_dir();
    let mut config = pc_with_console();
    config.qmp_trace(dir.path().join("trace.log"));
    let m = Machine::new(config);
    assert!(matches!(
        m.save_artifacts(dir.path().join("early")),
        Err(Error::State(_))
    ));
    m.launch().unwrap();
    m.command("stop", None, SHORT).unwrap();
    // Taken from the queue: the events file still has it.
    m.event_wait(Some("STOP"), None, SHORT).unwrap();
    m.shutdown(SHORT).unwrap();
    let out = dir.path().join("artifacts");
    m.save_artifacts(&out).unwrap();
    let mode = std::fs::metadata(&out).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o700
    );
    assert!(read(&out, "events.jsonl").contains("\"STOP\""));
    let trace = read(&out, "qmp-trace.log");
    assert!(trace.contains(r#">> {"execute":"stop"}"#), "{trace}");
    assert!(read(&out, "command-line.txt").contains("-machine pc"));
    assert!(read(&out, "status.txt").contains("exited with status 0"));
    assert!(out.join("qemu.log").exists());
    assert!(out.join("console.log").exists());
    // A second call overwrites.
    m.save_artifacts(&out).unwrap();
}

/// A `pc` running only its firmware, with a console.
fn pc_with_console() -> Config {
    let mut config = Config::new(qemu_binary());
    config
        .machine_type("pc")
        .args(["-accel", "tcg", "-nodefaults"])
        .console(None, 0)
        .unwrap();
    config
}

#[test]
fn artifacts_after_a_failed_launch_and_a_kill() {
    let dir = scratch_dir();
    let mut config = none_config();
    config.arg("-no-such-option");
    let m = Machine::new(config);
    assert!(m.launch().is_err());
    m.save_artifacts(dir.path()).unwrap();
    assert!(read(dir.path(), "qemu.log").contains("no-such-option"));
    assert!(read(dir.path(), "status.txt").contains("launch failed"));
    assert!(read(dir.path(), "command-line.txt").contains("-no-such-option"));

    let m = launched_none();
    signal(m.pid().unwrap(), libc::SIGKILL);
    assert!(m.command("query-status", None, SHORT).is_err());
    let killed = dir.path().join("killed");
    m.save_artifacts(&killed).unwrap();
    let status = read(&killed, "status.txt");
    assert!(status.contains("signal 9"), "{status}");
    let _ = m.shutdown(SHORT);
}

#[test]
fn artifacts_mid_run_from_another_thread() {
    let dir = scratch_dir();
    let m = Arc::new(launched_none());
    let done = Arc::new(AtomicBool::new(false));
    let worker = {
        let (m, done) = (Arc::clone(&m), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                m.command("stop", None, SHORT).unwrap();
                m.command("cont", None, SHORT).unwrap();
            }
        })
    };
    for i in 0..10 {
        let out = dir.path().join(format!("snapshot-{i}"));
        m.save_artifacts(&out).unwrap();
        assert!(read(&out, "status.txt").starts_with("running"));
        std::thread::sleep(Duration::from_millis(20));
    }
    done.store(true, Ordering::SeqCst);
    worker.join().unwrap();
    let last = dir.path().join("last");
    m.save_artifacts(&last).unwrap();
    assert!(read(&last, "events.jsonl").contains("\"RESUME\""));
    m.shutdown(SHORT).unwrap();
}

#[test]
fn probes_answer_from_one_qemu_per_binary() {
    let dir = scratch_dir();
    // A wrapper that counts how often it is started.
    let counter = dir.path().join("starts");
    let binary = dir.path().join("counting-qemu");
    std::fs::write(
        &binary,
        format!(
            "#!/bin/sh\necho started >> {}\nexec {} \"$@\"\n",
            counter.display(),
            qemu_binary()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let binary = binary.to_str().unwrap();
    let ask = |what, name| probe(binary, what, name, SHORT).unwrap();
    assert!(ask(Capability::Machine, "pc"), "an alias counts");
    assert!(ask(Capability::Machine, "pc-i440fx-7.2"));
    assert!(!ask(Capability::Machine, "nonesuch"));
    assert!(ask(Capability::Device, "virtio-serial-pci"));
    assert!(ask(Capability::Accel, "tcg"));
    assert!(ask(Capability::Cpu, "qemu64"));
    assert!(ask(Capability::Command, "query-status"));
    assert!(!ask(Capability::Command, "no-such-command"));
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap().lines().count(),
        1,
        "one QEMU answered everything"
    );
    let err = probe("/no/such/qemu", Capability::Machine, "pc", SHORT).unwrap_err();
    assert!(matches!(err, Error::Launch(_)), "{err}");
    assert!("gadget".parse::<Capability>().is_err());
}

fn pc_for_migration(incoming: bool) -> Config {
    let mut config = Config::new(qemu_binary());
    config
        .machine_type("pc")
        .args(["-accel", "tcg", "-nodefaults", "-m", "64"]);
    if incoming {
        config.args(["-incoming", "defer"]);
    }
    config
}

#[test]
fn migration_in_one_call() {
    let src = Machine::new(pc_for_migration(false));
    let dst = Machine::new(pc_for_migration(true));
    src.launch().unwrap();
    dst.launch().unwrap();
    migrate(&src, &dst, SHORT).unwrap();
    assert_eq!(
        dst.command("query-status", None, SHORT).unwrap()["status"],
        "running"
    );
    assert_eq!(
        src.command("query-status", None, SHORT).unwrap()["status"],
        "postmigrate"
    );
    // The machines' own queues keep the MIGRATION events.
    assert!(dst
        .event_wait(
            Some("MIGRATION"),
            Some(&json!({"data": {"status": "completed"}})),
            ms(0)
        )
        .is_ok());
    src.shutdown(SHORT).unwrap();
    dst.shutdown(SHORT).unwrap();
}

#[test]
fn migration_between_different_machine_types_fails_with_both_statuses() {
    let src = Machine::new(pc_for_migration(false));
    let mut config = pc_for_migration(true);
    config.machine_type("q35");
    let dst = Machine::new(config);
    src.launch().unwrap();
    dst.launch().unwrap();
    let err = migrate(&src, &dst, SHORT).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Command { .. } | Error::Disconnected(_)),
        "{err}"
    );
    assert!(msg.contains("source: "), "{msg}");
    assert!(msg.contains("destination: "), "{msg}");
    assert!(
        msg.contains("Machine type received"),
        "QEMU's own words: {msg}"
    );
    // The source carries on.
    let t = Instant::now();
    loop {
        let status = src.command("query-status", None, SHORT).unwrap();
        if status["status"] == "running" {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{status}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = dst.shutdown(SHORT);
    src.shutdown(SHORT).unwrap();
}

#[test]
fn a_source_killed_mid_migration_ends_the_call_at_once() {
    let src = Arc::new(Machine::new(pc_for_migration(false)));
    let dst = Arc::new(Machine::new(pc_for_migration(true)));
    src.launch().unwrap();
    dst.launch().unwrap();
    // Slow enough to be caught in the middle: even its zero pages take
    // seconds at 10 kB/s.
    src.command(
        "migrate-set-parameters",
        Some(&json!({"max-bandwidth": 10_000})),
        SHORT,
    )
    .unwrap();
    let call = {
        let (src, dst) = (Arc::clone(&src), Arc::clone(&dst));
        std::thread::spawn(move || migrate(&src, &dst, Some(Duration::from_secs(60))))
    };
    std::thread::sleep(Duration::from_millis(700));
    let t = Instant::now();
    signal(src.pid().unwrap(), libc::SIGKILL);
    let err = call.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::Disconnected(_)), "{err}");
    assert!(
        t.elapsed() < slack(Duration::from_secs(1)),
        "{:?}",
        t.elapsed()
    );
    let _ = src.shutdown(SHORT);
    let _ = dst.shutdown(SHORT);
}

/// A running guest migrated: afterwards it answers on the destination's
/// console.
#[test]
fn a_running_guest_migrates_and_answers_on_the_destination() {
    let src = booted_guest(guest_config());
    let mut config = guest_config();
    config.args(["-incoming", "defer"]);
    let dst = Machine::new(config);
    dst.launch().unwrap();
    src.console_exec("echo before-$((6*7))", "before-42", None, BOOT)
        .unwrap();
    migrate(&src, &dst, Some(Duration::from_secs(60))).unwrap();
    dst.console_exec("echo after-$((6*7))", "after-42", None, BOOT)
        .unwrap();
    src.shutdown(SHORT).unwrap();
    dst.shutdown(SHORT).unwrap();
}
