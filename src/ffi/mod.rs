//! The C API. This layer only translates: it checks and converts
//! arguments, calls the Rust core, and converts results and errors. Every
//! exported function is a plain `#[no_mangle] pub extern "C" fn` (so
//! cbindgen sees its signature) whose body runs inside the panic boundary of
//! `boundary`.
//!
//! Files follow the C type families: `status.rs` (`qm_status`, version),
//! `error.rs` (`qm_error`, `qm_string_free`), `machine.rs` (`qm_machine`:
//! create, configure, lifecycle), `qmp.rs` (commands and events);
//! `input.rs` holds the argument conversions and `boundary.rs` the panic
//! boundary.

// C naming (`qm_machine`, `QM_OK`) is the point of this module.
#![allow(non_camel_case_types)]
// Exported functions take raw pointers from C and must stay safe `extern
// "C" fn`s for cbindgen; every dereference goes through the checked helpers
// in `input.rs`.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod boundary;
mod console;
mod error;
mod input;
mod machine;
mod qmp;
mod status;
