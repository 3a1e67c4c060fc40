//! Shared helpers of the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use qemu_machine::{Config, Machine};

/// The QEMU binary the tests drive (`QM_TEST_QEMU` overrides).
pub fn qemu_binary() -> String {
    std::env::var("QM_TEST_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".to_string())
}

/// `-machine none` under TCG with no default devices: starts in ~20 ms.
pub fn none_config() -> Config {
    let mut config = Config::new(qemu_binary());
    config
        .machine_type("none")
        .args(["-accel", "tcg", "-nodefaults"]);
    config
}

pub fn launched_none() -> Machine {
    let m = Machine::new(none_config());
    m.launch().expect("launch");
    m
}

pub const SHORT: Option<Duration> = Some(Duration::from_secs(10));

pub fn ms(n: u64) -> Option<Duration> {
    Some(Duration::from_millis(n))
}

/// Scheduling slack for "returned promptly" bounds. The machines running
/// the tests are shared and run suites side by side, so a liveness check
/// allows its budget plus this; a hang still fails it by far.
pub const SLACK: Duration = Duration::from_millis(1500);

/// `budget` plus [`SLACK`].
#[allow(dead_code)]
pub fn slack(budget: Duration) -> Duration {
    budget + SLACK
}

/// `budget_ms` plus [`SLACK`], in milliseconds.
#[allow(dead_code)]
pub fn slack_ms(budget_ms: u128) -> u128 {
    budget_ms + SLACK.as_millis()
}

/// Children of this process, by scanning /proc.
pub fn child_pids() -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Field 4 (ppid) follows the parenthesised command name.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: i32 = after.split(' ').nth(1).unwrap().parse().unwrap();
        if ppid == me {
            out.push(pid);
        }
    }
    out
}

/// Open descriptors of this process.
pub fn open_fds() -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            Some(format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                target.display()
            ))
        })
        .collect();
    fds.sort();
    fds
}

pub fn process_exists(pid: i32) -> bool {
    PathBuf::from(format!("/proc/{pid}")).exists()
}

/// A fresh directory for a test's files.
pub fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("qm-test-")
        .tempdir()
        .expect("scratch dir")
}

pub fn signal(pid: i32, sig: i32) {
    // SAFETY: sending a signal to a test-owned child.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// The test guest (kernel + busybox initramfs), built on first use by
/// `scripts/build-guest.sh` and cached under `target/guest`. Fails loudly,
/// never skips, when it cannot be built.
pub fn guest_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-guest.sh");
        let out = std::process::Command::new(script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
        assert!(
            out.status.success(),
            "the test guest could not be built ({script} failed; it needs apt-get, \
             dpkg-deb, cpio, xz, zstd and readelf — `make test` installs them):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        assert!(dir.join("vmlinux").exists() && dir.join("initramfs.cpio.gz").exists());
        dir
    })
    .clone()
}

/// The directory holding QEMU's qtest accelerator module, built on first
/// use by `scripts/build-qtest-accel.sh` from Debian's own source package
/// (Debian deletes the module) and cached under `target/qtest-accel`.
/// Fails loudly, never skips, when it cannot be built.
pub fn qtest_accel_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-qtest-accel.sh");
        let out = std::process::Command::new(script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
        assert!(
            out.status.success(),
            "the qtest accelerator could not be built ({script} failed; `make test` runs it):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        assert!(dir.join("accel-qtest-x86_64.so").exists());
        dir
    })
    .clone()
}

/// A `-machine pc` QEMU under qtest with the accelerator module, the RTC on
/// the virtual clock (as QEMU's own rtc-test).
pub fn qtest_config() -> Config {
    let mut config = Config::new(qemu_binary());
    config
        .machine_type("pc")
        .args(["-nodefaults", "-rtc", "clock=vm"])
        .qtest()
        .env("QEMU_MODULE_DIR", Some(qtest_accel_dir().to_str().unwrap()))
        .unwrap();
    config
}

/// Deterministic pseudo-random bytes (every value occurs), for data that
/// must survive a round trip byte-exact.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Run QEMU through a shell that waits `seconds` before exec'ing it: a
/// launch that stays in progress that long.
pub fn delayed_start(config: &mut Config, seconds: f64) {
    config
        .wrapper_arg("sh")
        .wrapper_arg("-c")
        .wrapper_arg(format!("sleep {seconds}; exec \"$@\""))
        .wrapper_arg("sh");
}

/// In a fake peer started in place of QEMU: the socket the library handed
/// it as `-chardev socket,id=<id>,fd=N`.
pub fn inherited_socket(id: &str) -> std::os::unix::net::UnixStream {
    use std::os::fd::FromRawFd;
    let prefix = format!("socket,id={id},fd=");
    let fd: i32 = std::env::args()
        .find_map(|a| a.strip_prefix(&prefix).map(str::to_string))
        .unwrap_or_else(|| panic!("-chardev {prefix}N among the arguments"))
        .parse()
        .unwrap();
    // SAFETY: the library handed this descriptor to this process for
    // exactly this use, and nothing else owns it.
    unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) }
}

/// The guest's shell prompt (no newline after it).
pub const PROMPT: &str = "guest# ";
pub const READY: &str = "QM-GUEST-READY";
pub const BOOT: Option<Duration> = Some(Duration::from_secs(60));

/// A Linux guest with a console on ttyS0 (`console_index` 0).
pub fn guest_config() -> Config {
    guest_config_on("ttyS0")
}

/// A Linux guest whose kernel console is `tty`; the caller sets the
/// console device to match.
pub fn guest_config_on(tty: &str) -> Config {
    let dir = guest_dir();
    let mut config = Config::new(qemu_binary());
    config
        .args(["-accel", "tcg", "-m", "256", "-nodefaults", "-no-reboot"])
        .arg("-kernel")
        .arg(dir.join("vmlinux").to_str().unwrap())
        .arg("-initrd")
        .arg(dir.join("initramfs.cpio.gz").to_str().unwrap())
        .arg("-append")
        .arg(format!("console={tty} panic=-1"))
        .console(None, 0)
        .expect("console 0");
    config
}

/// Launch a guest and wait for its shell prompt.
pub fn booted_guest(config: Config) -> Machine {
    let m = Machine::new(config);
    m.launch().expect("launch guest");
    m.console_wait(READY, Some("Kernel panic"), BOOT)
        .expect("guest ready");
    m.console_wait(PROMPT, None, BOOT).expect("guest prompt");
    m
}

/// Run a command to success and return its stdout and stderr; panics with
/// both otherwise.
pub fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}",
        out.status
    );
    text
}
