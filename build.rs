//! Generates `include/qemu_machine.h` from `src/ffi` with cbindgen on every
//! build, and gives the shared library its SONAME.

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
        .expect("cbindgen could not generate include/qemu_machine.h");
    // Rewrites the file only when its content changes.
    bindings.write_to_file(crate_dir.join("include/qemu_machine.h"));
}
