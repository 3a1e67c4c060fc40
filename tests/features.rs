//! fd passing, monitor addresses, QMP off, wrappers, attaching to a QEMU
//! started elsewhere, and the QMP trace — against a real QEMU.

mod common;

use std::fs::File;
use std::io::Write;
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use qemu_machine::{Error, ExitStatus, Machine, MAX_UNIX_SOCKET_PATH};
use serde_json::{json, Value};

const FILE_TEXT: &[u8] = b"hello-from-fdset-0123456789";

fn data_file(dir: &Path) -> PathBuf {
    let path = dir.join("disk.img");
    let mut f = File::create(&path).unwrap();
    f.write_all(FILE_TEXT).unwrap();
    f.set_len(4096).unwrap();
    path
}

/// Paths the process `pid` has open.
fn open_files_of(pid: &str) -> Vec<PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .collect()
}

#[test]
fn add_fd_is_usable_by_qemu_and_inherited_by_it_alone() {
    let dir = scratch_dir();
    let path = data_file(dir.path());
    let file = File::open(&path).unwrap();
    let mut config = none_config();
    config.add_fd(file.as_fd(), 1, "test,file", None).unwrap();
    // The library holds its own duplicate: the caller's may go.
    drop(file);
    // Our duplicate is close-on-exec in this process.
    let ours = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .find(|e| std::fs::read_link(e.path()).ok().as_deref() == Some(path.as_path()))
        .expect("the library's duplicate");
    let fdinfo = std::fs::read_to_string(format!(
        "/proc/self/fdinfo/{}",
        ours.file_name().to_string_lossy()
    ))
    .unwrap();
    let flags = fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
        .unwrap();
    assert_ne!(
        flags & libc::O_CLOEXEC as u32,
        0,
        "duplicate must be close-on-exec"
    );

    // Launched at the same time from another thread, a second machine never
    // inherits the descriptor.
    let m = Arc::new(Machine::new(config));
    let other = Arc::new(Machine::new(none_config()));
    let launches: Vec<_> = [Arc::clone(&m), Arc::clone(&other)]
        .into_iter()
        .map(|vm| std::thread::spawn(move || vm.launch()))
        .collect();
    for l in launches {
        l.join().unwrap().unwrap();
    }
    let qemu_files = open_files_of(&m.pid().unwrap().to_string());
    assert!(qemu_files.contains(&path), "{qemu_files:?}");
    let other_files = open_files_of(&other.pid().unwrap().to_string());
    assert!(!other_files.contains(&path), "{other_files:?}");
    other.shutdown(SHORT).unwrap();

    let fdsets = m.command("query-fdsets", None, SHORT).unwrap();
    assert_eq!(fdsets[0]["fdset-id"], 1);
    assert_eq!(fdsets[0]["fds"][0]["opaque"], "test,file");
    // QEMU reads the file through /dev/fdset/1.
    m.command(
        "blockdev-add",
        Some(&json!({
            "driver": "raw", "node-name": "f0", "read-only": true,
            "file": {"driver": "file", "filename": "/dev/fdset/1", "read-only": true}
        })),
        SHORT,
    )
    .unwrap();
    m.command(
        "human-monitor-command",
        Some(&json!({"command-line": "qemu-io f0 \"read -v 0 32\""})),
        SHORT,
    )
    .unwrap();
    m.shutdown(SHORT).unwrap();
    // qemu-io prints its hex dump on QEMU's stdout: the log.
    let log = m.log().unwrap();
    assert!(log.contains("hello.from.fdset"), "{log}");
}

#[test]
fn add_fd_options_reach_qemu() {
    let f = File::open("/dev/null").unwrap();
    let mut config = none_config();
    config.add_fd(f.as_fd(), 3, "o", Some("bogus=1")).unwrap();
    let err = Machine::new(config).launch().unwrap_err();
    let Error::Launch(info) = &err else {
        panic!("{err:?}")
    };
    assert!(
        info.command_line.contains(",set=3,opaque=o,bogus=1"),
        "{err}"
    );
    assert!(info.output.contains("Invalid parameter 'bogus'"), "{err}");
}

#[test]
fn add_fd_rejects_a_closed_descriptor() {
    let mut config = none_config();
    // SAFETY (test): a number far above any open descriptor; borrow_raw is
    // only used to provoke the library's own check.
    let closed = unsafe { std::os::fd::BorrowedFd::borrow_raw(1 << 20) };
    let err = config.add_fd(closed, 1, "x", None).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

fn wait_for_migration(m: &Machine) {
    let t = Instant::now();
    loop {
        let status = m.command("query-migrate", None, SHORT).unwrap();
        match status["status"].as_str() {
            Some("completed") => return,
            Some("failed") => panic!("migration failed: {status}"),
            _ if t.elapsed() > Duration::from_secs(20) => panic!("migration stuck: {status}"),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[test]
fn send_fd_getfd_closefd_and_use() {
    let dir = scratch_dir();
    let m = launched_none();
    let out = File::create(dir.path().join("unused")).unwrap();
    m.send_fd(out.as_fd(), "spare", SHORT).unwrap();
    m.command("closefd", Some(&json!({"fdname": "spare"})), SHORT)
        .unwrap();
    match m.command("closefd", Some(&json!({"fdname": "spare"})), SHORT) {
        Err(Error::Command { class, .. }) => assert_eq!(class, "GenericError"),
        other => panic!("closing twice must fail: {other:?}"),
    }
    // QEMU writes its migration stream into a file we passed.
    let stream = dir.path().join("migration");
    let file = File::create(&stream).unwrap();
    m.send_fd(file.as_fd(), "mig", SHORT).unwrap();
    drop(file);
    m.command("migrate", Some(&json!({"uri": "fd:mig"})), SHORT)
        .unwrap();
    wait_for_migration(&m);
    m.shutdown(SHORT).unwrap();
    let bytes = std::fs::read(&stream).unwrap();
    assert_eq!(&bytes[..4], b"QEVM", "a QEMU migration stream");
}

#[test]
fn unix_monitor_listens_first_and_removes_its_socket() {
    let dir = scratch_dir();
    let sock = dir.path().join("qmp.sock");
    let mut config = none_config();
    config.monitor_unix(&sock).unwrap();
    let m = Machine::new(config);
    m.launch().unwrap();
    assert!(sock.exists());
    let line = m.command_line().unwrap().join(" ");
    assert!(
        line.contains(&format!("socket,id=mon,path={}", sock.display())),
        "{line}"
    );
    m.command("query-status", None, SHORT).unwrap();
    // Descriptors pass over a Unix-socket monitor.
    let f = File::open("/dev/null").unwrap();
    m.send_fd(f.as_fd(), "null", SHORT).unwrap();
    m.shutdown(SHORT).unwrap();
    assert!(!sock.exists(), "socket file removed at shutdown");

    // A path that does not fit sun_path is refused up front.
    let long = dir.path().join("x".repeat(MAX_UNIX_SOCKET_PATH));
    let err = none_config().monitor_unix(&long).map(drop).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("107"), "{err}");

    // An existing path makes the launch fail, clearly.
    std::fs::write(&sock, b"").unwrap();
    let mut config = none_config();
    config.monitor_unix(&sock).unwrap();
    let err = Machine::new(config).launch().unwrap_err();
    assert!(matches!(err, Error::Launch(_)), "{err}");
    assert!(err.to_string().contains("Address already in use"), "{err}");
}

#[test]
fn qemu_dying_before_it_connects_fails_the_launch_at_once() {
    let dir = scratch_dir();
    let mut config = none_config();
    config
        .monitor_unix(dir.path().join("qmp.sock"))
        .unwrap()
        .arg("-bogus");
    let t = Instant::now();
    let err = Machine::new(config).launch().unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5));
    let Error::Launch(info) = &err else {
        panic!("{err:?}")
    };
    assert!(info.output.contains("-bogus: invalid option"), "{err}");
    assert!(info.reason.contains("before connecting"), "{err}");
    assert!(!dir.path().join("qmp.sock").exists());
}

#[test]
fn tcp_monitor_on_a_free_port() {
    let mut config = none_config();
    config.monitor_tcp("127.0.0.1", 0).unwrap();
    let m = Machine::new(config);
    m.launch().unwrap();
    let port = m.monitor_port().expect("port");
    assert!(port > 0);
    let line = m.command_line().unwrap().join(" ");
    assert!(
        line.contains(&format!("host=127.0.0.1,port={port}")),
        "{line}"
    );
    assert_eq!(
        m.command("query-status", None, SHORT).unwrap()["running"],
        true
    );
    // No descriptor passing over TCP: the configuration cannot do it.
    let f = File::open("/dev/null").unwrap();
    assert!(matches!(
        m.send_fd(f.as_fd(), "x", SHORT),
        Err(Error::AddDevice(_))
    ));
    m.shutdown(SHORT).unwrap();

    // A port in use fails the launch with the reason.
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = none_config();
    config
        .monitor_tcp("127.0.0.1", busy.local_addr().unwrap().port())
        .unwrap();
    let err = Machine::new(config).launch().unwrap_err();
    assert!(matches!(err, Error::Launch(_)), "{err}");
    assert!(err.to_string().contains("Address already in use"), "{err}");
}

#[test]
fn without_qmp_shutdown_uses_sigterm() {
    let mut config = none_config();
    config.qmp(false);
    let m = Machine::new(config);
    m.launch().unwrap();
    assert!(m.pid().is_some());
    let line = m.command_line().unwrap().join(" ");
    assert!(!line.contains("-mon"), "{line}");
    assert!(matches!(
        m.command("query-status", None, SHORT),
        Err(Error::AddDevice(_))
    ));
    assert!(matches!(m.event_get(ms(0)), Err(Error::AddDevice(_))));
    // QEMU needs a moment to install its SIGTERM handler.
    std::thread::sleep(Duration::from_millis(200));
    m.shutdown(SHORT).unwrap();
    assert_eq!(m.exit_status(), Some(ExitStatus::Exited(0)));
}

#[test]
fn monitor_null_and_wrappers() {
    let mut config = none_config();
    config
        .add_monitor_null()
        .wrapper_arg("env")
        .wrapper_arg("QM_WRAPPED=1");
    let m = Machine::new(config);
    m.launch().unwrap();
    let line = m.command_line().unwrap();
    assert_eq!(&line[..3], ["env", "QM_WRAPPED=1", "qemu-system-x86_64"]);
    assert!(line.join(" ").contains("-monitor null"));
    let environ = std::fs::read(format!("/proc/{}/environ", m.pid().unwrap())).unwrap();
    assert!(environ.split(|&b| b == 0).any(|kv| kv == b"QM_WRAPPED=1"));
    m.shutdown(SHORT).unwrap();
    assert_eq!(m.exit_status(), Some(ExitStatus::Exited(0)));

    // setsid: QEMU runs in its own session; shutdown and reaping still work.
    let mut config = none_config();
    config.wrapper_arg("setsid");
    let m = Machine::new(config);
    m.launch().unwrap();
    let pid = m.pid().unwrap();
    // SAFETY: getsid on our own child.
    assert_eq!(unsafe { libc::getsid(pid) }, pid);
    m.shutdown(SHORT).unwrap();
    assert_eq!(m.exit_status(), Some(ExitStatus::Exited(0)));
    assert!(child_pids().iter().all(|&p| p != pid));
}

/// A QEMU started outside the library, with a QMP server socket.
struct External {
    child: Child,
}

impl External {
    fn start(qmp: &str) -> External {
        let child = Command::new(qemu_binary())
            .args([
                "-display",
                "none",
                "-machine",
                "none",
                "-accel",
                "tcg",
                "-nodefaults",
                "-qmp",
            ])
            .arg(qmp)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        External { child }
    }

    fn exit_code(&mut self) -> Option<i32> {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for External {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn retry<T>(mut f: impl FnMut() -> Result<T, Error>) -> T {
    let t = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if t.elapsed() > Duration::from_secs(10) => panic!("gave up: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[test]
fn attach_over_unix() {
    let dir = scratch_dir();
    let sock = dir.path().join("ext.sock");
    let mut qemu = External::start(&format!("unix:{},server=on,wait=off", sock.display()));
    let m = retry(|| Machine::attach_unix(&sock, SHORT));
    assert!(m.is_attached());
    assert!(m.is_running());
    assert_eq!(m.pid(), None);
    assert!(matches!(m.log(), Err(Error::State(_))));
    assert!(matches!(m.kill(), Err(Error::State(_))));
    assert!(matches!(m.launch(), Err(Error::State(_))));
    assert!(matches!(m.configure(|_| ()), Err(Error::State(_))));
    assert_eq!(
        m.command("query-status", None, SHORT).unwrap()["running"],
        true
    );
    m.command("stop", None, SHORT).unwrap();
    m.event_wait(Some("STOP"), None, SHORT).unwrap();
    let f = File::open("/dev/null").unwrap();
    m.send_fd(f.as_fd(), "null", SHORT).unwrap();
    // Dropping an attached machine disconnects; QEMU lives on.
    drop(m);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        qemu.child.try_wait().unwrap().is_none(),
        "QEMU must survive"
    );
    let m = retry(|| Machine::attach_unix(&sock, SHORT));
    m.shutdown(SHORT).unwrap();
    assert!(!m.is_running());
    let ev = m.event_wait(Some("SHUTDOWN"), None, ms(0)).unwrap();
    assert_eq!(ev["data"]["reason"], "host-qmp-quit");
    assert_eq!(qemu.exit_code(), Some(0));
}

#[test]
fn attach_over_tcp() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut qemu = External::start(&format!("tcp:127.0.0.1:{port},server=on,wait=off"));
    let m = retry(|| Machine::attach_tcp("127.0.0.1", port, SHORT));
    assert_eq!(
        m.command("query-status", None, SHORT).unwrap()["running"],
        true
    );
    let f = File::open("/dev/null").unwrap();
    assert!(matches!(
        m.send_fd(f.as_fd(), "x", SHORT),
        Err(Error::AddDevice(_))
    ));
    // qm_wait on an attachment waits for the connection to close.
    assert!(matches!(m.wait(ms(100)), Err(Error::Timeout(_))));
    m.shutdown(SHORT).unwrap();
    assert_eq!(qemu.exit_code(), Some(0));
    // Nothing to attach to any more.
    assert!(matches!(
        Machine::attach_tcp("127.0.0.1", port, ms(500)),
        Err(Error::Io { .. })
    ));
}

#[test]
fn qmp_trace_records_both_directions_with_timestamps() {
    let dir = scratch_dir();
    let trace = dir.path().join("qmp.trace");
    let mut config = none_config();
    config.qmp_trace(&trace);
    let m = Machine::new(config);
    m.launch().unwrap();
    m.command("stop", None, SHORT).unwrap();
    m.event_wait(Some("STOP"), None, SHORT).unwrap();
    m.command("quit", None, SHORT).unwrap();
    m.shutdown(SHORT).unwrap();
    let text = std::fs::read_to_string(&trace).unwrap();
    let records: Vec<(f64, &str, &str)> = text
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let t: f64 = parts.next().unwrap().parse().expect("timestamp");
            (t, parts.next().unwrap(), parts.next().unwrap_or(""))
        })
        .collect();
    assert!(records.windows(2).all(|w| w[0].0 <= w[1].0), "monotonic");
    let sent: Vec<&str> = records
        .iter()
        .filter(|r| r.1 == ">>")
        .map(|r| r.2)
        .collect();
    let received: Vec<&str> = records
        .iter()
        .filter(|r| r.1 == "<<")
        .map(|r| r.2)
        .collect();
    assert!(received[0].starts_with("{\"QMP\""), "{text}");
    // The fewest bytes: no id, no spaces, no newline.
    assert_eq!(sent[0], r#"{"execute":"qmp_capabilities"}"#);
    assert!(sent.contains(&r#"{"execute":"stop"}"#), "{text}");
    assert!(sent.iter().any(|l| l.contains("\"stop\"")));
    assert!(received.iter().any(|l| l.contains("\"STOP\"")));
    // quit went through the API: shutdown only waited, no second quit.
    assert_eq!(
        sent.iter().filter(|l| l.contains("\"quit\"")).count(),
        1,
        "{text}"
    );
    for line in received {
        serde_json::from_str::<Value>(line).expect("received lines are QMP JSON");
    }
}

#[test]
fn qmp_trace_can_start_on_a_live_attachment() {
    let dir = scratch_dir();
    let sock = dir.path().join("ext.sock");
    let mut qemu = External::start(&format!("unix:{},server=on,wait=off", sock.display()));
    let m = retry(|| Machine::attach_unix(&sock, SHORT));
    let trace = dir.path().join("live.trace");
    m.set_qmp_trace(&trace).unwrap();
    m.command("query-status", None, SHORT).unwrap();
    m.shutdown(SHORT).unwrap();
    let text = std::fs::read_to_string(&trace).unwrap();
    assert!(text.contains(">> {\"execute\":\"query-status\""), "{text}");
    assert!(text.contains("<< {\"return\""), "{text}");
    assert_eq!(qemu.exit_code(), Some(0));
}
