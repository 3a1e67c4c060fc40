//! Generates the C header from `src/ffi` with cbindgen into `OUT_DIR` (the
//! build writes nothing else), and gives the shared library its SONAME.
//! The committed `include/qemu_machine.h` is a copy: `make header` updates
//! it, and `tests/header.rs` fails when it differs from the generated one.

use std::env;
use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=src/lib.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build.rs");

    let major = env::var("CARGO_PKG_VERSION_MAJOR").expect("set by cargo");
    let minor = env::var("CARGO_PKG_VERSION_MINOR").expect("set by cargo");
    let patch = env::var("CARGO_PKG_VERSION_PATCH").expect("set by cargo");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libqemu_machine.so.{major}");

    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable and valid");
    config.after_includes = Some(format!(
        "\n/** Version of this header; qm_version() gives the library's. */\n\
         #define QM_VERSION_MAJOR {major}\n\
         #define QM_VERSION_MINOR {minor}\n\
         #define QM_VERSION_PATCH {patch}\n\
         #define QM_VERSION_STRING \"{major}.{minor}.{patch}\""
    ));
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the C header");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    bindings.write_to_file(out_dir.join("qemu_machine.h"));
}
