//! One launch, start to finish: what is prepared before QEMU starts
//! (temporary directory, log file, sockets, command line), the spawn, and
//! how the QMP connection comes about (a socketpair, or a socket the
//! library listens on and QEMU connects to). Also connecting to a QEMU
//! started elsewhere.
//!
//! A launch can be cancelled from another thread at any point
//! ([`LaunchToken::cancel`]): before the spawn it does not start QEMU,
//! after it QEMU is killed, which ends every wait of the launch at once.

use std::fs::File;
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustix::event::PollFlags;
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use rustix::process::Signal;

use super::config::{opt_value, Config, MonitorAddress};
use super::run::{Origin, Run, RunFiles, RunParts};
use crate::agent::{AgentChannel, AgentDevice};
use crate::console::Console;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::owner::Owner;
use crate::process::{QemuProcess, SpawnSpec};
use crate::qmp::listeners::ListenerSet;
use crate::qmp::trace::Trace;
use crate::qmp::{ConnectOptions, QmpConnection};
use crate::qtest::QtestChannel;
use crate::sink::Sink;
use crate::socket::{above_stdio, wait_ready, Socket};

/// How long a failed launch lets QEMU exit on its own before killing it,
/// so that its own exit status and message are what the error shows.
const LAUNCH_EXIT_GRACE: Duration = Duration::from_secs(2);

/// The kind of socket the QMP connection runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// A Unix socket: descriptors can be passed over it.
    Unix,
    Tcp,
}

/// A launch in progress, as other threads see it: they can cancel it.
#[derive(Debug, Default)]
pub(crate) struct LaunchToken {
    cancelled: AtomicBool,
    process: OnceLock<Arc<QemuProcess>>,
}

impl LaunchToken {
    /// Stop the launch: QEMU is not started, or is killed if it was.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        if let Some(process) = self.process.get() {
            process.signal(Signal::KILL);
        }
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Publish the spawned process; kill it if the launch was cancelled
    /// meanwhile. (Both sides use SeqCst: either `cancel` sees the process
    /// or this sees the cancellation.)
    fn started(&self, process: Arc<QemuProcess>) {
        let _ = self.process.set(Arc::clone(&process));
        if self.is_cancelled() {
            process.signal(Signal::KILL);
        }
    }

    /// QEMU's pid, once it was started.
    pub(crate) fn pid(&self) -> Option<i32> {
        self.process.get().map(|p| p.pid())
    }
}

/// How the QMP connection will come about.
enum QmpEndpoint {
    /// QMP disabled.
    None,
    /// Our end of a socketpair: connected from the start.
    Connected(Socket),
    /// A listening socket QEMU will connect to.
    Listening(Listener),
}

/// A socket the library listens on for QEMU's QMP connection.
enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Everything a launch needs before QEMU starts. Dropping it releases
/// whatever was created (the socket file and directory included).
struct Prepared {
    files: RunFiles,
    log_path: std::path::PathBuf,
    log_file: File,
    argv: Vec<String>,
    qmp: QmpEndpoint,
    transport: Transport,
    /// The TCP port QEMU will connect to, if the monitor is on TCP.
    monitor_port: Option<u16>,
    /// Our end of the console socketpair and the log it is copied to.
    console: Option<(Socket, Option<Sink>)>,
    /// Our end of the guest agent's socketpair.
    agent: Option<(Socket, AgentDevice)>,
    /// Our end of the qtest socketpair.
    qtest: Option<Socket>,
    /// Every descriptor QEMU inherits: our copies of its socketpair ends
    /// (closed right after the spawn, so that QEMU's exit shows up as EOF)
    /// and the `-add-fd` descriptors.
    inherit: Vec<Arc<OwnedFd>>,
}

impl Prepared {
    /// Create everything; on error, whatever was created is released again
    /// and the message says what failed.
    fn new(config: &Config, machine_id: u64) -> std::result::Result<Prepared, String> {
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
        let mut files = RunFiles {
            temp_dir: Some(temp_dir),
            socket_file: None,
            owner: Some(Owner::current()),
        };
        let name = config
            .name
            .clone()
            .unwrap_or_else(|| format!("qemu-{}-{machine_id}", std::process::id()));
        let log_dir = match &config.log_dir {
            Some(dir) => dir.clone(),
            None => files
                .temp_dir
                .as_ref()
                .expect("created")
                .path()
                .to_path_buf(),
        };
        let log_path = log_dir.join(format!("{name}.log"));
        let log_file = File::create(&log_path)
            .map_err(|e| format!("cannot create the log file {}: {e}", log_path.display()))?;

        let mut argv = config.wrapper.clone();
        argv.push(config.binary.clone());
        argv.extend(["-display", "none", "-vga", "none"].map(String::from));
        let mut inherit = Vec::new();
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
                    inherit.push(Arc::new(theirs.into_fd()));
                    (chardev, QmpEndpoint::Connected(ours))
                }
                MonitorAddress::Unix(path) => {
                    let listener = UnixListener::bind(path).map_err(|e| {
                        format!("cannot listen on the Unix socket {}: {e}", path.display())
                    })?;
                    files.socket_file = Some(path.clone());
                    let chardev =
                        format!("socket,id=mon,path={}", opt_value(&path.to_string_lossy()));
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
            argv.push("-add-fd".into());
            argv.push(passed.add_fd_arg(passed.fd.as_raw_fd()));
            inherit.push(Arc::clone(&passed.fd));
        }
        let mut console = None;
        if let Some(console_config) = &config.console {
            let log =
                match &config.console_log {
                    Some(path) => Some(Sink::open(path).map_err(|e| {
                        format!("cannot open the console log {}: {e}", path.display())
                    })?),
                    None => None,
                };
            let (ours, theirs) = Socket::pair()
                .map_err(|e| format!("cannot create the console socket pair: {e}"))?;
            argv.extend(console_config.qemu_args(theirs.as_raw_fd()));
            inherit.push(Arc::new(theirs.into_fd()));
            console = Some((ours, log));
        }
        let mut agent = None;
        if let Some(device) = &config.agent {
            let (ours, theirs) = Socket::pair()
                .map_err(|e| format!("cannot create the guest agent's socket pair: {e}"))?;
            argv.extend(device.qemu_args(theirs.as_raw_fd()));
            inherit.push(Arc::new(theirs.into_fd()));
            agent = Some((ours, device.clone()));
        }
        let mut qtest = None;
        if config.qtest {
            let (ours, theirs) =
                Socket::pair().map_err(|e| format!("cannot create the qtest socket pair: {e}"))?;
            // QEMU 7.2 looks the chardev up under the id "qtest".
            argv.extend([
                "-chardev".to_string(),
                format!("socket,id=qtest,fd={}", theirs.as_raw_fd()),
                "-qtest".to_string(),
                "chardev:qtest".to_string(),
                "-qtest-log".to_string(),
                "none".to_string(),
            ]);
            if !config.chooses_accelerator() {
                argv.extend(["-accel".to_string(), "qtest".to_string()]);
            }
            inherit.push(Arc::new(theirs.into_fd()));
            qtest = Some(ours);
        }
        argv.extend(config.args.iter().cloned());
        Ok(Prepared {
            files,
            log_path,
            log_file,
            argv,
            qmp,
            transport,
            monitor_port,
            console,
            agent,
            qtest,
            inherit,
        })
    }
}

/// Launch QEMU as `config` says. Returns the run — whether the launch
/// succeeded or failed, it is what the machine keeps (its exit status and
/// log stay readable) — and the outcome. A failed run is already cleaned
/// up.
pub(crate) fn launch(
    config: &Config,
    token: &LaunchToken,
    machine_id: u64,
    listeners: &Arc<ListenerSet>,
) -> (Arc<Run>, Result<()>) {
    let deadline = Deadline::after(config.launch_timeout);
    let not_started = |reason: String| {
        let run = Run::new(RunParts {
            origin: Origin::Launched,
            command_line: config.preview_argv(),
            process: None,
            qmp: None,
            transport: Transport::Unix,
            monitor_port: None,
            console: None,
            agent: None,
            qtest: None,
            files: RunFiles::default(),
            log_path: None,
            trace_path: None,
        });
        run.finish();
        let error = run.launch_error(reason);
        (Arc::new(run), Err(error))
    };
    let trace = match &config.qmp_trace {
        Some(path) => match Trace::open(path) {
            Ok(trace) => Some(Arc::new(trace)),
            Err(e) => {
                return not_started(format!("cannot open the QMP trace {}: {e}", path.display()))
            }
        },
        None => None,
    };
    let prepared = match Prepared::new(config, machine_id) {
        Ok(p) => p,
        Err(reason) => return not_started(reason),
    };
    if token.is_cancelled() {
        return not_started(
            "the launch was cancelled (qm_kill or qm_machine_free) before QEMU started".into(),
        );
    }
    let spawned = QemuProcess::spawn(
        &SpawnSpec {
            argv: &prepared.argv,
            env: &config.env,
            output: &prepared.log_file,
            inherit: &prepared.inherit,
        },
        deadline,
    );
    let Prepared {
        files,
        log_path,
        log_file,
        argv,
        qmp: endpoint,
        transport,
        monitor_port,
        console: console_parts,
        agent: agent_parts,
        qtest: qtest_socket,
        inherit,
    } = prepared;
    // Our copies of QEMU's socketpair ends must go now, or QEMU's exit
    // would not show up as EOF on our side.
    drop(inherit);
    drop(log_file);
    let process = spawned.map(Arc::new);
    if let Ok(p) = &process {
        token.started(Arc::clone(p));
    }
    let exit = process.as_ref().ok().and_then(|p| p.exit_fd());
    let console = match (&process, console_parts) {
        (Ok(_), Some((socket, log))) => {
            Console::start(socket, config.console_buffer_limit, log, exit.clone()).map(Some)
        }
        _ => Ok(None),
    };
    let agent = match (&process, agent_parts) {
        (Ok(_), Some((socket, device))) => Some(AgentChannel::new(socket, exit.clone(), device)),
        _ => None,
    };
    let qtest = match (&process, qtest_socket) {
        (Ok(_), Some(socket)) => Some(QtestChannel::new(socket, exit.clone())),
        _ => None,
    };
    let connected = match (&process, &console) {
        (Err(e), _) => {
            let program = argv.first().map_or("", String::as_str);
            Err(format!("cannot execute {program:?}: {e}"))
        }
        (_, Err(e)) => Err(e.to_string()),
        (Ok(process), Ok(_)) => connect(
            endpoint,
            process,
            deadline,
            &ConnectOptions {
                event_queue_capacity: config.event_queue_capacity,
                event_queue_bytes: config.event_queue_bytes,
                trace,
                listeners: Arc::clone(listeners),
            },
        )
        .map_err(|e| {
            if matches!(e, Error::Disconnected(_)) && !token.is_cancelled() {
                // QEMU is on its way out: let it report its own status.
                process.wait_until(Deadline::after(Some(LAUNCH_EXIT_GRACE)));
            }
            e.to_string()
        }),
    };
    let (qmp, outcome) = match connected {
        Ok(qmp) => (qmp, Ok(())),
        Err(reason) => (None, Err(reason)),
    };
    let run = Run::new(RunParts {
        origin: Origin::Launched,
        command_line: argv,
        process: process.ok(),
        qmp,
        transport,
        monitor_port,
        console: console.ok().flatten(),
        agent,
        qtest,
        files,
        log_path: Some(log_path),
        trace_path: config.qmp_trace.clone(),
    });
    match outcome {
        Ok(()) => (Arc::new(run), Ok(())),
        Err(reason) => {
            let reason = if token.is_cancelled() {
                format!("the launch was cancelled (qm_kill or qm_machine_free): {reason}")
            } else {
                reason
            };
            run.finish();
            let reason = if config.qtest
                && run
                    .log()
                    .is_ok_and(|log| log.contains("invalid accelerator qtest"))
            {
                format!(
                    "{reason}; this QEMU has no qtest accelerator (Debian and Ubuntu remove \
                     its module): build it with scripts/build-qtest-accel.sh and give QEMU \
                     QEMU_MODULE_DIR=<its directory> (Config::env, qm_set_env), or choose \
                     -accel tcg -S (memory, port and IRQ calls work; the clock calls do not)"
                )
            } else {
                reason
            };
            let error = run.launch_error(reason);
            run.set_ending(format!("the launch failed: {error}"));
            (Arc::new(run), Err(error))
        }
    }
}

/// Bring up the QMP connection of a spawned QEMU.
fn connect(
    endpoint: QmpEndpoint,
    process: &QemuProcess,
    deadline: Deadline,
    options: &ConnectOptions,
) -> Result<Option<QmpConnection>> {
    let socket = match endpoint {
        QmpEndpoint::None => return Ok(None),
        QmpEndpoint::Connected(socket) => socket,
        QmpEndpoint::Listening(listener) => listener.accept(deadline, process)?,
    };
    QmpConnection::handshake(socket, process.exit_fd(), deadline, options).map(Some)
}

impl Listener {
    /// Accept QEMU's connection, giving up at the deadline or as soon as
    /// QEMU exits.
    fn accept(self, deadline: Deadline, process: &QemuProcess) -> Result<Socket> {
        let fd = match &self {
            Listener::Unix(l) => l.as_fd(),
            Listener::Tcp(l) => l.as_fd(),
        };
        let exit = process.exit_fd();
        let ready = wait_ready(
            fd,
            PollFlags::IN,
            exit.as_deref().map(AsFd::as_fd),
            None,
            deadline,
        )
        .map_err(|e| Error::io("waiting for QEMU to connect to QMP", e))?;
        if ready.readable {
            return self.accept_now();
        }
        if ready.exited {
            return Err(Error::Disconnected(
                "QEMU exited before connecting to the QMP socket".into(),
            ));
        }
        Err(Error::Timeout(format!(
            "QEMU did not connect to the QMP socket {}",
            deadline.describe()
        )))
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
        let fd = above_stdio(fd).map_err(|e| Error::io("accepting QEMU's QMP connection", e))?;
        Ok(Socket::from_fd(fd))
    }
}

/// Connect to a QMP server on a Unix socket (attach) within the deadline.
/// A listener whose backlog is full (QEMU serves one client at a time)
/// refuses a non-blocking connect with `EAGAIN`: retried until the
/// deadline.
pub(crate) fn connect_unix(path: &Path, deadline: Deadline) -> Result<Socket> {
    let fail = |e: std::io::Error| Error::io(format!("cannot connect to {}", path.display()), e);
    let addr = SocketAddrUnix::new(path).map_err(|e| fail(e.into()))?;
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(|e| fail(e.into()))?;
    let fd = above_stdio(fd).map_err(fail)?;
    let mut nap = Duration::from_millis(1);
    loop {
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => return Ok(Socket::from_fd(fd)),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => {
                if deadline.expired() {
                    return Err(Error::Timeout(format!(
                        "cannot connect to {} {}: its backlog is full (QEMU already has a client)",
                        path.display(),
                        deadline.describe()
                    )));
                }
                let pause = deadline.remaining().map_or(nap, |left| left.min(nap));
                std::thread::sleep(pause);
                nap = (nap * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(fail(e.into())),
        }
    }
}

/// Connect to a QMP server over TCP (attach), trying each address `host`
/// resolves to until one answers or the deadline passes.
pub(crate) fn connect_tcp(host: &str, port: u16, deadline: Deadline) -> Result<Socket> {
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| Error::io(format!("cannot resolve {host}:{port}"), e))?;
    let mut last = None;
    for addr in addrs {
        if deadline.expired() {
            break;
        }
        let remaining = deadline
            .remaining()
            .unwrap_or(Duration::from_secs(3600))
            .max(Duration::from_millis(1));
        match TcpStream::connect_timeout(&addr, remaining) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let fd = above_stdio(stream.into())
                    .map_err(|e| Error::io(format!("cannot connect to {host}:{port}"), e))?;
                return Ok(Socket::from_fd(fd));
            }
            Err(e) => last = Some(e),
        }
    }
    let err = last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::TimedOut, "no address answered in time")
    });
    Err(Error::io(format!("cannot connect to {host}:{port}"), err))
}
