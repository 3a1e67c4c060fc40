//! The Rust API directly: launch QEMU, talk QMP, watch events, shut down.
//!
//! Run with `cargo run --example rust_api`.

use std::time::Duration;

use qemu_machine::{Config, Machine};

fn main() -> Result<(), qemu_machine::Error> {
    let timeout = Some(Duration::from_secs(10));
    let mut config = Config::new("qemu-system-x86_64");
    config
        .machine_type("none")
        .args(["-accel", "tcg", "-nodefaults"]);
    let vm = Machine::new(config);

    vm.launch()?;
    println!("launched QEMU, pid {}", vm.pid().unwrap_or(-1));
    let version = vm.command("query-version", None, timeout)?;
    println!("QEMU version: {}", version["qemu"]);
    println!("status: {}", vm.command("query-status", None, timeout)?);

    vm.command("stop", None, timeout)?;
    let stop = vm.event_wait(Some("STOP"), None, timeout)?;
    println!("event: {stop}");
    vm.command("cont", None, timeout)?;
    let resume = vm.event_wait(Some("RESUME"), None, timeout)?;
    println!("event: {resume}");

    vm.shutdown(timeout)?;
    println!("QEMU {}", vm.exit_status().expect("exited"));
    Ok(())
}
