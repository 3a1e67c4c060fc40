//! Every code example in README.md is a file that the tests build and run
//! (C: tests/install.rs and tests/c_api.rs; C++: tests/c_api.rs; Rust:
//! here; Python and Go: their own test suites). This checks that the README shows each of them
//! verbatim, so the README cannot drift from what is tested.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const EXAMPLES: &[(&str, &str)] = &[
    ("c", "examples/readme.c"),
    ("c", "examples/agent.c"),
    ("c", "examples/qtest_rtc.c"),
    ("c", "examples/ci_test.c"),
    ("cpp", "examples/readme.cpp"),
    ("cpp", "examples/agent.cpp"),
    ("rust", "examples/rust_api.rs"),
    ("rust", "examples/rust_agent.rs"),
    ("python", "bindings/python/examples/test_pytest_example.py"),
    ("python", "bindings/python/examples/readme_example.py"),
    ("python", "bindings/python/examples/asyncio_example.py"),
    ("python", "bindings/python/examples/agent_example.py"),
    ("python", "bindings/python/examples/qtest_example.py"),
    ("go", "bindings/go/examples/readme/main.go"),
    ("go", "bindings/go/examples/agent/main.go"),
    ("go", "bindings/go/examples/listen/main.go"),
    ("go", "bindings/go/examples/qemumachinetest/example_test.go"),
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn readme_shows_every_example_verbatim() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for (lang, file) in EXAMPLES {
        let code =
            std::fs::read_to_string(repo().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let block = format!("```{lang}\n{code}```\n");
        assert!(
            readme.contains(&block),
            "README.md must contain {file} verbatim in a ```{lang} block"
        );
    }
}

/// cargo builds the examples next to the test binaries' directory.
fn example(name: &str) -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}

#[test]
fn the_rust_agent_example_runs() {
    let guest = common::guest_dir();
    let out = common::run_ok(Command::new(example("rust_agent")).arg(&guest));
    let package = std::fs::read_to_string(guest.join("kernel-package")).unwrap();
    let release = package.trim().trim_start_matches("linux-image-");
    assert!(
        out.contains(&format!("exit code: 0\noutput: {release}\n")),
        "{out}"
    );
}

#[test]
fn the_rust_example_runs() {
    let exe = example("rust_api");
    let out = Command::new(&exe)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("\"STOP\"") && text.contains("exited with status 0"),
        "{text}"
    );
}
