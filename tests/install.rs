//! `make install`'s script into a temporary prefix, then a C program built
//! the ordinary way, `cc prog.c $(pkg-config --cflags --libs qemu-machine)`,
//! dynamically and statically, and run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::run_ok;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory cargo built the library into for this test run.
fn build_dir() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn install_then_build_with_pkg_config() {
    let prefix = tempfile::Builder::new()
        .prefix("qm-prefix-")
        .tempdir()
        .unwrap();
    let prefix = prefix.path();
    run_ok(
        Command::new(repo().join("scripts/install.sh"))
            .arg(build_dir())
            .env("PREFIX", prefix),
    );
    let version = env!("CARGO_PKG_VERSION");
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    let lib = prefix.join("lib");
    let real = lib.join(format!("libqemu_machine.so.{version}"));
    assert!(real.is_file());
    assert_eq!(
        std::fs::read_link(lib.join(format!("libqemu_machine.so.{major}"))).unwrap(),
        PathBuf::from(format!("libqemu_machine.so.{version}"))
    );
    assert_eq!(
        std::fs::read_link(lib.join("libqemu_machine.so")).unwrap(),
        PathBuf::from(format!("libqemu_machine.so.{major}"))
    );
    assert!(lib.join("libqemu_machine.a").is_file());
    assert!(prefix.join("include/qemu_machine.h").is_file());
    assert!(prefix.join("include/qemu_machine.hpp").is_file());

    let pkg = |args: &[&str]| -> Vec<String> {
        run_ok(
            Command::new("pkg-config")
                .args(args)
                .arg("qemu-machine")
                .env("PKG_CONFIG_PATH", lib.join("pkgconfig")),
        )
        .split_whitespace()
        .map(String::from)
        .collect()
    };
    assert_eq!(pkg(&["--modversion"]), [version]);
    let source = repo().join("examples/readme.c");

    // Dynamic: the ordinary build line, run through the SONAME link.
    let exe = prefix.join("readme-dynamic");
    run_ok(
        Command::new("cc")
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"])
            .arg(&source)
            .arg("-o")
            .arg(&exe)
            .args(pkg(&["--cflags", "--libs"])),
    );
    let needed = run_ok(Command::new("readelf").arg("-d").arg(&exe));
    assert!(
        needed.contains(&format!("[libqemu_machine.so.{major}]")),
        "{needed}"
    );
    let out = run_ok(Command::new(&exe).env("LD_LIBRARY_PATH", &lib));
    assert!(out.contains("\"STOP\""), "{out}");

    // Static: the archive plus Libs.private.
    let exe = prefix.join("readme-static");
    run_ok(
        Command::new("cc")
            .arg(&source)
            .arg("-o")
            .arg(&exe)
            .args(pkg(&["--cflags"]))
            .arg(lib.join("libqemu_machine.a"))
            .args(
                pkg(&["--static", "--libs-only-l"])
                    .iter()
                    .filter(|l| *l != "-lqemu_machine"),
            ),
    );
    let dynamic = run_ok(Command::new("readelf").arg("-d").arg(&exe));
    assert!(!dynamic.contains("libqemu_machine"), "{dynamic}");
    let out = run_ok(&mut Command::new(&exe));
    assert!(out.contains("\"running\""), "{out}");
}
