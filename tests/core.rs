//! The Rust core against a real `qemu-system-x86_64 -machine none`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use qemu_machine::{Config, Error, EventFilter, ExitStatus, Machine};
use serde_json::json;

#[test]
fn launch_query_status_and_clean_shutdown() {
    let m = launched_none();
    assert!(m.is_running());
    let pid = m.pid().expect("pid while running");
    assert!(process_exists(pid));
    assert_eq!(m.exit_status(), None);

    let status = m.command("query-status", None, SHORT).unwrap();
    assert_eq!(status["status"], "running");
    assert_eq!(status["running"], true);
    // QEMU does not inherit the library threads' blocked signals.
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let blocked = proc_status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    let term_and_int = (1 << (libc::SIGTERM - 1)) | (1 << (libc::SIGINT - 1));
    assert_eq!(blocked & term_and_int, 0, "SigBlk {blocked:x}");
    let greeting = m.greeting().unwrap();
    assert!(
        greeting["QMP"]["version"]["qemu"]["major"]
            .as_u64()
            .unwrap()
            >= 7
    );

    m.shutdown(SHORT).expect("graceful shutdown");
    assert!(!m.is_running());
    assert_eq!(m.pid(), None);
    assert_eq!(m.exit_status(), Some(ExitStatus::Exited(0)));
    assert!(!process_exists(pid), "QEMU {pid} was not reaped");
    // Shutting down twice is a no-op.
    m.shutdown(SHORT).unwrap();
}

#[test]
fn unknown_command_raw_reply_and_command_error() {
    let m = launched_none();
    let reply = m.qmp("no-such-command", None, SHORT).unwrap();
    assert_eq!(reply["error"]["class"], "CommandNotFound");
    assert!(
        reply.get("id").is_none(),
        "the library's id is stripped: {reply}"
    );

    match m.command("no-such-command", None, SHORT) {
        Err(Error::Command {
            command,
            class,
            desc,
        }) => {
            assert_eq!(command, "no-such-command");
            assert_eq!(class, "CommandNotFound");
            assert!(desc.contains("no-such-command"), "{desc}");
        }
        other => panic!("expected a Command error, got {other:?}"),
    }
    // A reply to a good command is only the return value.
    let ok = m.qmp("query-status", None, SHORT).unwrap();
    assert!(ok.get("return").is_some());
    // Arguments must be an object.
    assert!(matches!(
        m.qmp("query-status", Some(&json!([1])), SHORT),
        Err(Error::InvalidArgument(_))
    ));
    m.shutdown(SHORT).unwrap();
}

#[test]
fn stop_and_cont_produce_events() {
    let m = launched_none();
    m.command("stop", None, SHORT).unwrap();
    let stop = m.event_wait(Some("STOP"), None, SHORT).unwrap();
    assert_eq!(stop["event"], "STOP");
    assert!(stop["timestamp"]["seconds"].is_u64());
    assert_eq!(
        m.command("query-status", None, SHORT).unwrap()["status"],
        "paused"
    );
    m.command("cont", None, SHORT).unwrap();
    m.event_wait(Some("RESUME"), None, SHORT).unwrap();
    m.shutdown(SHORT).unwrap();
}

#[test]
fn event_wait_with_null_wildcard_and_several_filters() {
    let m = launched_none();
    m.command("stop", None, SHORT).unwrap();
    m.command("cont", None, SHORT).unwrap();
    m.command("stop", None, SHORT).unwrap();
    // The timestamp key must exist; its value does not matter.
    let ev = m
        .event_wait(Some("RESUME"), Some(&json!({"timestamp": null})), SHORT)
        .unwrap();
    assert_eq!(ev["event"], "RESUME");
    // A pattern that does not fit leaves events queued.
    let err = m
        .event_wait(Some("STOP"), Some(&json!({"data": {"x": null}})), ms(50))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    // Several filters: the first queued event passing any of them.
    let filters = [
        EventFilter::new(Some("RESUME"), None),
        EventFilter::new(Some("STOP"), Some(json!({"timestamp": {"seconds": null}}))),
    ];
    let first = m.events_wait(&filters, SHORT).unwrap();
    assert_eq!(first["event"], "STOP");
    let second = m.events_wait(&filters, SHORT).unwrap();
    assert_eq!(second["event"], "STOP");
    assert!(m.events_take().unwrap().is_empty());
    m.shutdown(SHORT).unwrap();
}

#[test]
fn wait_timeouts_do_not_consume_other_events() {
    let m = launched_none();
    m.command("stop", None, SHORT).unwrap();
    m.command("cont", None, SHORT).unwrap();
    // Both events are in by the time the replies are.
    let t = Instant::now();
    let err = m
        .event_wait(Some("DEVICE_DELETED"), None, ms(0))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(
        err.to_string().contains("2 other events are queued"),
        "{err}"
    );
    let err = m
        .event_wait(Some("DEVICE_DELETED"), None, ms(200))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)));
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    let names: Vec<_> = m
        .events_take()
        .unwrap()
        .into_iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["STOP", "RESUME"]);
    // Polling an empty queue.
    assert!(matches!(m.event_get(ms(0)), Err(Error::Timeout(_))));
    m.shutdown(SHORT).unwrap();
}

#[test]
fn event_order_is_kept_while_commands_run() {
    let m = launched_none();
    for _ in 0..20 {
        m.command("stop", None, SHORT).unwrap();
        m.command("query-status", None, SHORT).unwrap();
        m.command("cont", None, SHORT).unwrap();
    }
    let mut names = Vec::new();
    while let Ok(ev) = m.event_get(ms(0)) {
        names.push(ev["event"].as_str().unwrap().to_string());
    }
    let expected: Vec<String> = (0..20)
        .flat_map(|_| ["STOP".to_string(), "RESUME".to_string()])
        .collect();
    assert_eq!(names, expected);
    m.shutdown(SHORT).unwrap();
}

#[test]
fn quit_via_command_then_shutdown_only_waits() {
    let m = launched_none();
    assert_eq!(m.command("quit", None, SHORT).unwrap(), json!({}));
    let t = Instant::now();
    m.shutdown(SHORT).expect("shutdown after quit");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(m.exit_status(), Some(ExitStatus::Exited(0)));
    let shutdown = m.event_wait(Some("SHUTDOWN"), None, ms(0)).unwrap();
    assert_eq!(shutdown["data"]["reason"], "host-qmp-quit");
}

#[test]
fn shutdown_of_a_stopped_process_is_abnormal_and_reaps() {
    let m = launched_none();
    let pid = m.pid().unwrap();
    signal(pid, libc::SIGSTOP);
    let t = Instant::now();
    let err = m.shutdown(ms(500)).unwrap_err();
    let took = t.elapsed();
    assert!(matches!(err, Error::AbnormalShutdown(_)), "{err}");
    assert!(err.to_string().contains("quit"), "{err}");
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(m.exit_status(), Some(ExitStatus::Signaled(libc::SIGKILL)));
    assert!(!process_exists(pid), "QEMU {pid} was not reaped");
    assert!(!m.is_running());
}

#[test]
fn sigkill_during_event_wait_disconnects_promptly() {
    let m = Arc::new(launched_none());
    let pid = m.pid().unwrap();
    let waiter = {
        let m = Arc::clone(&m);
        std::thread::spawn(move || {
            let r = m.event_wait(Some("NEVER"), None, None);
            (r, Instant::now())
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let killed_at = Instant::now();
    signal(pid, libc::SIGKILL);
    let (result, returned_at) = waiter.join().unwrap();
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Disconnected(_)), "{err}");
    assert!(returned_at - killed_at < slack(Duration::from_secs(1)));
    let msg = err.to_string();
    assert!(msg.contains("signal 9"), "{msg}");
    // Later calls fail the same way, and promptly.
    let t = Instant::now();
    let err = m.command("query-status", None, None).unwrap_err();
    assert!(matches!(err, Error::Disconnected(_)), "{err}");
    assert!(t.elapsed() < slack(Duration::from_secs(1)));
    assert!(!m.is_running());
    let err = m.shutdown(SHORT).unwrap_err();
    assert!(matches!(err, Error::AbnormalShutdown(_)), "{err}");
    assert!(err.to_string().contains("signal 9"), "{err}");
}

#[test]
fn disconnect_message_has_the_log_tail() {
    let mut config = none_config();
    // Something QEMU prints on stderr while running.
    config.args(["-device", "nonexistent-but-harmless-check"]);
    let m = Machine::new(config);
    // The bad device makes QEMU exit at startup: a launch failure, whose
    // output holds QEMU's own message.
    let err = m.launch().unwrap_err();
    let Error::Launch(info) = &err else {
        panic!("expected Launch, got {err:?}")
    };
    assert!(
        info.output.contains("nonexistent-but-harmless-check"),
        "{err}"
    );
    assert_eq!(info.exit_status, Some(ExitStatus::Exited(1)));
}

#[test]
fn launch_failure_bad_option_reports_everything_at_once() {
    let mut config = none_config();
    config
        .arg("-bogus")
        .launch_timeout(Some(Duration::from_secs(30)));
    let m = Machine::new(config);
    let t = Instant::now();
    let err = m.launch().unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "must not wait for the timeout"
    );
    let Error::Launch(info) = &err else {
        panic!("expected Launch, got {err:?}")
    };
    assert_eq!(info.exit_status, Some(ExitStatus::Exited(1)));
    assert!(
        info.output.contains("-bogus: invalid option"),
        "{}",
        info.output
    );
    assert!(info.command_line.contains("qemu-system-x86_64"));
    assert!(info.command_line.contains("-bogus"));
    let text = err.to_string();
    for part in [
        "exit status",
        "exited with status 1",
        "-bogus: invalid option",
        "-machine none",
    ] {
        assert!(text.contains(part), "{part:?} missing from:\n{text}");
    }
    assert!(!m.is_running());
    assert_eq!(m.exit_status(), Some(ExitStatus::Exited(1)));
    assert!(m.log().unwrap().contains("invalid option"));
}

#[test]
fn launch_failure_missing_binary() {
    let m = Machine::new(Config::new("/nonexistent/qemu-system-x86_64"));
    let err = m.launch().unwrap_err();
    let Error::Launch(info) = &err else {
        panic!("expected Launch, got {err:?}")
    };
    assert_eq!(info.exit_status, None);
    assert!(info.reason.contains("No such file"), "{err}");
    assert!(info
        .command_line
        .starts_with("/nonexistent/qemu-system-x86_64"));
    assert!(m.exit_status().is_none());
}

#[test]
fn launch_failure_no_greeting_times_out_and_kills() {
    let dir = scratch_dir();
    let script = dir.path().join("silent-qemu");
    std::fs::write(&script, "#!/bin/sh\nexec sleep 60\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut config = Config::new(script.to_str().unwrap());
    config.launch_timeout(Some(Duration::from_millis(300)));
    let m = Machine::new(config);
    let t = Instant::now();
    let err = m.launch().unwrap_err();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let Error::Launch(info) = &err else {
        panic!("expected Launch, got {err:?}")
    };
    assert!(info.reason.contains("greeting"), "{err}");
    assert!(info.reason.contains("within 300 ms"), "{err}");
    assert_eq!(info.exit_status, Some(ExitStatus::Signaled(libc::SIGKILL)));
}

#[test]
fn launch_failure_qemu_exits_early() {
    // A valid command line whose QEMU exits before greeting: -version
    // prints and exits 0.
    let mut config = none_config();
    config.arg("-version");
    let m = Machine::new(config);
    let err = m.launch().unwrap_err();
    let Error::Launch(info) = &err else {
        panic!("expected Launch, got {err:?}")
    };
    assert_eq!(info.exit_status, Some(ExitStatus::Exited(0)));
    assert!(info.output.contains("QEMU emulator version"), "{err}");
}

#[test]
fn relaunch_after_shutdown_and_configure_rules() {
    let m = Machine::new(none_config());
    for round in 0..3 {
        m.launch().unwrap();
        assert!(matches!(m.launch(), Err(Error::State(_))));
        assert!(matches!(
            m.configure(|c| {
                c.arg("-S");
            }),
            Err(Error::State(_))
        ));
        m.command("stop", None, SHORT).unwrap();
        assert_eq!(m.events_take().unwrap().len(), 1, "round {round}");
        m.shutdown(SHORT).unwrap();
        // Events of the finished run stay readable until the next launch.
        let shutdown = m.event_wait(Some("SHUTDOWN"), None, ms(0)).unwrap();
        assert_eq!(shutdown["data"]["guest"], false);
        // A wait the queue cannot satisfy fails at once.
        let t = Instant::now();
        assert!(matches!(
            m.event_wait(Some("STOP"), None, None),
            Err(Error::Disconnected(_))
        ));
        assert!(t.elapsed() < slack(Duration::from_secs(1)));
        assert!(matches!(
            m.command("query-status", None, SHORT),
            Err(Error::State(_))
        ));
        m.configure(|c| {
            c.name(format!("round-{round}")).unwrap();
        })
        .unwrap();
    }
}

#[test]
fn temp_dir_is_private_and_removed() {
    let base = scratch_dir();
    let mut config = none_config();
    config.base_temp_dir(base.path());
    let m = Machine::new(config);
    m.launch().unwrap();
    let dir = m.temp_dir().unwrap();
    assert!(dir.starts_with(base.path()));
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert!(std::fs::read_dir(&dir).unwrap().count() >= 1, "log inside");
    m.shutdown(SHORT).unwrap();
    assert!(!dir.exists());
    assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 0);
    // The log survives in memory.
    m.log().unwrap();
}

#[test]
fn log_dir_keeps_the_log_file() {
    let logs = scratch_dir();
    let mut config = none_config();
    config.log_dir(logs.path()).name("vm1").unwrap();
    config.args(["-d", "help"]);
    let m = Machine::new(config);
    let _ = m.launch();
    let path = logs.path().join("vm1.log");
    assert!(path.exists());
    assert!(std::fs::read_to_string(&path).unwrap().contains("in_asm"));
    assert_eq!(m.log().unwrap(), std::fs::read_to_string(&path).unwrap());
}

#[test]
fn kill_is_hard_and_reaps() {
    let m = launched_none();
    let pid = m.pid().unwrap();
    m.kill().unwrap();
    assert_eq!(m.exit_status(), Some(ExitStatus::Signaled(libc::SIGKILL)));
    assert!(!process_exists(pid), "QEMU {pid} was not reaped");
    m.kill().unwrap();
    m.shutdown(SHORT).unwrap();
}

#[test]
fn wait_for_exit_on_its_own() {
    let m = launched_none();
    // Still running: a timed wait reports Timeout and leaves QEMU alone.
    assert!(matches!(m.wait(ms(100)), Err(Error::Timeout(_))));
    assert!(m.is_running());
    let pid = m.pid().unwrap();
    signal(pid, libc::SIGTERM);
    m.wait(SHORT).unwrap();
    assert!(!m.is_running());
    // QEMU exits with status 0 on SIGTERM.
    assert_eq!(m.exit_status(), Some(ExitStatus::Exited(0)));
}

#[test]
fn drop_kills_and_reaps() {
    let pid = {
        let m = launched_none();
        m.pid().unwrap()
    };
    // Killed and reaped before drop returned: the pid is gone from /proc
    // (a zombie, or a QEMU left running, would still be listed).
    assert!(!process_exists(pid), "QEMU {pid} outlived its machine");
}

#[test]
fn commands_before_launch_are_state_errors() {
    let m = Machine::new(none_config());
    assert!(matches!(
        m.command("query-status", None, SHORT),
        Err(Error::State(_))
    ));
    assert!(matches!(m.event_get(ms(0)), Err(Error::State(_))));
    assert!(matches!(m.log(), Err(Error::State(_))));
    assert!(!m.is_running());
    assert_eq!(m.pid(), None);
    m.shutdown(SHORT).unwrap();
    m.kill().unwrap();
    m.wait(ms(0)).unwrap();
}

#[test]
fn by_default_no_tcp_and_no_socket_files() {
    let m = launched_none();
    let line = m.command_line().unwrap().join(" ");
    assert!(line.contains("socket,id=mon,fd="), "{line}");
    assert!(!line.contains("host=") && !line.contains("path="), "{line}");
    // The private directory holds the log and nothing else.
    let dir = m.temp_dir().unwrap();
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.len() == 1 && names[0].ends_with(".log"), "{names:?}");
    // No descriptor of QEMU is a TCP socket.
    let tcp_inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| {
            t.lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(9).map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect();
    let qemu_sockets: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", m.pid().unwrap()))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|t| {
            t.to_string_lossy()
                .strip_prefix("socket:[")
                .map(|s| s.trim_end_matches(']').to_string())
        })
        .collect();
    assert!(!qemu_sockets.is_empty());
    assert!(
        qemu_sockets.iter().all(|s| !tcp_inodes.contains(s)),
        "a TCP socket"
    );
    m.shutdown(SHORT).unwrap();
}
