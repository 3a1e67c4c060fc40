//! What a launch prepares before QEMU starts (temporary directory, log
//! file, sockets, command line), and how the QMP connection is established:
//! a socketpair, or a socket the library listens on and QEMU connects to.

use std::fs::{File, OpenOptions};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use super::config::{Config, MonitorAddress};
use crate::console::Console;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::process::QemuProcess;
use crate::socket::{poll_one, Ready, Socket};

/// Serial ports before the console (`-serial null` each); QEMU has 4.
const MAX_CONSOLE_INDEX: u32 = 64;

/// Without a pidfd, how often a wait for QEMU's connection checks that
/// QEMU is still alive.
const EXIT_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// The kind of socket the QMP connection runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// A Unix socket: descriptors can be passed over it.
    Unix,
    Tcp,
}

/// How the QMP connection will come about.
pub(crate) enum QmpEndpoint {
    /// QMP disabled.
    None,
    /// Our end of a socketpair: connected from the start.
    Connected(Socket),
    /// A listening socket QEMU will connect to.
    Listening(Listener),
}

/// A socket the library listens on for QEMU's QMP connection.
pub(crate) enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Everything a launch needs before QEMU starts.
pub(crate) struct Prepared {
    pub temp_dir: TempDir,
    pub log_path: PathBuf,
    pub log_file: File,
    pub argv: Vec<String>,
    pub qmp: QmpEndpoint,
    pub transport: Transport,
    /// The TCP port QEMU will connect to, if the monitor is on TCP.
    pub monitor_port: Option<u16>,
    /// Files to remove when the run ends (a Unix monitor socket).
    pub remove_on_finish: Vec<PathBuf>,
    pub console: Option<Console>,
    /// Our copies of QEMU's ends of socketpairs: closed right after the
    /// spawn, so that QEMU's exit shows up as EOF.
    pub qemu_ends: Vec<OwnedFd>,
    /// Every descriptor QEMU inherits (the socketpair ends and the
    /// `-add-fd` descriptors).
    pub inherit: Vec<RawFd>,
}

impl Prepared {
    /// Create everything; on error, whatever was created is released again
    /// and the message says what failed.
    pub(crate) fn new(config: &Config, machine_id: u64) -> std::result::Result<Prepared, String> {
        let base = config
            .base_temp_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let temp_dir = tempfile::Builder::new()
            .prefix("qemu-machine-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&base)
            .map_err(|e| {
                format!(
                    "cannot create a temporary directory in {}: {e}",
                    base.display()
                )
            })?;
        let name = config
            .name
            .clone()
            .unwrap_or_else(|| format!("qemu-{}-{machine_id}", std::process::id()));
        let log_dir = config
            .log_dir
            .clone()
            .unwrap_or_else(|| temp_dir.path().to_path_buf());
        let log_path = log_dir.join(format!("{name}.log"));
        let log_file = File::create(&log_path)
            .map_err(|e| format!("cannot create the log file {}: {e}", log_path.display()))?;

        let mut argv = config.wrapper.clone();
        argv.push(config.binary.clone());
        argv.extend(["-display", "none", "-vga", "none"].map(String::from));
        let mut qemu_ends = Vec::new();
        let mut inherit = Vec::new();
        let mut remove_on_finish = Vec::new();
        let mut monitor_port = None;
        let mut transport = Transport::Unix;
        let qmp = if !config.qmp_enabled {
            QmpEndpoint::None
        } else {
            let (chardev, endpoint) = match &config.monitor {
                MonitorAddress::SocketPair => {
                    let (ours, theirs) = Socket::pair()
                        .map_err(|e| format!("cannot create the QMP socket pair: {e}"))?;
                    let chardev = format!("socket,id=mon,fd={}", theirs.as_raw_fd());
                    inherit.push(theirs.as_raw_fd());
                    qemu_ends.push(theirs.into_fd());
                    (chardev, QmpEndpoint::Connected(ours))
                }
                MonitorAddress::Unix(path) => {
                    let listener = UnixListener::bind(path).map_err(|e| {
                        format!("cannot listen on the Unix socket {}: {e}", path.display())
                    })?;
                    remove_on_finish.push(path.clone());
                    let chardev = format!("socket,id=mon,path={}", path.display());
                    (chardev, QmpEndpoint::Listening(Listener::Unix(listener)))
                }
                MonitorAddress::Tcp { host, port } => {
                    transport = Transport::Tcp;
                    let listener = TcpListener::bind((host.as_str(), *port))
                        .map_err(|e| format!("cannot listen on TCP {host}:{port}: {e}"))?;
                    let bound = listener
                        .local_addr()
                        .map_err(|e| format!("cannot read the bound TCP address: {e}"))?;
                    monitor_port = Some(bound.port());
                    let chardev =
                        format!("socket,id=mon,host={},port={}", bound.ip(), bound.port());
                    (chardev, QmpEndpoint::Listening(Listener::Tcp(listener)))
                }
            };
            argv.extend([
                "-chardev".to_string(),
                chardev,
                "-mon".to_string(),
                "chardev=mon,mode=control".to_string(),
            ]);
            endpoint
        };
        if let Some(machine_type) = &config.machine_type {
            argv.push("-machine".into());
            argv.push(machine_type.clone());
        }
        for passed in &config.fds {
            let fd = passed.fd.as_raw_fd();
            argv.push("-add-fd".into());
            argv.push(passed.add_fd_arg(fd));
            inherit.push(fd);
        }
        let mut console = None;
        if let Some(console_config) = &config.console {
            if console_config.index > MAX_CONSOLE_INDEX {
                return Err(format!(
                    "console index {} is out of range (at most {MAX_CONSOLE_INDEX})",
                    console_config.index
                ));
            }
            let log = match &config.console_log {
                Some(path) => Some(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| {
                            format!("cannot open the console log {}: {e}", path.display())
                        })?,
                ),
                None => None,
            };
            let (ours, theirs) = Socket::pair()
                .map_err(|e| format!("cannot create the console socket pair: {e}"))?;
            argv.extend(console_config.qemu_args(theirs.as_raw_fd()));
            console = Some(
                Console::start(ours, config.console_buffer_limit, log)
                    .map_err(|e| e.to_string())?,
            );
            inherit.push(theirs.as_raw_fd());
            qemu_ends.push(theirs.into_fd());
        }
        argv.extend(config.args.iter().cloned());
        Ok(Prepared {
            temp_dir,
            log_path,
            log_file,
            argv,
            qmp,
            transport,
            monitor_port,
            remove_on_finish,
            console,
            qemu_ends,
            inherit,
        })
    }
}

impl Listener {
    /// Accept QEMU's connection, giving up at the deadline or as soon as
    /// QEMU exits.
    pub(crate) fn accept(self, deadline: Deadline, process: &QemuProcess) -> Result<Socket> {
        let fd = match &self {
            Listener::Unix(l) => l.as_fd(),
            Listener::Tcp(l) => l.as_fd(),
        };
        loop {
            let exit_fd = process.exit_fd();
            // Without a pidfd, wake up now and then to check on QEMU.
            let slice = if exit_fd.is_some() {
                deadline
            } else {
                deadline.capped(EXIT_CHECK_INTERVAL)
            };
            let watch = exit_fd.as_deref().map(AsFd::as_fd);
            let ready = poll_one(fd, libc::POLLIN, watch, slice)
                .map_err(|e| Error::io("waiting for QEMU to connect to QMP", e))?;
            if ready == Ready::Fd {
                return self.accept_now();
            }
            if process.try_wait().is_some() {
                return Err(Error::Disconnected(
                    "QEMU exited before connecting to the QMP socket".into(),
                ));
            }
            if deadline.expired() {
                return Err(Error::Timeout(format!(
                    "QEMU did not connect to the QMP socket {}",
                    deadline.describe()
                )));
            }
        }
    }

    fn accept_now(self) -> Result<Socket> {
        let fd: OwnedFd = match self {
            Listener::Unix(l) => l
                .accept()
                .map(|(stream, _)| stream.into())
                .map_err(|e| Error::io("accepting QEMU's QMP connection", e))?,
            Listener::Tcp(l) => {
                let (stream, _) = l
                    .accept()
                    .map_err(|e| Error::io("accepting QEMU's QMP connection", e))?;
                // QMP is request/response with small messages.
                let _ = stream.set_nodelay(true);
                stream.into()
            }
        };
        Ok(Socket::from_fd(fd))
    }
}

/// Connect to a QMP server on a Unix socket (attach).
pub(crate) fn connect_unix(path: &Path) -> Result<Socket> {
    let stream = UnixStream::connect(path)
        .map_err(|e| Error::io(format!("cannot connect to {}", path.display()), e))?;
    Ok(Socket::from_fd(stream.into()))
}

/// Connect to a QMP server over TCP (attach), trying each address `host`
/// resolves to until one answers or the deadline passes.
pub(crate) fn connect_tcp(host: &str, port: u16, deadline: Deadline) -> Result<Socket> {
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| Error::io(format!("cannot resolve {host}:{port}"), e))?;
    let mut last = None;
    for addr in addrs {
        let remaining = deadline
            .remaining()
            .unwrap_or(Duration::from_secs(3600))
            .max(Duration::from_millis(1));
        match TcpStream::connect_timeout(&addr, remaining) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(Socket::from_fd(stream.into()));
            }
            Err(e) => last = Some(e),
        }
    }
    let err = last.unwrap_or_else(|| std::io::Error::other("no address found"));
    Err(Error::io(format!("cannot connect to {host}:{port}"), err))
}
