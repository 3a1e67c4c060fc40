//! The liveness and lifecycle promises, each against the fault an outside
//! audit found: death without EOF, calls during a launch, locks held
//! across blocking work, attach timeouts, traces and logs to pipes, input
//! QEMU's parser refuses, commands cut by their deadline, files left by a
//! failed launch, odd paths, big logs. (Process-wide faults — fork,
//! SIGCHLD ignored, SIGPIPE — are in `process_wide.rs`; faults of the QMP
//! peer in `faults.rs`.)

mod common;

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use qemu_machine::{Arguments, Error, Machine};
use serde_json::json;

/// A `-machine pc -S` QEMU with a console: no guest code runs, but the
/// console exists.
fn pc_with_console() -> qemu_machine::Config {
    let mut config = qemu_machine::Config::new(qemu_binary());
    config
        .machine_type("pc")
        .args(["-accel", "tcg", "-nodefaults", "-S"])
        .console(None, 0)
        .unwrap();
    config
}

/// Start `f` in a thread; the caller joins it.
fn in_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(f)
}

/// Wait until `launch` has begun in another thread (calls then say so).
fn wait_for_launching(m: &Machine) {
    let t = Instant::now();
    loop {
        match m.event_get(ms(0)) {
            Err(Error::State(why)) if why.contains("being launched") => return,
            _ => {}
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the launch never began"
        );
        std::thread::yield_now();
    }
}

fn wait_for_pid(m: &Machine) -> i32 {
    let t = Instant::now();
    loop {
        if let Some(pid) = m.pid() {
            return pid;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "QEMU never started");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A wrapper that keeps QEMU's descriptors open in a child of its own
/// after QEMU is gone: no EOF comes when QEMU dies.
fn with_lingering_descendant(config: &mut qemu_machine::Config) {
    config
        .wrapper_arg("sh")
        .wrapper_arg("-c")
        .wrapper_arg("sleep 5 & exec \"$@\"")
        .wrapper_arg("sh");
}

/// Item 2: every wait ends within ~1 s of QEMU's exit, also when another
/// process holds QEMU's end of the sockets open.
#[test]
fn death_is_seen_without_eof() {
    let mut config = pc_with_console();
    with_lingering_descendant(&mut config);
    let m = Arc::new(Machine::new(config));
    m.launch().unwrap();
    let pid = m.pid().unwrap();
    let events = {
        let m = Arc::clone(&m);
        in_thread(move || m.event_wait(Some("NEVER"), None, None))
    };
    let console = {
        let m = Arc::clone(&m);
        in_thread(move || m.console_wait("NEVER", None, None))
    };
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    signal(pid, libc::SIGKILL);
    let err = events.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::Disconnected(_)), "{err}");
    assert!(err.to_string().contains("another process"), "{err}");
    let err = console.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::Disconnected(_)), "{err}");
    assert!(
        t.elapsed() < slack(Duration::from_secs(1)),
        "took {:?}",
        t.elapsed()
    );
    assert!(matches!(
        m.command("query-status", None, None),
        Err(Error::Disconnected(_))
    ));
    assert!(m.shutdown(SHORT).is_err());
}

/// Item 4: kill interrupts a launch at any point; the launch says so.
#[test]
fn kill_interrupts_a_launch_at_any_point() {
    // A launch that is still in progress when the kill comes (the wrapper
    // waits before exec'ing QEMU).
    let mut config = none_config();
    delayed_start(&mut config, 0.3);
    let m = Arc::new(Machine::new(config));
    for round in 0..20u64 {
        let launcher = {
            let m = Arc::clone(&m);
            in_thread(move || m.launch())
        };
        wait_for_launching(&m);
        std::thread::sleep(Duration::from_micros(round * 150));
        let t = Instant::now();
        m.kill().unwrap();
        assert!(t.elapsed() < slack(Duration::from_secs(1)), "kill blocked");
        let err = launcher.join().unwrap().unwrap_err();
        assert!(matches!(err, Error::Launch(_)), "round {round}: {err}");
        assert!(
            err.to_string().contains("cancelled"),
            "round {round}: {err}"
        );
        assert!(!m.is_running());
        assert_eq!(m.pid(), None);
    }
    // Without the wrapper: the kill lands anywhere in a real launch,
    // spawn included; whatever the launch returned, nothing runs after.
    let m = Arc::new(Machine::new(none_config()));
    for round in 0..20u64 {
        let launcher = {
            let m = Arc::clone(&m);
            in_thread(move || m.launch())
        };
        std::thread::sleep(Duration::from_micros(round * 150));
        m.kill().unwrap();
        let _ = launcher.join().unwrap();
        m.kill().unwrap();
        assert!(!m.is_running());
    }
    // release (what freeing does) cancels a launch the same way.
    let mut config = none_config();
    delayed_start(&mut config, 0.3);
    let m = Arc::new(Machine::new(config));
    let launcher = {
        let m = Arc::clone(&m);
        in_thread(move || m.launch())
    };
    wait_for_pid(&m);
    m.release();
    let err = launcher.join().unwrap().unwrap_err();
    assert!(err.to_string().contains("cancelled"), "{err}");
}

/// Item 4: waits during a launch honour their timeouts and say what is
/// happening.
#[test]
fn calls_during_a_launch_honour_their_timeouts() {
    let mut config = none_config();
    delayed_start(&mut config, 4.0);
    let m = Arc::new(Machine::new(config));
    let launcher = {
        let m = Arc::clone(&m);
        in_thread(move || m.launch())
    };
    wait_for_pid(&m);
    let t = Instant::now();
    let err = m.wait(ms(100)).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(err.to_string().contains("still being launched"), "{err}");
    assert!(
        t.elapsed() < slack(Duration::from_millis(600)),
        "{:?}",
        t.elapsed()
    );
    let err = m.event_wait(Some("STOP"), None, ms(100)).unwrap_err();
    assert!(matches!(err, Error::State(_)), "{err}");
    assert!(err.to_string().contains("still being launched"), "{err}");
    // shutdown cleans up by its deadline: the launch is cancelled.
    let t = Instant::now();
    let err = m.shutdown(ms(100)).unwrap_err();
    assert!(matches!(err, Error::AbnormalShutdown(_)), "{err}");
    assert!(err.to_string().contains("still being launched"), "{err}");
    assert!(
        t.elapsed() < slack(Duration::from_millis(1500)),
        "{:?}",
        t.elapsed()
    );
    let err = launcher.join().unwrap().unwrap_err();
    assert!(err.to_string().contains("cancelled"), "{err}");
    assert!(!m.is_running());
}

/// Item 5: no lock is held across blocking work: getters answer at once
/// while another thread shuts down a QEMU that does not respond.
#[test]
fn getters_never_wait_for_a_shutdown_in_progress() {
    let m = Arc::new(launched_none());
    let pid = m.pid().unwrap();
    signal(pid, libc::SIGSTOP);
    let shutdown = {
        let m = Arc::clone(&m);
        in_thread(move || m.shutdown(ms(1500)))
    };
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..20 {
        let t = Instant::now();
        let _ = m.is_running();
        let _ = m.pid();
        let _ = m.exit_status();
        let _ = m.log();
        let _ = m.temp_dir();
        assert!(
            // Well below the shutdown's 1500 ms: a getter that waited
            // for it would fail.
            t.elapsed() < Duration::from_millis(700),
            "a getter blocked for {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = shutdown.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::AbnormalShutdown(_)), "{err}");
}

/// Item 6: attaching to a listener whose backlog is full (QEMU serves one
/// client at a time) gives up at the deadline.
#[test]
fn attach_unix_honours_its_timeout_against_a_full_backlog() {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};
    let dir = scratch_dir();
    let path = dir.path().join("full.sock");
    let listener = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
    let addr = SocketAddrUnix::new(&path).unwrap();
    rustix::net::bind(&listener, &addr).unwrap();
    rustix::net::listen(&listener, 0).unwrap();
    // Fill the backlog: nobody ever accepts.
    let _first = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let t = Instant::now();
    let err = Machine::attach_unix(&path, ms(500)).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(
        t.elapsed() < slack(Duration::from_millis(1500)),
        "{:?}",
        t.elapsed()
    );
    drop(listener);
}

fn mkfifo(path: &Path) {
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
}

/// Item 7: a trace or console log that is a FIFO without a reader fails
/// the launch at once (no blocking in `open`).
#[test]
fn fifo_logs_without_a_reader_fail_the_launch_at_once() {
    let dir = scratch_dir();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    for console in [false, true] {
        let mut config = if console {
            pc_with_console()
        } else {
            none_config()
        };
        if console {
            config.console_log(&fifo);
        } else {
            config.qmp_trace(&fifo);
        }
        let m = Machine::new(config);
        let t = Instant::now();
        let err = m.launch().unwrap_err();
        assert!(err.to_string().contains("FIFO with no reader"), "{err}");
        assert!(t.elapsed() < slack(Duration::from_secs(2)));
    }
}

/// Item 7: a trace whose reader stopped reading never holds a call past
/// its deadline.
#[test]
fn a_stalled_trace_reader_never_stalls_commands() {
    let dir = scratch_dir();
    let fifo = dir.path().join("trace");
    mkfifo(&fifo);
    // A reader that opens the FIFO and never reads.
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags_nonblock()
        .open(&fifo)
        .unwrap();
    let mut config = none_config();
    config.qmp_trace(&fifo);
    let m = launched(config);
    let args = json!({"pad": "x".repeat(2000)});
    for _ in 0..100 {
        let t = Instant::now();
        let _ = m.qmp("qom-list-types", Some(&args), ms(1000)).unwrap();
        assert!(t.elapsed() < slack(Duration::from_millis(1000)));
    }
    m.shutdown(SHORT).unwrap();
}

/// `O_NONBLOCK` for opening a FIFO's read end without a writer.
trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::custom_flags(self, libc::O_NONBLOCK)
    }
}

fn launched(config: qemu_machine::Config) -> Machine {
    let m = Machine::new(config);
    m.launch().unwrap();
    m
}

/// Item 8: input QEMU's parser would refuse (or answer with many errors)
/// is refused before sending; the connection stays in step.
#[test]
fn input_qemu_would_refuse_is_refused_before_sending() {
    let m = launched_none();
    let bad = [
        json!({"s": "\u{ffff}"}),
        json!({"s": "a\u{fdd0}b"}),
        json!({"deep": (0..1100).fold(json!(1), |v, _| json!([v]))}),
    ];
    for args in &bad {
        let err = m.command("human-monitor-command", Some(args), SHORT);
        assert!(matches!(err, Err(Error::InvalidArgument(_))), "{err:?}");
    }
    let text = Arguments::from_text(r#"{"s": "\uFFFE"}"#).unwrap();
    assert!(matches!(
        m.command_text("x", Some(&text), SHORT),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(
        m.command("query-status", None, SHORT).unwrap()["status"],
        "running"
    );
    assert_eq!(m.stray_replies(), 0);
    m.shutdown(SHORT).unwrap();
}

/// Item 9: a command cut by its deadline mid-write is completed as QEMU
/// reads it; later commands are not broken, and the message says what
/// happened.
#[test]
fn a_command_cut_by_its_deadline_does_not_poison_the_stream() {
    let m = launched_none();
    let big = json!({"command-line": format!("echo {}", "x".repeat(1 << 20))});
    let err = m
        .command("human-monitor-command", Some(&big), ms(300))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(err.to_string().contains("only partly sent"), "{err}");
    // QEMU reads a byte per main-loop turn: the rest takes a few seconds.
    let status = m
        .command("query-status", None, Some(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(status["status"], "running");
    assert_eq!(m.stray_replies(), 1, "the cut command's reply was dropped");
    m.shutdown(SHORT).unwrap();
}

/// Item 10: nothing is left behind on any failure path (here a Unix
/// monitor socket when the console log cannot be opened).
#[test]
fn a_failed_launch_leaves_no_socket_file() {
    let dir = scratch_dir();
    let sock = dir.path().join("qmp.sock");
    let mut config = pc_with_console();
    config
        .monitor_unix(&sock)
        .unwrap()
        .console_log(dir.path().join("missing/console.log"));
    let m = Machine::new(config);
    let err = m.launch().unwrap_err();
    assert!(err.to_string().contains("console log"), "{err}");
    assert!(!sock.exists(), "the socket file was left behind");
    m.configure(|c| {
        c.console_log(dir.path().join("console.log"));
    })
    .unwrap();
    m.launch().unwrap();
    m.shutdown(SHORT).unwrap();
    assert!(!sock.exists());
}

/// Item 11: values put into QEMU option strings are escaped (a comma in a
/// Unix monitor path).
#[test]
fn monitor_paths_with_commas_work() {
    let dir = scratch_dir();
    let sub = dir.path().join("a,b");
    std::fs::create_dir(&sub).unwrap();
    let sock = sub.join("q,m,p.sock");
    let mut config = none_config();
    config.monitor_unix(&sock).unwrap();
    let m = launched(config);
    assert!(sock.exists());
    m.command("query-status", None, SHORT).unwrap();
    m.shutdown(SHORT).unwrap();
}

/// Item 16: a failing call shows the tail of QEMU's log without reading
/// all of a big log.
#[test]
fn disconnect_messages_read_only_the_log_tail() {
    let mut config = none_config();
    // 64 MB of output before QEMU starts, then its own.
    config
        .wrapper_arg("sh")
        .wrapper_arg("-c")
        .wrapper_arg("head -c 64000000 /dev/zero | tr '\\0' x; echo; echo LAST-WORDS; exec \"$@\"")
        .wrapper_arg("sh");
    let m = launched(config);
    signal(m.pid().unwrap(), libc::SIGKILL);
    let err = m.command("query-status", None, SHORT).unwrap_err();
    assert!(err.to_string().contains("LAST-WORDS"), "{err}");
    let t = Instant::now();
    for _ in 0..10 {
        let err = m.command("query-status", None, SHORT).unwrap_err();
        assert!(matches!(err, Error::Disconnected(_)), "{err}");
    }
    assert!(
        t.elapsed() < slack(Duration::from_secs(1)),
        "10 failing calls took {:?}",
        t.elapsed()
    );
    let _ = m.shutdown(SHORT);
}

/// `qm_send_fd` still works through the output queue (the descriptor
/// travels with the first byte of its command).
#[test]
fn a_descriptor_travels_with_its_command() {
    let m = launched_none();
    let f = std::fs::File::open("/dev/null").unwrap();
    m.send_fd(f.as_fd(), "passed", SHORT).unwrap();
    m.command("closefd", Some(&json!({"fdname": "passed"})), SHORT)
        .unwrap();
    m.shutdown(SHORT).unwrap();
}
