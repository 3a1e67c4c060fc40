//! The guest agent against the real test guest running Debian's qemu-ga,
//! on both channel types. (Faults a real agent cannot produce on demand
//! are in `faults.rs`, against a fake agent.)

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use qemu_machine::{Config, Error, Machine};
use serde_json::json;

const AGENT: Option<Duration> = Some(Duration::from_secs(60));

/// The guest with an agent channel (`None`: virtio-serial).
fn agent_config(device: Option<&str>) -> Config {
    let mut config = guest_config();
    config.agent(device).unwrap();
    config
}

fn booted_with_agent(device: Option<&str>) -> Machine {
    let m = booted_guest(agent_config(device));
    m.agent_wait_ready(AGENT).expect("the agent answers");
    m
}

/// The kernel release the test guest runs (from the package name).
fn kernel_release() -> String {
    let package = std::fs::read_to_string(guest_dir().join("kernel-package")).unwrap();
    package
        .trim()
        .strip_prefix("linux-image-")
        .unwrap()
        .to_string()
}

fn exec_checks(m: &Machine) {
    let uname = m.agent_exec(&["uname", "-r"], None, AGENT).unwrap();
    assert_eq!(uname.exit_code, 0);
    assert_eq!(
        String::from_utf8(uname.stdout).unwrap().trim(),
        kernel_release()
    );

    let split = m
        .agent_exec(&["sh", "-c", "echo out; echo err >&2; exit 3"], None, AGENT)
        .unwrap();
    assert_eq!(split.exit_code, 3);
    assert_eq!(split.stdout, b"out\n");
    assert_eq!(split.stderr, b"err\n");
    assert!(!split.truncated);

    let killed = m
        .agent_exec(&["sh", "-c", "kill -9 $$"], None, AGENT)
        .unwrap();
    assert_eq!(killed.exit_code, -9);

    let input = b"any\0bytes\xff\n".to_vec();
    let cat = m.agent_exec(&["cat"], Some(&input), AGENT).unwrap();
    assert_eq!(cat.stdout, input);

    let info = m.agent_command("guest-info", None, AGENT).unwrap();
    let names: Vec<&str> = info["supported_commands"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(names.contains(&"guest-exec"), "{names:?}");

    let err = m.agent_file_read("/no/such/file", AGENT).unwrap_err();
    let Error::Command { class, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(class, "GenericError");
}

#[test]
fn exec_and_errors_over_virtio_serial() {
    let m = booted_with_agent(None);
    exec_checks(&m);
    m.shutdown(SHORT).unwrap();
}

#[test]
fn exec_and_errors_over_an_isa_serial_port() {
    let m = booted_with_agent(Some("isa-serial"));
    exec_checks(&m);
    m.shutdown(SHORT).unwrap();
}

#[test]
fn files_and_binary_output_of_a_mebibyte() {
    let m = booted_with_agent(None);
    let data = noise(1 << 20, 42);
    let t = Instant::now();
    m.agent_file_write("/tmp/blob", &data, AGENT).unwrap();
    let wrote = t.elapsed();
    let t = Instant::now();
    assert_eq!(m.agent_file_read("/tmp/blob", AGENT).unwrap(), data);
    let read = t.elapsed();
    let t = Instant::now();
    let cat = m.agent_exec(&["cat", "/tmp/blob"], None, AGENT).unwrap();
    assert_eq!(cat.exit_code, 0);
    assert!(cat.stdout == data, "1 MiB of binary output, byte-exact");
    eprintln!(
        "1 MiB through the agent: write {wrote:?}, read {read:?}, exec output {:?}",
        t.elapsed()
    );
    m.shutdown(SHORT).unwrap();
}

#[test]
fn a_call_right_after_launch_waits_for_the_agent() {
    let m = Machine::new(agent_config(None));
    m.launch().unwrap();
    let t = Instant::now();
    let out = m.agent_exec(&["echo", "early"], None, AGENT).unwrap();
    assert_eq!(out.stdout, b"early\n");
    eprintln!("first agent call answered {:?} after launch", t.elapsed());
    m.shutdown(SHORT).unwrap();
}

#[test]
fn no_agent_is_a_timeout_that_says_so() {
    // A guest that never runs (-S): nobody will ever answer.
    let mut config = Config::new(qemu_binary());
    config
        .machine_type("pc")
        .args(["-accel", "tcg", "-nodefaults", "-S"])
        .agent(None)
        .unwrap();
    let m = Machine::new(config);
    m.launch().unwrap();
    let t = Instant::now();
    let err = m.agent_wait_ready(ms(1500)).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(err.to_string().contains("no guest agent answered"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(3));
    let err = m.agent_exec(&["true"], None, ms(500)).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    m.shutdown(SHORT).unwrap();
}

#[test]
fn a_stopped_then_restarted_agent_is_resynchronized() {
    let m = booted_with_agent(None);
    // The agent stops in the middle of things: the call times out.
    m.console_exec(
        "killall -STOP qemu-ga; echo STOPPED-$((6*7))",
        "STOPPED-42",
        None,
        BOOT,
    )
    .unwrap();
    let err = m.agent_command("guest-info", None, ms(1000)).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    // A new agent: the next call resyncs; no stale reply is taken.
    m.console_exec(
        "killall -9 qemu-ga; start-agent; echo RESTARTED-$?",
        "RESTARTED-0",
        None,
        BOOT,
    )
    .unwrap();
    let out = m.agent_exec(&["echo", "fresh"], None, AGENT).unwrap();
    assert_eq!(out.stdout, b"fresh\n");
    let info = m.agent_command("guest-info", None, AGENT).unwrap();
    assert!(info["version"].is_string(), "{info}");
    m.shutdown(SHORT).unwrap();
}

#[test]
fn qemu_killed_during_an_agent_call_disconnects_at_once() {
    let m = Arc::new(booted_with_agent(None));
    let pid = m.pid().unwrap();
    let call = {
        let m = Arc::clone(&m);
        std::thread::spawn(move || m.agent_exec(&["sleep", "30"], None, AGENT))
    };
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    signal(pid, libc::SIGKILL);
    let err = call.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::Disconnected(_)), "{err}");
    assert!(
        t.elapsed() < slack(Duration::from_secs(1)),
        "{:?}",
        t.elapsed()
    );
    let _ = m.shutdown(SHORT);
}

#[test]
fn two_threads_exec_at_once_and_each_gets_its_own_output() {
    let m = Arc::new(booted_with_agent(Some("isa-serial")));
    let workers: Vec<_> = (0..2)
        .map(|t| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                for i in 0..5 {
                    let word = format!("thread{t}-{i}");
                    let out = m
                        .agent_exec(
                            &["sh", "-c", &format!("sleep 0.1; echo {word}")],
                            None,
                            AGENT,
                        )
                        .unwrap();
                    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), word);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    m.shutdown(SHORT).unwrap();
}

#[test]
fn guest_shutdown_returns_once_the_guest_is_down() {
    let m = booted_with_agent(None);
    assert_eq!(
        m.agent_command("guest-shutdown", None, AGENT).unwrap(),
        json!({})
    );
    m.wait(SHORT).unwrap();
    assert_eq!(m.exit_status(), Some(qemu_machine::ExitStatus::Exited(0)));
    let shutdown = m
        .event_wait(
            Some("SHUTDOWN"),
            Some(&json!({"data": {"guest": true}})),
            ms(0),
        )
        .unwrap();
    assert_eq!(shutdown["data"]["reason"], "guest-shutdown");
}

#[test]
fn agent_calls_without_a_channel_are_configuration_errors() {
    let m = launched_none();
    assert!(matches!(
        m.agent_wait_ready(ms(0)),
        Err(Error::AddDevice(_))
    ));
    assert!(matches!(
        m.agent_exec(&["true"], None, ms(0)),
        Err(Error::AddDevice(_))
    ));
    assert!(matches!(
        m.agent_exec(&[], None, ms(0)),
        Err(Error::InvalidArgument(_))
    ));
    m.shutdown(SHORT).unwrap();
}
