//! 1000 launch/command/shutdown cycles of `-machine none`: descriptors,
//! threads, children, files in the base temporary directory and RSS all
//! return to their baseline. Alone in its own test binary, so nothing else
//! runs in the process while it counts.

mod common;

use common::*;
use qemu_machine::Machine;

const CYCLES: usize = 1000;

fn status_field(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /proc/self/status"))
}

struct Snapshot {
    fds: Vec<String>,
    threads: u64,
    children: Vec<i32>,
    temp_entries: usize,
    rss_kib: u64,
}

fn snapshot(base: &std::path::Path) -> Snapshot {
    Snapshot {
        fds: open_fds(),
        threads: status_field("Threads:"),
        children: child_pids(),
        temp_entries: std::fs::read_dir(base).unwrap().count(),
        rss_kib: status_field("VmRSS:"),
    }
}

#[test]
fn a_thousand_cycles_return_to_baseline() {
    let base = scratch_dir();
    let mut config = none_config();
    config.base_temp_dir(base.path());
    let m = Machine::new(config);
    let cycle = || {
        m.launch().unwrap();
        let status = m.command("query-status", None, SHORT).unwrap();
        assert_eq!(status["status"], "running");
        m.shutdown(SHORT).unwrap();
    };
    // Warm up: allocator pools and lazily initialised runtime state.
    for _ in 0..20 {
        cycle();
    }
    let before = snapshot(base.path());
    let started = std::time::Instant::now();
    for _ in 0..CYCLES {
        cycle();
    }
    let took = started.elapsed();
    let after = snapshot(base.path());
    eprintln!(
        "soak: {CYCLES} cycles in {:.1} s ({:.1} ms each); fds {} -> {}, threads {} -> {}, \
         children {} -> {}, temp entries {} -> {}, RSS {} -> {} KiB",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / CYCLES as f64,
        before.fds.len(),
        after.fds.len(),
        before.threads,
        after.threads,
        before.children.len(),
        after.children.len(),
        before.temp_entries,
        after.temp_entries,
        before.rss_kib,
        after.rss_kib
    );
    assert_eq!(after.fds, before.fds, "descriptors");
    assert_eq!(after.threads, before.threads, "threads");
    assert!(
        after.children.is_empty() && before.children.is_empty(),
        "children"
    );
    assert_eq!(
        after.temp_entries, 0,
        "files in the base temporary directory"
    );
    assert!(
        after.rss_kib <= before.rss_kib + 2048,
        "RSS grew from {} to {} KiB",
        before.rss_kib,
        after.rss_kib
    );
}
