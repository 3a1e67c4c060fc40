//! Launch/shutdown cycles leave no descriptor and no child behind. Alone in
//! its own test binary so no other test's QEMUs are counted.

mod common;

use common::*;
use qemu_machine::Machine;

#[test]
fn fifty_cycles_leave_no_fd_or_child() {
    let m = Machine::new(none_config());
    // One warm-up cycle: lazily initialised runtime state is not a leak.
    m.launch().unwrap();
    m.shutdown(SHORT).unwrap();
    let fds_before = open_fds();
    assert!(child_pids().is_empty());
    for _ in 0..50 {
        m.launch().unwrap();
        m.command("query-status", None, SHORT).unwrap();
        m.shutdown(SHORT).unwrap();
    }
    // Failed launches must not leak either.
    for _ in 0..5 {
        m.configure(|c| {
            c.arg("-bogus");
        })
        .unwrap();
        assert!(m.launch().is_err());
        m.configure(|c| {
            let mut fresh = none_config();
            std::mem::swap(c, &mut fresh);
        })
        .unwrap();
    }
    assert_eq!(open_fds(), fds_before);
    assert!(child_pids().is_empty(), "{:?}", child_pids());
}
