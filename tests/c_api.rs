//! Builds the C programs in `c-tests/` against the shared library with
//! `-std=c11 -Wall -Wextra -Werror -pedantic` and runs them. With `CI` set
//! (or `QM_VALGRIND=1`) each runs under valgrind, which must report no
//! errors and no definite leaks.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use common::run_ok;

const C_FLAGS: &[&str] = &["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"];
const CXX_FLAGS: &[&str] = &["-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The cdylib cargo built next to this test binary.
fn built_library() -> PathBuf {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let lib = deps.join("libqemu_machine.so");
    assert!(lib.exists(), "{} is missing", lib.display());
    lib
}

fn out_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c-tests")
}

/// A directory holding `libqemu_machine.so` and its SONAME link
/// `libqemu_machine.so.0`, to link and run against.
fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = out_dir().join("lib");
        std::fs::create_dir_all(&dir).unwrap();
        let lib = built_library();
        for name in ["libqemu_machine.so", &soname()] {
            let link = dir.join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&lib, &link).unwrap();
        }
        dir
    })
}

fn soname() -> String {
    format!("libqemu_machine.so.{}", env!("CARGO_PKG_VERSION_MAJOR"))
}

/// Build `source` (relative to the repository) against the library, once
/// per test process: tests that run one program in several ways share it
/// (building it twice at once would let one test run a half-written file).
fn compile(source: &str, compiler: &str, flags: &[&str]) -> PathBuf {
    type Built = Arc<OnceLock<PathBuf>>;
    static BUILT: Mutex<BTreeMap<String, Built>> = Mutex::new(BTreeMap::new());
    let once = Arc::clone(
        BUILT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(source.to_string())
            .or_default(),
    );
    once.get_or_init(|| {
        let src = repo().join(source);
        let exe = out_dir().join(source.replace(['.', '/'], "_"));
        std::fs::create_dir_all(out_dir()).unwrap();
        let lib = lib_dir();
        run_ok(
            Command::new(compiler)
                .args(flags)
                .arg("-I")
                .arg(repo().join("include"))
                .arg("-o")
                .arg(&exe)
                .arg(&src)
                .arg("-L")
                .arg(lib)
                .arg(format!("-Wl,-rpath,{}", lib.display()))
                .args(["-lqemu_machine", "-lpthread"]),
        );
        exe
    })
    .clone()
}

fn under_valgrind() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
        || std::env::var_os("QM_VALGRIND").is_some_and(|v| v == "1")
}

/// Compile `c-tests/<name>.c` and run it (under valgrind in CI).
fn run_c_test(name: &str) {
    run_program(name, compile(&format!("c-tests/{name}.c"), "cc", C_FLAGS));
}

/// Compile `c-tests/<name>.cpp` as C++17 and run it (under valgrind in CI).
fn run_cpp_test(name: &str) {
    run_program(
        name,
        compile(&format!("c-tests/{name}.cpp"), "c++", CXX_FLAGS),
    );
}

/// What the C programs find their test inputs by: the guest and the qtest
/// accelerator module (each built on first use; a missing one fails).
fn with_test_env(cmd: &mut Command) -> &mut Command {
    cmd.env("QM_TEST_GUEST_DIR", common::guest_dir())
        .env("QM_TEST_QTEST_ACCEL_DIR", common::qtest_accel_dir())
}

/// Run an example (under valgrind in CI) and return what it printed.
fn run_example(exe: PathBuf) -> String {
    let mut cmd = if under_valgrind() {
        valgrind(&exe)
    } else {
        Command::new(&exe)
    };
    run_ok(with_test_env(&mut cmd))
}

fn valgrind(exe: &Path) -> Command {
    let mut c = Command::new("valgrind");
    c.args([
        "--error-exitcode=1",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite",
        "--track-fds=no",
        "--quiet",
    ])
    .arg(exe);
    c
}

fn run_program(name: &str, exe: PathBuf) {
    let text = run_example(exe);
    assert!(text.contains(&format!("{name}: ok")), "{text}");
}

#[test]
fn c_lifecycle() {
    run_c_test("lifecycle");
}

/// Not under valgrind: a child forked without exec holds copies of its
/// parent's threads' memory that no thread of the child can reach, which
/// valgrind reports as the child's leaks.
#[test]
fn c_fork() {
    let exe = compile("c-tests/fork.c", "cc", C_FLAGS);
    let mut cmd = Command::new(exe);
    assert!(run_ok(&mut cmd).contains("fork: ok"));
}

#[test]
fn c_listeners_and_split_commands() {
    run_c_test("listeners");
}

/// Not under valgrind: filling a listener takes 66000 QMP commands and as
/// many events (about 15 s), which valgrind stretches to minutes. The
/// calls involved run under valgrind in `c_listeners_and_split_commands`.
#[test]
fn c_listener_full_drops_the_oldest_and_counts() {
    let exe = compile("c-tests/listeners.c", "cc", C_FLAGS);
    let out = run_ok(Command::new(exe).arg("flood"));
    assert!(out.contains("listeners flood: ok"), "{out}");
}

#[test]
fn c_agent_on_both_channel_types() {
    run_c_test("agent");
}

/// Not under valgrind: 16 MiB of output arrive as 22 MB of base64, which
/// takes a minute to decode under valgrind. `c_agent_on_both_channel_types`
/// runs the same calls under valgrind.
#[test]
fn c_agent_output_beyond_16_mib_is_cut_and_flagged() {
    let exe = compile("c-tests/agent.c", "cc", C_FLAGS);
    let out = run_ok(with_test_env(Command::new(exe).arg("truncation")));
    assert!(out.contains("agent truncation: ok"), "{out}");
}

#[test]
fn c_qtest() {
    run_c_test("qtest");
}

#[test]
fn c_artifacts_probes_and_migration() {
    run_c_test("harness");
}

#[test]
fn c_event_loop_with_qemu_killed_mid_loop() {
    run_c_test("event_loop_kill");
}

/// examples/event_loop.c: 8 machines in one epoll loop; every command
/// answered in its machine's order, every event delivered.
#[test]
fn example_event_loop() {
    let exe = compile("examples/event_loop.c", "cc", C_FLAGS);
    let out = run_example(exe);
    assert!(
        out.contains("8 machines: 32 commands answered, 16 events delivered"),
        "{out}"
    );
    for vm in 0..8 {
        let prefix = format!("vm{vm} ");
        let lines: Vec<&str> = out.lines().filter(|l| l.starts_with(&prefix)).collect();
        let replies: Vec<&&str> = lines.iter().filter(|l| l.contains(" -> ")).collect();
        let events: Vec<&&str> = lines.iter().filter(|l| l.contains(" event ")).collect();
        let expected = [
            ("stop ", "{\"return\": {}}"),
            ("query-status", "\"paused\""),
            ("cont ", "{\"return\": {}}"),
            ("query-status", "\"running\""),
        ];
        assert_eq!(replies.len(), expected.len(), "{out}");
        for (line, (cmd, answer)) in replies.iter().zip(expected) {
            assert!(line.contains(cmd) && line.contains(answer), "{line}\n{out}");
        }
        assert_eq!(events.len(), 2, "{out}");
        assert!(events[0].contains("\"STOP\""), "{out}");
        assert!(events[1].contains("\"RESUME\""), "{out}");
    }
}

/// examples/agent.c: boots the test guest and runs `uname -r` in it
/// through the guest agent.
#[test]
fn example_agent() {
    let exe = compile("examples/agent.c", "cc", C_FLAGS);
    let mut cmd = if under_valgrind() {
        valgrind(&exe)
    } else {
        Command::new(&exe)
    };
    let out = run_ok(cmd.arg(common::guest_dir()));
    let release = std::fs::read_to_string(common::guest_dir().join("kernel-package")).unwrap();
    let release = release.trim().trim_start_matches("linux-image-");
    assert!(
        out.contains(&format!("exit code: 0\noutput: {release}\n")),
        "{out}"
    );
}

/// examples/qtest_rtc.c: an out-of-tree device test, given the module's
/// directory on its command line.
#[test]
fn example_qtest_rtc() {
    let exe = compile("examples/qtest_rtc.c", "cc", C_FLAGS);
    let mut cmd = if under_valgrind() {
        valgrind(&exe)
    } else {
        Command::new(&exe)
    };
    let out = run_ok(cmd.arg(common::qtest_accel_dir()));
    for check in [
        "seconds follow",
        "IRQ 8 raised within 2 ms",
        "register C says periodic",
        "IRQ 8 lowered",
    ] {
        let line = out.lines().find(|l| l.starts_with(check));
        assert!(line.is_some_and(|l| l.ends_with(" ok")), "{check}:\n{out}");
    }
    assert!(!out.contains("FAILED"), "{out}");
}

/// examples/ci_test.c passes; made to fail (it is told to expect a paused
/// QEMU), it saves the artifacts where it says, into $QM_ARTIFACTS_DIR or
/// else a new directory.
#[test]
fn example_ci_test_saves_artifacts_when_it_fails() {
    let exe = compile("examples/ci_test.c", "cc", C_FLAGS);
    let mut passing = if under_valgrind() {
        valgrind(&exe)
    } else {
        Command::new(&exe)
    };
    assert!(run_ok(&mut passing).contains("ci_test: passed"));

    let failing = |artifacts_dir: Option<&Path>| -> PathBuf {
        let mut cmd = Command::new(&exe);
        cmd.env("CI_TEST_EXPECT_STATUS", "paused")
            .env_remove("QM_ARTIFACTS_DIR");
        if let Some(dir) = artifacts_dir {
            cmd.env("QM_ARTIFACTS_DIR", dir);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("FAILED: strstr(status, expected) != NULL"),
            "{stderr}"
        );
        let dir = stderr
            .lines()
            .find_map(|l| l.strip_prefix("artifacts saved in "))
            .unwrap_or_else(|| panic!("no artifacts path in: {stderr}"));
        PathBuf::from(dir)
    };
    let read = |dir: &Path, name: &str| {
        std::fs::read_to_string(dir.join(name))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
    };
    let check = |dir: &Path| {
        assert!(read(dir, "status.txt").starts_with("running (pid "));
        let events = read(dir, "events.jsonl");
        assert!(
            events.contains("\"STOP\"") && events.contains("\"RESUME\""),
            "{events}"
        );
        assert!(read(dir, "command-line.txt").contains("-nodefaults"));
        read(dir, "qemu.log");
    };

    let made = failing(None);
    check(&made);
    std::fs::remove_dir_all(&made).unwrap();

    let scratch = common::scratch_dir();
    let chosen = scratch.path().join("artifacts");
    assert_eq!(failing(Some(&chosen)), chosen);
    check(&chosen);
}

/// examples/demo.c builds with the strict flags (`make demo` runs it).
#[test]
fn demo_builds() {
    compile("examples/demo.c", "cc", C_FLAGS);
}

#[test]
fn c_qmp() {
    run_c_test("qmp");
}

#[test]
fn c_events() {
    run_c_test("events");
}

#[test]
fn c_errors() {
    run_c_test("errors");
}

#[test]
fn c_bad_input_for_every_function() {
    run_c_test("bad_input");
}

#[test]
fn every_exported_function_has_bad_input_cases() {
    let symbols = run_ok(
        Command::new("nm")
            .args(["-D", "--defined-only"])
            .arg(built_library()),
    );
    let table = std::fs::read_to_string(repo().join("c-tests/bad_input.c")).unwrap();
    let missing: Vec<&str> = symbols
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|name| name.starts_with("qm_") && !table.contains(&format!("{name}(")))
        .collect();
    assert!(
        missing.is_empty(),
        "not exercised by c-tests/bad_input.c: {missing:?}"
    );
}

#[test]
fn c_console_against_the_guest() {
    run_c_test("console");
}

#[test]
fn c_features() {
    run_c_test("features");
}

#[test]
fn c_free_while_other_threads_wait() {
    run_c_test("free_while_waiting");
}

#[test]
fn cpp_raii_wrapper() {
    run_cpp_test("cpp_wrapper");
}

#[test]
fn cpp_readme_example() {
    let exe = compile("examples/readme.cpp", "c++", CXX_FLAGS);
    let out = run_ok(&mut Command::new(&exe));
    assert!(out.contains("\"STOP\""), "{out}");
}

#[test]
fn cpp_agent_example() {
    let exe = compile("examples/agent.cpp", "c++", CXX_FLAGS);
    let guest = common::guest_dir();
    let out = run_ok(Command::new(&exe).arg(&guest));
    let package = std::fs::read_to_string(guest.join("kernel-package")).unwrap();
    let release = package.trim().trim_start_matches("linux-image-");
    assert!(
        out.contains(&format!("exit code: 0\noutput: {release}\n")),
        "{out}"
    );
}

#[test]
fn c_threads() {
    run_c_test("threads");
}

#[test]
fn api_md_functions_are_declared_with_their_signatures() {
    run_c_test("api_decls");
}

#[test]
fn header_compiles_alone_as_c11_and_cpp17_and_twice() {
    let header = repo().join("include/qemu_machine.h");
    run_ok(
        Command::new("cc")
            .args(C_FLAGS)
            .args(["-fsyntax-only", "-x", "c"])
            .arg(&header),
    );
    run_ok(
        Command::new("c++")
            .args(CXX_FLAGS)
            .args(["-fsyntax-only", "-x", "c++"])
            .arg(&header),
    );
    run_ok(
        Command::new("c++")
            .args(CXX_FLAGS)
            .args(["-fsyntax-only", "-x", "c++", "-I"])
            .arg(repo().join("include"))
            .arg(repo().join("include/qemu_machine.hpp")),
    );
    run_ok(&mut Command::new(compile(
        "c-tests/header_twice.c",
        "cc",
        C_FLAGS,
    )));
    run_ok(&mut Command::new(compile(
        "c-tests/header_twice.cpp",
        "c++",
        CXX_FLAGS,
    )));
}

#[test]
fn header_macros_are_ours_and_match_the_crate_version() {
    let header = std::fs::read_to_string(repo().join("include/qemu_machine.h")).unwrap();
    for line in header.lines().filter(|l| l.starts_with("#define")) {
        let name = line.split_whitespace().nth(1).unwrap();
        assert!(
            name.starts_with("QM_") || name == "QEMU_MACHINE_H",
            "foreign macro in the header: {line}"
        );
    }
    for (macro_name, value) in [
        ("QM_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("QM_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("QM_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        assert!(
            header.contains(&format!("#define {macro_name} {value}\n")),
            "{macro_name} does not match Cargo.toml"
        );
    }
    assert!(header.contains(&format!(
        "#define QM_VERSION_STRING \"{}\"",
        env!("CARGO_PKG_VERSION")
    )));
}

#[test]
fn shared_library_exports_only_qm_symbols_and_has_a_soname() {
    let lib = built_library();
    let symbols = run_ok(Command::new("nm").args(["-D", "--defined-only"]).arg(&lib));
    let names: Vec<&str> = symbols
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert!(names.contains(&"qm_launch"), "{symbols}");
    let foreign: Vec<&&str> = names.iter().filter(|n| !n.starts_with("qm_")).collect();
    assert!(foreign.is_empty(), "symbols outside qm_*: {foreign:?}");

    let dynamic = run_ok(Command::new("readelf").arg("-d").arg(&lib));
    assert!(
        dynamic.contains(&format!("Library soname: [{}]", soname())),
        "{dynamic}"
    );
}
