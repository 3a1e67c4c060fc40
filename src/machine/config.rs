//! [`Config`]: everything about a machine that is decided before launch.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::agent::AgentDevice;
use crate::console::{ConsoleConfig, DEFAULT_CONSOLE_BUFFER};
use crate::error::{Error, Result};
use crate::qmp::events::{DEFAULT_EVENT_QUEUE_BYTES, DEFAULT_EVENT_QUEUE_CAPACITY};

/// Default time QEMU gets to greet on QMP after it was started.
pub const DEFAULT_LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Default bound of every qtest call.
pub const DEFAULT_QTEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest Unix socket path (`sun_path` holds 108 bytes with the NUL).
pub const MAX_UNIX_SOCKET_PATH: usize = 107;

/// Serial ports before the console (`-serial null` each); QEMU has 4.
pub const MAX_CONSOLE_INDEX: u32 = 64;

/// A value as it must appear inside a QEMU option string
/// (`-chardev socket,path=VALUE`): QEMU splits options at commas and reads
/// a doubled comma as a literal one. Every value the library puts into an
/// option string goes through here.
pub(crate) fn opt_value(value: &str) -> String {
    value.replace(',', ",,")
}

/// Where QEMU's QMP monitor connects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MonitorAddress {
    /// A socketpair handed to QEMU as `-chardev socket,fd=N` (the default):
    /// no path, no port, no accept race, EOF the moment QEMU dies.
    #[default]
    SocketPair,
    /// The library listens on this Unix socket path (before QEMU starts)
    /// and QEMU connects to it. The socket file is removed at shutdown.
    Unix(PathBuf),
    /// The library listens on this TCP address and QEMU connects to it.
    /// Port 0 picks a free port ([`crate::Machine::monitor_port`]).
    Tcp {
        /// Host name or address to bind, exactly (e.g. `127.0.0.1`).
        host: String,
        /// Port, or 0 for any free port.
        port: u16,
    },
}

impl MonitorAddress {
    /// A Unix socket path, checked to fit `sun_path`
    /// ([`MAX_UNIX_SOCKET_PATH`] bytes).
    pub fn unix(path: impl Into<PathBuf>) -> Result<MonitorAddress> {
        let path = path.into();
        let len = path.as_os_str().len();
        if len == 0 || len > MAX_UNIX_SOCKET_PATH {
            return Err(Error::invalid(format!(
                "a Unix socket path must be 1 to {MAX_UNIX_SOCKET_PATH} bytes \
                 (the size of sun_path), got {len}: {}",
                path.display()
            )));
        }
        Ok(MonitorAddress::Unix(path))
    }

    /// A TCP address: `host` is bound exactly (port 0: any free port).
    pub fn tcp(host: impl Into<String>, port: u16) -> Result<MonitorAddress> {
        let host = host.into();
        if host.is_empty() || host.contains(',') {
            return Err(Error::invalid(format!(
                "a TCP monitor host must be a non-empty name or address without ',', got {host:?}"
            )));
        }
        Ok(MonitorAddress::Tcp { host, port })
    }
}

/// A descriptor handed to QEMU at launch with `-add-fd`.
#[derive(Debug, Clone)]
pub(crate) struct PassedFd {
    /// The library's own duplicate (close-on-exec in this process, made
    /// inheritable only in QEMU's child process).
    pub fd: Arc<OwnedFd>,
    pub fdset: u32,
    pub opaque: String,
    pub opts: Option<String>,
}

/// What to launch and how. Setters follow the `std::process::Command`
/// style (`&mut self` in, `&mut Self` out) so they chain.
///
/// ```
/// let mut config = qemu_machine::Config::new("qemu-system-x86_64");
/// config.machine_type("none").args(["-accel", "tcg", "-nodefaults"]);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) binary: String,
    pub(crate) args: Vec<String>,
    pub(crate) wrapper: Vec<String>,
    pub(crate) name: Option<String>,
    pub(crate) base_temp_dir: Option<PathBuf>,
    pub(crate) log_dir: Option<PathBuf>,
    pub(crate) machine_type: Option<String>,
    pub(crate) qmp_enabled: bool,
    pub(crate) monitor: MonitorAddress,
    pub(crate) launch_timeout: Option<Duration>,
    pub(crate) event_queue_capacity: usize,
    pub(crate) console: Option<ConsoleConfig>,
    pub(crate) console_log: Option<PathBuf>,
    pub(crate) console_buffer_limit: usize,
    pub(crate) fds: Vec<PassedFd>,
    pub(crate) qmp_trace: Option<PathBuf>,
    pub(crate) event_queue_bytes: usize,
    /// Changes to QEMU's environment, in order: `None` removes.
    pub(crate) env: Vec<(String, Option<String>)>,
    pub(crate) agent: Option<AgentDevice>,
    pub(crate) qtest: bool,
    pub(crate) qtest_timeout: Option<Duration>,
}

impl Config {
    /// A configuration for `binary` (a path, or a name looked up in `PATH`).
    /// The binary is not checked until launch.
    pub fn new(binary: impl Into<String>) -> Self {
        Config {
            binary: binary.into(),
            args: Vec::new(),
            wrapper: Vec::new(),
            name: None,
            base_temp_dir: None,
            log_dir: None,
            machine_type: None,
            qmp_enabled: true,
            monitor: MonitorAddress::SocketPair,
            launch_timeout: Some(DEFAULT_LAUNCH_TIMEOUT),
            event_queue_capacity: DEFAULT_EVENT_QUEUE_CAPACITY,
            console: None,
            console_log: None,
            console_buffer_limit: DEFAULT_CONSOLE_BUFFER,
            fds: Vec::new(),
            qmp_trace: None,
            event_queue_bytes: DEFAULT_EVENT_QUEUE_BYTES,
            env: Vec::new(),
            agent: None,
            qtest: false,
            qtest_timeout: Some(DEFAULT_QTEST_TIMEOUT),
        }
    }

    /// Append one QEMU argument (after the library's own). It reaches QEMU
    /// as one argv element: no shell is involved.
    pub fn arg(&mut self, arg: impl Into<String>) -> &mut Self {
        self.args.push(arg.into());
        self
    }

    /// Append several QEMU arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Append one word of the command that QEMU runs under
    /// (`valgrind`, `strace -f -o trace`, `taskset -c 1`).
    pub fn wrapper_arg(&mut self, arg: impl Into<String>) -> &mut Self {
        self.wrapper.push(arg.into());
        self
    }

    /// Name used for the log file (`<name>.log`). Default
    /// `qemu-<pid>-<n>`. [`Error::InvalidArgument`] unless it is a plain
    /// file name (not empty, no `/`, not `.` or `..`, no NUL), so the log
    /// stays in the log directory.
    pub fn name(&mut self, name: impl Into<String>) -> Result<&mut Self> {
        let name = name.into();
        if name.is_empty() || name.contains(['/', '\0']) || name == "." || name == ".." {
            return Err(Error::invalid(format!(
                "the name must be a plain file name (not empty, no '/', not '.' or '..'), \
                 got {name:?}"
            )));
        }
        self.name = Some(name);
        Ok(self)
    }

    /// Set an environment variable for QEMU only (`value` `None`: remove
    /// it from QEMU's environment). QEMU otherwise inherits this process's
    /// environment as it is at launch. [`Error::InvalidArgument`] for a
    /// name that is empty or holds `=` or NUL, or a value holding NUL.
    pub fn env(&mut self, name: &str, value: Option<&str>) -> Result<&mut Self> {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(Error::invalid(format!(
                "an environment variable name must be non-empty without '=' or NUL, got {name:?}"
            )));
        }
        if value.is_some_and(|v| v.contains('\0')) {
            return Err(Error::invalid(format!(
                "the value of {name} must not contain NUL"
            )));
        }
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_string(), value.map(str::to_string)));
        Ok(self)
    }

    /// Where the per-run temporary directory is created (default: `$TMPDIR`
    /// or `/tmp`).
    pub fn base_temp_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.base_temp_dir = Some(dir.into());
        self
    }

    /// Where QEMU's log file is written and kept after shutdown (default:
    /// the temporary directory, removed at shutdown; the log stays readable
    /// through [`crate::Machine::log`]).
    pub fn log_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.log_dir = Some(dir.into());
        self
    }

    /// Adds `-machine TYPE`.
    pub fn machine_type(&mut self, machine_type: impl Into<String>) -> &mut Self {
        self.machine_type = Some(machine_type.into());
        self
    }

    /// Whether to give QEMU a QMP monitor (default yes). Without one,
    /// shutdown sends SIGTERM and QMP calls fail with [`Error::State`].
    pub fn qmp(&mut self, enabled: bool) -> &mut Self {
        self.qmp_enabled = enabled;
        self
    }

    /// Put the QMP monitor on a Unix socket at `path` that the library
    /// listens on before QEMU starts. [`Error::InvalidArgument`] if the path
    /// does not fit `sun_path` ([`MAX_UNIX_SOCKET_PATH`] bytes).
    pub fn monitor_unix(&mut self, path: impl Into<PathBuf>) -> Result<&mut Self> {
        Ok(self.monitor(MonitorAddress::unix(path)?))
    }

    /// Put the QMP monitor on TCP: the library listens on exactly `host`
    /// (port 0: any free port) and QEMU connects to it.
    pub fn monitor_tcp(&mut self, host: impl Into<String>, port: u16) -> Result<&mut Self> {
        Ok(self.monitor(MonitorAddress::tcp(host, port)?))
    }

    /// Where the QMP monitor connects (see [`MonitorAddress`]).
    pub fn monitor(&mut self, address: MonitorAddress) -> &mut Self {
        self.monitor = address;
        self
    }

    /// The monitor address (default [`MonitorAddress::SocketPair`]).
    pub fn get_monitor(&self) -> &MonitorAddress {
        &self.monitor
    }

    /// Adds `-monitor null`: an unused human monitor, so that QEMU does not
    /// create its default one.
    pub fn add_monitor_null(&mut self) -> &mut Self {
        self.args(["-monitor", "null"])
    }

    /// Pass a descriptor to QEMU at launch: `-add-fd
    /// fd=N,set=FDSET,opaque=OPAQUE[,OPTS]`, usable in QEMU as
    /// `/dev/fdset/FDSET`. The library keeps its own duplicate (so the
    /// caller may close `fd` at once); the duplicate is close-on-exec and
    /// becomes inheritable only in QEMU's child process, so no other
    /// process the host starts ever inherits it.
    pub fn add_fd(
        &mut self,
        fd: BorrowedFd<'_>,
        fdset: u32,
        opaque: &str,
        opts: Option<&str>,
    ) -> Result<&mut Self> {
        let dup = fd
            .try_clone_to_owned()
            .map_err(|e| Error::invalid(format!("cannot use the descriptor: {e}")))?;
        self.fds.push(PassedFd {
            fd: Arc::new(dup),
            fdset,
            opaque: opaque.to_string(),
            opts: opts.filter(|o| !o.is_empty()).map(str::to_string),
        });
        Ok(self)
    }

    /// Append every QMP line sent and received, with a direction marker
    /// (`>>` sent, `<<` received) and a `CLOCK_MONOTONIC` timestamp, to the
    /// file at `path`.
    pub fn qmp_trace(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.qmp_trace = Some(path.into());
        self
    }

    /// How long QEMU has to start and complete QMP negotiation (`None`:
    /// forever). Default 30 s.
    pub fn launch_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.launch_timeout = timeout;
        self
    }

    /// Bound of the event queue (default 65536). Beyond it the oldest event
    /// is dropped and counted.
    pub fn event_queue_capacity(&mut self, capacity: usize) -> &mut Self {
        self.event_queue_capacity = capacity.max(1);
        self
    }

    /// Bound of the event queue in bytes of event text (default 16 MiB).
    /// Beyond it the oldest events are dropped and counted.
    pub fn event_queue_bytes(&mut self, bytes: usize) -> &mut Self {
        self.event_queue_bytes = bytes.max(1);
        self
    }

    /// Attach a serial console (`QEMUMachine.set_console`): `device_type`
    /// `None` adds `-serial chardev:console` (the machine's default serial
    /// device), otherwise `-device TYPE,chardev=console`; `index` adds that
    /// many `-serial null` first. The console is a socketpair drained by a
    /// library thread, so no output is ever lost and QEMU never blocks on
    /// it. [`Error::InvalidArgument`] for an index above
    /// [`MAX_CONSOLE_INDEX`] or an empty device type.
    pub fn console(&mut self, device_type: Option<&str>, index: u32) -> Result<&mut Self> {
        if index > MAX_CONSOLE_INDEX {
            return Err(Error::invalid(format!(
                "the console index must be at most {MAX_CONSOLE_INDEX}, got {index}"
            )));
        }
        if device_type == Some("") {
            return Err(Error::invalid(
                "the console device type must not be empty (none: the default serial port)",
            ));
        }
        self.console = Some(ConsoleConfig {
            device_type: device_type.map(str::to_owned),
            index,
        });
        Ok(self)
    }

    /// Also append the console output to this file as it arrives (created
    /// if missing). Enables the default console if none is set.
    pub fn console_log(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.console_log = Some(path.into());
        if self.console.is_none() {
            self.console = Some(ConsoleConfig::default());
        }
        self
    }

    /// Bound of the console output kept in memory (default 64 MiB); beyond
    /// it the oldest output is dropped and counted.
    pub fn console_buffer_limit(&mut self, bytes: usize) -> &mut Self {
        self.console_buffer_limit = bytes.max(1);
        self
    }

    /// Give the guest a channel for the QEMU guest agent (`qemu-ga`), on a
    /// socketpair the library owns: `device_type` `None` adds a
    /// virtio-serial bus with a port named `org.qemu.guest_agent.0` (the
    /// guest runs `qemu-ga -m virtio-serial`); otherwise
    /// `-device TYPE,chardev=...`, e.g. `"isa-serial"` for one more ISA
    /// serial port (the guest runs `qemu-ga -m isa-serial -p /dev/ttySN`).
    /// [`Error::InvalidArgument`] for an empty device type.
    pub fn agent(&mut self, device_type: Option<&str>) -> Result<&mut Self> {
        self.agent = Some(match device_type {
            None => AgentDevice::VirtioSerial,
            Some("") => {
                return Err(Error::invalid(
                    "the agent's device type must not be empty (none: a virtio-serial port)",
                ))
            }
            Some(device) => AgentDevice::Device(device.to_string()),
        });
        Ok(self)
    }

    /// Run QEMU under qtest (device-level tests without guest code): the
    /// qtest protocol on a socketpair the library owns
    /// (`-qtest chardev:...`, its log off), and `-accel qtest` unless the
    /// arguments or the machine type choose an accelerator. QMP stays
    /// available beside it. QEMU needs its qtest accelerator module for
    /// `-accel qtest` (Debian and Ubuntu delete it; see
    /// `scripts/build-qtest-accel.sh` and [`Config::env`] with
    /// `QEMU_MODULE_DIR`); with `-accel tcg -S` memory, port and IRQ calls
    /// work, the virtual clock calls do not.
    pub fn qtest(&mut self) -> &mut Self {
        self.qtest = true;
        self
    }

    /// Bound of every qtest call (`None`: forever). Default 30 s.
    pub fn qtest_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.qtest_timeout = timeout;
        self
    }

    /// Whether the arguments or the machine type choose an accelerator.
    pub(crate) fn chooses_accelerator(&self) -> bool {
        self.args.iter().any(|a| a == "-accel" || a == "--accel")
            || self
                .machine_type
                .as_deref()
                .is_some_and(|m| m.split(',').any(|o| o.starts_with("accel=")))
            || self
                .args
                .windows(2)
                .any(|w| (w[0] == "-machine" || w[0] == "-M") && w[1].contains("accel="))
    }

    /// The changes to QEMU's environment, in order (`None`: removed).
    pub fn get_env(&self) -> &[(String, Option<String>)] {
        &self.env
    }

    /// The QEMU arguments given so far (not including the library's own).
    pub fn get_args(&self) -> &[String] {
        &self.args
    }

    /// The command line as far as it is known before launch, for messages.
    pub(crate) fn preview_argv(&self) -> Vec<String> {
        let mut argv = self.wrapper.clone();
        argv.push(self.binary.clone());
        argv.extend(self.args.iter().cloned());
        argv
    }
}

impl PassedFd {
    /// The `-add-fd` option value for descriptor number `fd`. Commas in the
    /// opaque string are doubled, QEMU's escape for them.
    pub(crate) fn add_fd_arg(&self, fd: i32) -> String {
        let mut arg = format!(
            "fd={fd},set={},opaque={}",
            self.fdset,
            opt_value(&self.opaque)
        );
        if let Some(opts) = &self.opts {
            arg.push(',');
            arg.push_str(opts);
        }
        arg
    }
}
