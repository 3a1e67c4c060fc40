//! Shared helpers of the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use qemu_machine::{Config, Machine};

/// The QEMU binary the tests drive (`QM_TEST_QEMU` overrides).
pub fn qemu_binary() -> String {
    std::env::var("QM_TEST_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".to_string())
}

/// `-machine none` under TCG with no default devices: starts in ~20 ms.
pub fn none_config() -> Config {
    let mut config = Config::new(qemu_binary());
    config
        .machine_type("none")
        .args(["-accel", "tcg", "-nodefaults"]);
    config
}

pub fn launched_none() -> Machine {
    let m = Machine::new(none_config());
    m.launch().expect("launch");
    m
}

pub const SHORT: Option<Duration> = Some(Duration::from_secs(10));

pub fn ms(n: u64) -> Option<Duration> {
    Some(Duration::from_millis(n))
}

/// Children of this process, by scanning /proc.
pub fn child_pids() -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Field 4 (ppid) follows the parenthesised command name.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: i32 = after.split(' ').nth(1).unwrap().parse().unwrap();
        if ppid == me {
            out.push(pid);
        }
    }
    out
}

/// Open descriptors of this process.
pub fn open_fds() -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            Some(format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                target.display()
            ))
        })
        .collect();
    fds.sort();
    fds
}

pub fn process_exists(pid: i32) -> bool {
    PathBuf::from(format!("/proc/{pid}")).exists()
}

/// A fresh directory for a test's files.
pub fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("qm-test-")
        .tempdir()
        .expect("scratch dir")
}

pub fn signal(pid: i32, sig: i32) {
    // SAFETY: sending a signal to a test-owned child.
    unsafe {
        libc::kill(pid, sig);
    }
}
