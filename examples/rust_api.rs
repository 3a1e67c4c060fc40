//! The Rust API directly: launch QEMU, talk QMP, wait for an event, shut
//! down. Run with `cargo run --example rust_api`.

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
    println!("status: {}", vm.command("query-status", None, timeout)?);
    vm.command("stop", None, timeout)?;
    println!("event: {}", vm.event_wait(Some("STOP"), None, timeout)?);
    vm.shutdown(timeout)?;
    println!("QEMU {}", vm.exit_status().expect("exited"));
    Ok(())
}
