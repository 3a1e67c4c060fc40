//! The C API. This layer only translates: it checks and converts
//! arguments, calls the Rust core, and converts results and errors. Every
//! exported function is a plain `#[no_mangle] pub unsafe extern "C" fn`
//! (so cbindgen sees its signature; `unsafe` because C hands it pointers
//! whose validity only the C caller can promise) whose body runs inside
//! the panic boundary of `boundary`.
//!
//! Files follow the C type families: `status.rs` (`qm_status`, version),
//! `error.rs` (`qm_error`, `qm_string_free`), `bytes.rs` (`qm_bytes`),
//! `machine.rs` (`qm_machine`: create, configure, lifecycle), `qmp.rs`
//! (commands and events), `listener.rs` (`qm_listener`), `console.rs`,
//! `agent.rs` (the guest agent, `qm_exec_result`), `qtest.rs`,
//! `harness.rs` (artifacts, probes, migration);
//! `input.rs` holds the argument conversions, `gate.rs` the count of calls
//! in flight that makes freeing from another thread safe, and
//! `boundary.rs` the panic boundary.

// C naming (`qm_machine`, `QM_OK`) is the point of this module.
#![allow(non_camel_case_types)]

mod agent;
mod boundary;
mod bytes;
mod console;
mod error;
mod gate;
mod harness;
mod input;
mod listener;
mod machine;
mod qmp;
mod qtest;
mod status;
