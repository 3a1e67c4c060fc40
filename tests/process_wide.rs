//! Faults that involve the whole host process: `fork()` without `exec`
//! (Python's multiprocessing, C frameworks that fork per test) and SIGCHLD
//! set to be ignored. Own harness (`harness = false`): a forked child must
//! be the only thread of its process besides the library's, and a signal
//! disposition is process-wide, so each case runs alone.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use common::*;
use qemu_machine::{Error, Machine};

/// Run `child` in a forked child process and return its exit status (0:
/// it returned, 1: it panicked). The child is killed, and the test fails,
/// if it takes longer than `limit` (a hang).
fn in_forked_child(limit: Duration, child: impl FnOnce()) -> i32 {
    // SAFETY: the child only runs `child` and then _exit()s; it never
    // returns into the test.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = catch_unwind(AssertUnwindSafe(child)).is_ok();
        // SAFETY: ends the child without running the parent's exit
        // handlers twice.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let t = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc == pid {
            return if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            };
        }
        if t.elapsed() > limit {
            signal(pid, libc::SIGKILL);
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            panic!("the forked child hung for {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Item 1: after a fork, the child launches machines of its own (the
/// parent's spawner thread does not exist there), and the machines it
/// inherited are inert: calls are refused naming the owner, and freeing
/// them never touches the parent's QEMU.
fn fork_child_launches_and_inherited_machines_are_inert() {
    let parent_vm = launched_none();
    let parent_pid = std::process::id();
    let qemu = parent_vm.pid().unwrap();
    let vm = &parent_vm;
    let status = in_forked_child(Duration::from_secs(30), || {
        let parent_vm = vm;
        let err = parent_vm.command("query-status", None, SHORT).unwrap_err();
        assert!(matches!(err, Error::State(_)), "{err}");
        assert!(
            err.to_string().contains(&parent_pid.to_string()),
            "names the owner: {err}"
        );
        assert!(!parent_vm.is_running());
        assert!(matches!(parent_vm.kill(), Err(Error::State(_))));
        // A machine of the child's own launches and works.
        let own = Machine::new(none_config());
        own.launch().expect("launch in a forked child");
        own.command("query-status", None, SHORT).unwrap();
        own.shutdown(SHORT).unwrap();
        // Freeing the inherited copy (this process's copy of the memory):
        // memory only.
        // SAFETY: the child owns its copy of the parent's memory; the
        // original is never used again in this process.
        drop(unsafe { std::ptr::read(parent_vm) });
        assert!(process_exists(qemu), "the parent's QEMU survives");
    });
    assert_eq!(status, 0, "the forked child failed");
    // The parent's machine is untouched.
    parent_vm.command("query-status", None, SHORT).unwrap();
    parent_vm.shutdown(SHORT).unwrap();
}

/// The same, for a child forked while the parent has no machine at all
/// but has launched before (its spawner thread exists only in the parent).
fn fork_after_a_launch_then_launch_in_the_child() {
    let m = launched_none();
    m.shutdown(SHORT).unwrap();
    let status = in_forked_child(Duration::from_secs(30), || {
        let own = launched_none();
        own.command("query-status", None, SHORT).unwrap();
        own.shutdown(SHORT).unwrap();
    });
    assert_eq!(status, 0);
    // And the parent still launches.
    let again = launched_none();
    again.shutdown(SHORT).unwrap();
}

/// Item 16: with SIGCHLD ignored the kernel reaps QEMU itself and its exit
/// status is lost; a clean `quit` is then reported as such — an unknown
/// status, not a kill.
fn sigchld_ignored_reports_an_unknown_status() {
    let status = in_forked_child(Duration::from_secs(30), || {
        // SAFETY: setting a disposition in a single-threaded child.
        unsafe {
            libc::signal(libc::SIGCHLD, libc::SIG_IGN);
        }
        let m = launched_none();
        let err = m.shutdown(SHORT).unwrap_err();
        assert!(matches!(err, Error::AbnormalShutdown(_)), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("exit status unknown"), "{msg}");
        assert!(!msg.contains("killed"), "no kill happened: {msg}");
    });
    assert_eq!(status, 0);
}

/// Running out of descriptors fails a launch with a clear error and leaks
/// nothing (issue 12: machines cost at most 3 descriptors each).
fn running_out_of_descriptors_fails_cleanly() {
    let fds_before = open_fds();
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let low = rustix::process::Rlimit {
        current: Some(64),
        maximum: limit.maximum,
    };
    rustix::process::setrlimit(rustix::process::Resource::Nofile, low).unwrap();
    let mut machines = Vec::new();
    let err = loop {
        let m = Machine::new(none_config());
        match m.launch() {
            Ok(()) => machines.push(m),
            Err(e) => break e,
        }
        assert!(
            machines.len() < 64,
            "64 descriptors cannot hold 64 machines"
        );
    };
    rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).unwrap();
    assert!(matches!(err, Error::Launch(_)), "{err}");
    assert!(err.to_string().contains("Too many open files"), "{err}");
    // At most 3 descriptors per running machine.
    let per_machine = (open_fds().len() - fds_before.len()) as f64 / machines.len() as f64;
    assert!(per_machine <= 3.0, "{per_machine} descriptors per machine");
    for m in &machines {
        m.command("query-status", None, SHORT).unwrap();
    }
    drop(machines);
    assert_eq!(open_fds(), fds_before);
    assert!(child_pids().is_empty(), "{:?}", child_pids());
}

type Test = (&'static str, fn());

macro_rules! tests {
    ($($test:ident),* $(,)?) => {
        &[$((stringify!($test), $test as fn())),*]
    };
}

const TESTS: &[Test] = tests![
    fork_child_launches_and_inherited_machines_are_inert,
    fork_after_a_launch_then_launch_in_the_child,
    sigchld_ignored_reports_an_unknown_status,
    running_out_of_descriptors_fails_cleanly,
];

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut failed = Vec::new();
    for (name, test) in TESTS
        .iter()
        .filter(|(name, _)| filter.as_deref().is_none_or(|f| name.contains(f)))
    {
        let t = Instant::now();
        let ok = catch_unwind(AssertUnwindSafe(test)).is_ok();
        println!(
            "test {name} ... {} ({:.1}s)",
            if ok { "ok" } else { "FAILED" },
            t.elapsed().as_secs_f64()
        );
        if !ok {
            failed.push(*name);
        }
    }
    println!(
        "\ntest result: {}. {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len()
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
