//! qemu-machine: launch QEMU with a QMP monitor, run QMP commands, wait for
//! events, read QEMU's log, and shut it down gracefully or hard, always
//! cleaning up.
//!
//! The Rust API ([`Machine`], [`Config`]) is the core; the C API in `ffi`
//! (header `include/qemu_machine.h`) is a thin layer over it.
//!
//! ```no_run
//! use std::time::Duration;
//! use qemu_machine::{Config, Machine};
//!
//! let mut config = Config::new("qemu-system-x86_64");
//! config.machine_type("none").args(["-accel", "tcg", "-nodefaults"]);
//! let vm = Machine::new(config);
//! vm.launch()?;
//! let status = vm.command("query-status", None, Some(Duration::from_secs(5)))?;
//! println!("{status}");
//! vm.shutdown(Some(Duration::from_secs(10)))?;
//! # Ok::<(), qemu_machine::Error>(())
//! ```

#![warn(missing_docs)]

mod agent;
mod channel;
mod console;
mod deadline;
mod error;
mod ffi;
mod machine;
mod owner;
mod probe;
mod process;
pub mod qmp;
mod qtest;
mod sink;
mod socket;
mod spawn;
mod threads;

pub use agent::ExecResult;
pub use console::{ConsoleConfig, DEFAULT_CONSOLE_BUFFER};
pub use error::{Error, LaunchError, Result};
pub use machine::{
    migrate, Config, Listener, Machine, MonitorAddress, Ticket, DEFAULT_LAUNCH_TIMEOUT,
    DEFAULT_QTEST_TIMEOUT, MAX_CONSOLE_INDEX, MAX_UNIX_SOCKET_PATH,
};
pub use probe::{probe, Capability};
pub use process::ExitStatus;
pub use qmp::events::{event_match, EventFilter};
pub use qmp::wire::Arguments;

/// The handles are shared between threads (`Arc<Machine>`, listeners
/// handed to other threads): checked at compile time.
#[allow(dead_code)]
fn handles_are_send_and_sync() {
    fn both<T: Send + Sync>() {}
    both::<Machine>();
    both::<Listener>();
    both::<Ticket>();
}
