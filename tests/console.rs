//! The serial console against a real Linux guest (Debian's kernel and a
//! busybox initramfs, see scripts/build-guest.sh).

mod common;

use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use qemu_machine::{Error, ExitStatus, Machine};
use serde_json::json;

#[test]
fn boot_exec_and_answers() {
    let m = booted_guest(guest_config());
    // `echo $((6*7))` echoes without "42"; only the answer matches.
    let out = m.console_exec("echo $((6*7))", "42", None, SHORT).unwrap();
    assert!(out.contains("echo $((6*7))"), "{out:?}");
    assert!(out.ends_with("42"), "{out:?}");
    // A prompt has no newline after it and still matches.
    let out = m.console_wait(PROMPT, None, SHORT).unwrap();
    assert!(out.ends_with(PROMPT), "{out:?}");
    let uname = m
        .console_exec("uname -s -m", "x86_64", None, SHORT)
        .unwrap();
    assert!(uname.contains("Linux x86_64"), "{uname:?}");
    m.console_wait(PROMPT, None, SHORT).unwrap();
    // Raw writes and a non-blocking read.
    m.console_write(b"echo raw-$((40+2))\r").unwrap();
    m.console_wait("raw-42", None, SHORT).unwrap();
    m.console_wait(PROMPT, None, SHORT).unwrap();
    // Only what came after the last match (at most the shell's terminal
    // query), and nothing a second time.
    let rest = m.console_read().unwrap();
    assert!(
        !rest.contains("raw-42") && !rest.contains(PROMPT),
        "{rest:?}"
    );
    m.shutdown(SHORT).unwrap();
    // Output stays readable after shutdown; writes do not.
    assert!(matches!(m.console_write(b"x"), Err(Error::State(_))));
    m.console_read().unwrap();
}

#[test]
fn timeout_returns_in_time_with_the_partial_output() {
    let m = booted_guest(guest_config());
    m.console_write(b"echo partial-$((1+1))\r").unwrap();
    m.console_wait("partial-2", None, SHORT).unwrap();
    let t = Instant::now();
    let err = m.console_wait("NEVER-SEEN", None, ms(700)).unwrap_err();
    let took = t.elapsed();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(
        took >= Duration::from_millis(700) && took < slack(Duration::from_millis(2000)),
        "{took:?}"
    );
    // The prompt after the answer is the output seen so far.
    assert!(err.to_string().contains(PROMPT), "{err}");
    // The cursor did not move: the same output is still there.
    assert!(m.console_read().unwrap().contains(PROMPT));
    m.kill().unwrap();
}

#[test]
fn failure_pattern_wins_when_it_comes_first() {
    let m = booted_guest(guest_config());
    let err = m
        .console_exec(
            "echo FAIL-$((1+1)); sleep 1; echo OK-$((1+2))",
            "OK-3",
            Some("FAIL-2"),
            SHORT,
        )
        .unwrap_err();
    match &err {
        Error::ConsoleFailure { pattern, output } => {
            assert_eq!(pattern, "FAIL-2");
            assert!(output.ends_with("FAIL-2"), "{output:?}");
            assert!(!output.contains("OK-3"));
        }
        other => panic!("expected ConsoleFailure, got {other:?}"),
    }
    // The cursor moved past the failure: the success comes next.
    m.console_wait("OK-3", Some("FAIL-2"), SHORT).unwrap();
    m.kill().unwrap();
}

#[test]
fn guest_poweroff_wait_exit_code_and_shutdown_event() {
    let dir = scratch_dir();
    let log = dir.path().join("console.log");
    let mut config = guest_config();
    config.console_log(&log);
    let m = booted_guest(config);
    m.console_exec("echo logged-$((2+2))", "logged-4", None, SHORT)
        .unwrap();
    m.console_write(b"poweroff -f\r").unwrap();
    m.wait(BOOT).expect("QEMU exits after the guest powers off");
    assert_eq!(m.exit_status(), Some(ExitStatus::Exited(0)));
    let ev = m
        .event_wait(
            Some("SHUTDOWN"),
            Some(&json!({"data": {"guest": true}})),
            ms(0),
        )
        .unwrap();
    assert_eq!(ev["data"]["reason"], "guest-shutdown");
    // The log file holds the whole boot, from the kernel's first line.
    let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    let first = text
        .find("Linux version")
        .expect("kernel banner in the log");
    assert!(
        first < 200,
        "the log starts with the boot: {:?}",
        &text[..first]
    );
    for needle in [READY, PROMPT, "logged-4", "poweroff -f"] {
        assert!(
            text.contains(needle),
            "{needle:?} missing from the console log"
        );
    }
    // The in-memory output after the cursor holds the rest.
    assert!(m.console_read().unwrap().contains("poweroff -f"));
}

#[test]
fn killing_qemu_during_a_console_wait_disconnects() {
    let m = Arc::new(booted_guest(guest_config()));
    let pid = m.pid().unwrap();
    let waiter = {
        let m = Arc::clone(&m);
        std::thread::spawn(move || (m.console_wait("NEVER-SEEN", None, None), Instant::now()))
    };
    std::thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    signal(pid, libc::SIGKILL);
    let (result, returned) = waiter.join().unwrap();
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Disconnected(_)), "{err}");
    assert!(err.to_string().contains("signal 9"), "{err}");
    assert!(returned - killed < slack(Duration::from_secs(2)));
    assert!(matches!(m.shutdown(SHORT), Err(Error::AbnormalShutdown(_))));
}

#[test]
fn console_on_a_later_serial_port_and_a_named_device() {
    // console_index 1: one `-serial null` first, so the console is ttyS1.
    let mut config = guest_config_on("ttyS1");
    config.console(None, 1).unwrap();
    let m = booted_guest(config);
    let line = m.command_line().unwrap().join(" ");
    assert!(
        line.contains("-serial null -chardev socket,id=console"),
        "{line}"
    );
    m.console_exec(
        "cat /proc/tty/driver/serial | grep -c uart:16550A",
        "2",
        None,
        SHORT,
    )
    .unwrap();
    m.kill().unwrap();

    let mut config = guest_config();
    config.console(Some("isa-serial"), 0).unwrap();
    let m = booted_guest(config);
    let line = m.command_line().unwrap().join(" ");
    assert!(
        line.contains("-device isa-serial,chardev=console"),
        "{line}"
    );
    m.kill().unwrap();
}

#[test]
fn unread_console_flood_for_30_seconds_still_shuts_down_cleanly() {
    let mut config = guest_config();
    config.console_buffer_limit(1 << 20);
    let m = booted_guest(config);
    // The guest writes without pause; nobody reads for 30 s.
    m.console_write(b"while :; do echo qm-flood-line-0123456789abcdef; done\r")
        .unwrap();
    std::thread::sleep(Duration::from_secs(30));
    assert!(m.is_running());
    assert!(m.console_dropped() > 0, "more than the 1 MiB limit arrived");
    m.command("query-status", None, SHORT).unwrap();
    let t = Instant::now();
    m.shutdown(SHORT).expect("clean shutdown despite the flood");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(m.exit_status(), Some(ExitStatus::Exited(0)));
    let rest = m.console_read().unwrap();
    assert!(
        rest.len() <= (1 << 20) + (64 << 10),
        "bounded: {}",
        rest.len()
    );
    assert!(rest.contains("qm-flood-line"));
}

#[test]
fn console_calls_without_a_console_are_configuration_errors() {
    let m = launched_none();
    assert!(matches!(m.console_read(), Err(Error::AddDevice(_))));
    assert!(matches!(
        m.console_wait("x", None, ms(0)),
        Err(Error::AddDevice(_))
    ));
    let unlaunched = Machine::new(guest_config());
    assert!(matches!(unlaunched.console_read(), Err(Error::State(_))));
    m.shutdown(SHORT).unwrap();
}

/// Hardening item 14: console output with NUL bytes round-trips through
/// the byte-exact calls.
#[test]
fn console_output_with_nul_bytes_round_trips() {
    let m = booted_guest(guest_config());
    m.console_write(b"printf 'x\\000y\\000z'; echo\r").unwrap();
    let out = m.console_wait_bytes(PROMPT, None, BOOT).unwrap();
    assert!(
        out.windows(5).any(|w| w == b"x\0y\0z"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    m.console_write(b"printf 'p\\000q'; echo\r").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut seen = Vec::new();
    let t = Instant::now();
    while !seen.windows(3).any(|w| w == b"p\0q") && t.elapsed() < Duration::from_secs(30) {
        seen.extend(m.console_read_bytes().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(seen.windows(3).any(|w| w == b"p\0q"), "{seen:?}");
    m.shutdown(SHORT).unwrap();
}

/// Hardening item 7: a console log that is a FIFO whose reader stopped
/// reading never stalls the console (QEMU would block on a full console).
#[test]
fn a_stalled_console_log_reader_never_stalls_the_console() {
    let dir = scratch_dir();
    let fifo = dir.path().join("console.fifo");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    let _reader = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let mut config = guest_config();
    config.console_log(&fifo);
    let m = booted_guest(config);
    // Far more than a pipe holds, then a marker.
    m.console_exec(
        "yes 0123456789 | head -c 400000; echo MARK-$((6*7))",
        "MARK-42",
        None,
        BOOT,
    )
    .unwrap();
    m.shutdown(SHORT).unwrap();
}
