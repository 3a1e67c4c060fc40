//! Boot the test guest and run a program in it through the guest agent.
//! Run with `cargo run --example rust_agent -- GUEST_DIR` (the directory
//! scripts/build-guest.sh prints).

use std::time::Duration;

use qemu_machine::{Config, Machine};

fn main() -> Result<(), qemu_machine::Error> {
    let dir = std::env::args().nth(1).unwrap_or_default();
    let kernel = format!("{dir}/vmlinux");
    let initrd = format!("{dir}/initramfs.cpio.gz");
    let mut config = Config::new("qemu-system-x86_64");
    config
        .args(["-accel", "tcg", "-m", "256", "-nodefaults"])
        .args(["-kernel", &kernel, "-initrd", &initrd])
        .args(["-append", "console=ttyS0"])
        .console(None, 0)? // ttyS0: the guest's shell
        .agent(None)?; // a virtio-serial port named org.qemu.guest_agent.0
    let vm = Machine::new(config); // dropping it kills QEMU and cleans up
    vm.launch()?;
    vm.agent_wait_ready(Some(Duration::from_secs(60)))?; // qemu-ga starts late
    let r = vm.agent_exec(&["uname", "-r"], None, Some(Duration::from_secs(10)))?;
    println!("exit code: {}", r.exit_code);
    print!("output: {}", String::from_utf8_lossy(&r.stdout));
    Ok(())
}
