//! [`Machine`]: one QEMU virtual machine, from configuration through launch
//! and use to shutdown, modelled on QEMU's own Python `QEMUMachine`.
//!
//! Every method takes `&self` and may be called from several threads at
//! once: one thread can wait for an event while another sends commands, and
//! [`Machine::kill`] interrupts a launch or a shutdown in progress.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use tempfile::TempDir;

use crate::console::{Console, ConsoleConfig, DEFAULT_CONSOLE_BUFFER};
use crate::deadline::Deadline;
use crate::error::{Error, LaunchError, Result};
use crate::process::{ExitStatus, QemuProcess, SpawnSpec};
use crate::qmp::events::{EventFilter, DEFAULT_EVENT_QUEUE_CAPACITY};
use crate::qmp::{ConnectOptions, QmpConnection};
use crate::socket::Socket;

/// Default time QEMU gets to greet on QMP after it was started.
pub const DEFAULT_LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of QEMU's output is kept in memory after the run (the tail).
const LOG_KEEP: u64 = 64 << 20;
/// How much log a disconnect message shows.
const LOG_TAIL_LINES: usize = 20;
/// How long a lost connection waits for QEMU's exit status to appear.
const EXIT_GRACE: Duration = Duration::from_secs(1);
/// How long a failed launch lets QEMU exit on its own before killing it.
const LAUNCH_EXIT_GRACE: Duration = Duration::from_secs(2);
/// How long cleanup waits for the last output and events of an exited QEMU
/// to be read before closing its connections.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// Serial ports before the console (`-serial null` each); QEMU has 4.
const MAX_CONSOLE_INDEX: u32 = 64;

static NEXT_MACHINE: AtomicU64 = AtomicU64::new(0);

/// What to launch and how. Setters follow the `std::process::Command`
/// style (`&mut self` in, `&mut Self` out) so they chain.
///
/// ```
/// let mut config = qemu_machine::Config::new("qemu-system-x86_64");
/// config.machine_type("none").args(["-accel", "tcg", "-nodefaults"]);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    binary: String,
    args: Vec<String>,
    wrapper: Vec<String>,
    name: Option<String>,
    base_temp_dir: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    machine_type: Option<String>,
    qmp_enabled: bool,
    launch_timeout: Option<Duration>,
    event_queue_capacity: usize,
    console: Option<ConsoleConfig>,
    console_log: Option<PathBuf>,
    console_buffer_limit: usize,
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
            launch_timeout: Some(DEFAULT_LAUNCH_TIMEOUT),
            event_queue_capacity: DEFAULT_EVENT_QUEUE_CAPACITY,
            console: None,
            console_log: None,
            console_buffer_limit: DEFAULT_CONSOLE_BUFFER,
        }
    }

    /// Append one QEMU argument (after the library's own).
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

    /// Name used for the log file (`<name>.log`) and sockets. Default
    /// `qemu-<pid>-<n>`.
    pub fn name(&mut self, name: impl Into<String>) -> &mut Self {
        self.name = Some(name.into());
        self
    }

    /// Where the per-run temporary directory is created (default: `$TMPDIR`
    /// or `/tmp`).
    pub fn base_temp_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.base_temp_dir = Some(dir.into());
        self
    }

    /// Where QEMU's log file is written and kept after shutdown (default:
    /// the temporary directory, removed at shutdown; the log stays readable
    /// through [`Machine::log`]).
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

    /// Adds `-monitor null`: an unused human monitor, so that QEMU does not
    /// create its default one.
    pub fn add_monitor_null(&mut self) -> &mut Self {
        self.args(["-monitor", "null"])
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

    /// Attach a serial console (`QEMUMachine.set_console`): `device_type`
    /// `None` adds `-serial chardev:console` (the machine's default serial
    /// device), otherwise `-device TYPE,chardev=console`; `index` adds that
    /// many `-serial null` first. The console is a socketpair drained by a
    /// library thread from before QEMU starts, so no output is ever lost and
    /// QEMU never blocks on it.
    pub fn console(&mut self, device_type: Option<&str>, index: u32) -> &mut Self {
        self.console = Some(ConsoleConfig {
            device_type: device_type.map(str::to_owned),
            index,
        });
        self
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

    /// The QEMU arguments given so far (not including the library's own).
    pub fn get_args(&self) -> &[String] {
        &self.args
    }
}

/// A QEMU virtual machine.
///
/// Dropping a `Machine` whose QEMU still runs kills and reaps it.
#[derive(Debug)]
pub struct Machine {
    inner: Mutex<Inner>,
    /// Serialises launches against each other and against the start of a
    /// shutdown; never held while waiting for QEMU to exit.
    lifecycle: Mutex<()>,
    /// Default name: `qemu-<pid>-<id>`.
    id: u64,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    /// The current run, or the last one (kept for its exit status, log and
    /// events) until the next launch.
    run: Option<Arc<Run>>,
}

impl Machine {
    /// A machine that will run with `config`. Nothing starts until
    /// [`Machine::launch`].
    pub fn new(config: Config) -> Machine {
        Machine {
            inner: Mutex::new(Inner { config, run: None }),
            lifecycle: Mutex::new(()),
            id: NEXT_MACHINE.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Change the configuration. [`Error::State`] while QEMU runs; allowed
    /// again once it has exited.
    ///
    /// ```
    /// # use qemu_machine::{Config, Machine};
    /// let m = Machine::new(Config::new("qemu-system-x86_64"));
    /// m.configure(|c| {
    ///     c.arg("-S");
    /// })
    /// .unwrap();
    /// ```
    pub fn configure<R>(&self, change: impl FnOnce(&mut Config) -> R) -> Result<R> {
        let mut inner = self.inner.lock();
        if inner.run.as_ref().is_some_and(|run| run.is_active()) {
            return Err(Error::state(
                "cannot configure a launched machine; shut it down first",
            ));
        }
        Ok(change(&mut inner.config))
    }

    /// A copy of the current configuration.
    pub fn config(&self) -> Config {
        self.inner.lock().config.clone()
    }

    /// Start QEMU and, unless QMP is disabled, complete QMP negotiation.
    ///
    /// On failure nothing is left behind (no process, socket, temporary
    /// directory or descriptor) and the error is [`Error::Launch`], holding
    /// QEMU's exit status, command line and output. A QEMU that exits early
    /// is reported as soon as it has exited, not after the launch timeout.
    pub fn launch(&self) -> Result<()> {
        let _life = self.lifecycle.lock();
        let config = {
            let mut inner = self.inner.lock();
            if inner.run.as_ref().is_some_and(|run| run.is_active()) {
                return Err(Error::state("the machine is already launched"));
            }
            // The previous run's events, output and status go now.
            if let Some(old) = inner.run.take() {
                old.finish();
            }
            inner.config.clone()
        };
        let deadline = Deadline::after(config.launch_timeout);
        let prepared = Prepared::new(&config, self.id).map_err(|reason| {
            Error::Launch(Box::new(LaunchError {
                reason,
                exit_status: None,
                command_line: quote_command_line(&config.preview_argv()),
                output: String::new(),
            }))
        })?;
        let Prepared {
            temp_dir,
            log_path,
            log_file,
            argv,
            qmp_socket,
            console,
            qemu_fds,
        } = prepared;
        let inherit: Vec<_> = qemu_fds.iter().map(AsRawFd::as_raw_fd).collect();
        let spawned = QemuProcess::spawn(&SpawnSpec {
            argv: &argv,
            output: &log_file,
            inherit: &inherit,
        });
        // Our copies of QEMU's ends must go now, or QEMU's exit would not
        // show up as EOF on our side.
        drop(qemu_fds);
        drop(log_file);
        let (process, spawn_error) = match spawned {
            Ok(process) => (Some(process), None),
            Err(e) => (None, Some(e)),
        };
        let run = Arc::new(Run {
            command_line: argv,
            process,
            qmp: OnceLock::new(),
            qmp_enabled: config.qmp_enabled,
            console,
            temp_dir: Mutex::new(Some(temp_dir)),
            log_path,
            captured_log: Mutex::new(None),
            quit_issued: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            finished: Mutex::new(false),
        });
        self.inner.lock().run = Some(Arc::clone(&run));

        if let Some(e) = spawn_error {
            run.finish();
            let program = run.command_line.first().map_or("", String::as_str);
            return Err(run.launch_error(format!("cannot execute {program:?}: {e}")));
        }
        let process = run.process.as_ref().expect("spawned");
        if let Some(socket) = qmp_socket {
            let options = ConnectOptions {
                event_queue_capacity: config.event_queue_capacity,
            };
            let exit_fd = process.exit_fd();
            let watch = exit_fd.as_deref().map(AsFd::as_fd);
            match QmpConnection::handshake(socket, deadline, watch, &options) {
                Ok(connection) => {
                    let _ = run.qmp.set(connection);
                }
                Err(e) => {
                    if matches!(e, Error::Disconnected(_)) {
                        // QEMU is on its way out: let it report its own status.
                        process.wait_until(Deadline::after(Some(LAUNCH_EXIT_GRACE)));
                    }
                    run.finish();
                    return Err(run.launch_error(e.to_string()));
                }
            }
        }
        Ok(())
    }

    /// Run a QMP command and return QEMU's whole reply, `{"return": ...}` or
    /// `{"error": {"class": ..., "desc": ...}}`, without the `id` the
    /// library added. `args` must be a JSON object. A QMP error is not an
    /// `Err` here; see [`Machine::command`].
    pub fn qmp(&self, cmd: &str, args: Option<&Value>, timeout: Option<Duration>) -> Result<Value> {
        if let Some(args) = args {
            if !args.is_object() {
                return Err(Error::invalid(format!(
                    "arguments of '{cmd}' must be a JSON object, not {args}"
                )));
            }
        }
        let run = self.command_run()?;
        let qmp = run.qmp.get().expect("checked by command_run");
        let reply = qmp
            .execute(cmd, args, Deadline::after(timeout))
            .map_err(|e| run.explain(e))?;
        if cmd == "quit" && reply.get("return").is_some() {
            run.quit_issued.store(true, Ordering::SeqCst);
        }
        Ok(reply)
    }

    /// Run a QMP command and return its `return` value; a QMP error becomes
    /// [`Error::Command`] with the error class and description.
    pub fn command(
        &self,
        cmd: &str,
        args: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<Value> {
        let mut reply = self.qmp(cmd, args, timeout)?;
        if let Some(error) = reply.get("error") {
            let field = |name: &str| {
                error
                    .get(name)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            return Err(Error::Command {
                command: cmd.to_string(),
                class: field("class"),
                desc: field("desc"),
            });
        }
        Ok(reply
            .as_object_mut()
            .and_then(|o| o.remove("return"))
            .unwrap_or(Value::Null))
    }

    /// Remove and return the oldest queued event, waiting up to `timeout`
    /// for one. [`Error::Timeout`] if none came.
    pub fn event_get(&self, timeout: Option<Duration>) -> Result<Value> {
        self.events_wait(&[EventFilter::default()], timeout)
    }

    /// Remove and return the first queued or future event named `name`
    /// (`None`: any) that matches `pattern` (see [`crate::event_match`]).
    /// Events that do not match stay queued, in order. One deadline covers
    /// the whole wait.
    pub fn event_wait(
        &self,
        name: Option<&str>,
        pattern: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<Value> {
        self.events_wait(&[EventFilter::new(name, pattern.cloned())], timeout)
    }

    /// Like [`Machine::event_wait`] for the first event that passes any of
    /// `filters`.
    pub fn events_wait(&self, filters: &[EventFilter], timeout: Option<Duration>) -> Result<Value> {
        let run = self.qmp_run()?;
        let qmp = run.qmp.get().expect("checked by qmp_run");
        qmp.wait_event(
            |ev| filters.iter().any(|f| f.matches(ev)),
            Deadline::after(timeout),
            || EventFilter::describe(filters),
        )
        .map_err(|e| run.explain(e))
    }

    /// All queued events, oldest first; the queue is left empty.
    pub fn events_take(&self) -> Result<Vec<Value>> {
        let run = self.qmp_run()?;
        Ok(run.qmp.get().expect("checked by qmp_run").take_events())
    }

    /// Events dropped because the queue was full, in this run.
    pub fn events_dropped(&self) -> u64 {
        self.qmp_run()
            .ok()
            .and_then(|run| run.qmp.get().map(QmpConnection::events_dropped))
            .unwrap_or(0)
    }

    /// Replies that arrived for no waiting command (late replies to commands
    /// that timed out, unknown ids), dropped, in this run.
    pub fn stray_replies(&self) -> u64 {
        self.qmp_run()
            .ok()
            .and_then(|run| run.qmp.get().map(QmpConnection::stray_replies))
            .unwrap_or(0)
    }

    /// Wait until `success` appears on the serial console after the read
    /// cursor (byte-wise, so a prompt without a newline matches). Returns
    /// the output from the cursor up to and including the match and moves
    /// the cursor past it. If `failure` appears first: [`Error::ConsoleFailure`]
    /// (the cursor moves past it). On timeout: [`Error::Timeout`] with the
    /// output seen so far; the cursor stays. Once QEMU is gone and the
    /// buffered output does not match: [`Error::Disconnected`].
    pub fn console_wait(
        &self,
        success: &str,
        failure: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<String> {
        let run = self.console_run()?;
        let console = run.console.as_ref().expect("checked by console_run");
        console
            .wait(success, failure, Deadline::after(timeout))
            .map_err(|e| run.explain(e))
    }

    /// Type `command` followed by a carriage return on the console, then
    /// wait as [`Machine::console_wait`] does. One deadline covers both.
    pub fn console_exec(
        &self,
        command: &str,
        success: &str,
        failure: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<String> {
        let run = self.console_run()?;
        let console = run.console.as_ref().expect("checked by console_run");
        let deadline = Deadline::after(timeout);
        let mut line = Vec::with_capacity(command.len() + 1);
        line.extend_from_slice(command.as_bytes());
        line.push(b'\r');
        run.check_console_writable()?;
        console
            .write(&line, deadline)
            .and_then(|()| console.wait(success, failure, deadline))
            .map_err(|e| run.explain(e))
    }

    /// Send raw bytes to the console. Blocks only while QEMU is not reading
    /// its console and the socket buffer is full; QEMU exiting (or
    /// [`Machine::kill`] from another thread) ends the wait.
    pub fn console_write(&self, data: &[u8]) -> Result<()> {
        let run = self.console_run()?;
        run.check_console_writable()?;
        let console = run.console.as_ref().expect("checked by console_run");
        console
            .write(data, Deadline::never())
            .map_err(|e| run.explain(e))
    }

    /// Console output after the read cursor, without waiting; moves the
    /// cursor to the end. Readable after QEMU has exited, until the next
    /// launch.
    pub fn console_read(&self) -> Result<String> {
        let run = self.console_run()?;
        Ok(run.console.as_ref().expect("checked by console_run").read())
    }

    /// Console bytes dropped in this run because the in-memory buffer was
    /// full.
    pub fn console_dropped(&self) -> u64 {
        self.console_run()
            .ok()
            .and_then(|run| run.console.as_ref().map(Console::dropped))
            .unwrap_or(0)
    }

    /// Shut QEMU down gracefully: send `quit` (unless one already went
    /// through; without QMP, SIGTERM) and wait up to `timeout` for it to
    /// exit. If that fails, QEMU is killed and reaped and the result is
    /// [`Error::AbnormalShutdown`] saying why. `Ok` only if QEMU exited with
    /// status 0 without being killed by the library. Cleans up in every
    /// case. Not launched: does nothing.
    pub fn shutdown(&self, timeout: Option<Duration>) -> Result<()> {
        let Some(run) = self.unfinished_run() else {
            return Ok(());
        };
        let result = run.stop(Deadline::after(timeout));
        run.finish();
        result
    }

    /// Kill QEMU with SIGKILL, reap it and clean up. Interrupts a launch,
    /// shutdown or wait in progress in another thread. Not launched: does
    /// nothing.
    pub fn kill(&self) -> Result<()> {
        // A launch in progress holds `lifecycle`: kill its QEMU first so the
        // launch fails at once instead of waiting for its timeout.
        let current = self.inner.lock().run.clone();
        if let Some(run) = current {
            run.kill();
        }
        if let Some(run) = self.unfinished_run() {
            run.kill();
            run.finish();
        }
        Ok(())
    }

    /// Wait up to `timeout` for QEMU to exit on its own (a guest power-off),
    /// then clean up. Succeeds whatever the exit status (see
    /// [`Machine::exit_status`]); on timeout returns [`Error::Timeout`] and
    /// leaves QEMU running. Not launched: does nothing.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<()> {
        let Some(run) = self.unfinished_run() else {
            return Ok(());
        };
        let deadline = Deadline::after(timeout);
        if let Some(process) = &run.process {
            if process.wait_until(deadline).is_none() {
                return Err(Error::Timeout(format!(
                    "QEMU did not exit {}; it is still running",
                    deadline.describe()
                )));
            }
        }
        run.finish();
        Ok(())
    }

    /// Whether QEMU is running.
    pub fn is_running(&self) -> bool {
        self.current_run().is_some_and(|run| run.is_active())
    }

    /// QEMU's pid while it runs.
    pub fn pid(&self) -> Option<i32> {
        let run = self.current_run()?;
        let process = run.process.as_ref()?;
        run.is_active().then(|| process.pid())
    }

    /// How QEMU ended, once it has (after any exit, including a failed
    /// launch in which it ran). `None` while it runs or if it never started.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let run = self.current_run()?;
        run.process.as_ref()?.try_wait()
    }

    /// QEMU's stdout and stderr so far (or of the last run).
    /// [`Error::State`] before the first launch.
    pub fn log(&self) -> Result<String> {
        let run = self
            .current_run()
            .ok_or_else(|| Error::state("the machine has not been launched"))?;
        Ok(run.log())
    }

    /// The per-run temporary directory (mode 0700), while launched.
    pub fn temp_dir(&self) -> Option<PathBuf> {
        let run = self.current_run()?;
        let dir = run.temp_dir.lock();
        dir.as_ref().map(|d| d.path().to_path_buf())
    }

    /// The full command line of the current or last run.
    pub fn command_line(&self) -> Option<Vec<String>> {
        Some(self.current_run()?.command_line.clone())
    }

    /// The QMP greeting of the current or last run.
    pub fn greeting(&self) -> Option<Value> {
        let run = self.current_run()?;
        run.qmp.get().map(|q| q.greeting().clone())
    }

    fn current_run(&self) -> Option<Arc<Run>> {
        self.inner.lock().run.clone()
    }

    /// The run a shutdown, kill or wait acts on: launched and not yet
    /// cleaned up. Waits for a launch in progress to finish first.
    fn unfinished_run(&self) -> Option<Arc<Run>> {
        let _life = self.lifecycle.lock();
        self.current_run().filter(|run| !run.is_finished())
    }

    /// The run whose QMP connection (open or closed) holds the events.
    fn qmp_run(&self) -> Result<Arc<Run>> {
        let run = self
            .current_run()
            .ok_or_else(|| Error::state("the machine has not been launched"))?;
        if !run.qmp_enabled {
            return Err(Error::state("QMP is disabled for this machine"));
        }
        if run.qmp.get().is_none() {
            return Err(Error::state("QMP is not connected (the launch failed)"));
        }
        Ok(run)
    }

    /// The run whose console (open or closed) holds the output.
    fn console_run(&self) -> Result<Arc<Run>> {
        let run = self
            .current_run()
            .ok_or_else(|| Error::state("the machine has not been launched"))?;
        if run.console.is_none() {
            return Err(Error::state(
                "the machine has no console (configure one with set_console)",
            ));
        }
        Ok(run)
    }

    /// The run to send a command to: launched, not yet shut down.
    fn command_run(&self) -> Result<Arc<Run>> {
        let run = self.qmp_run()?;
        if run.is_finished() {
            return Err(Error::state(
                "the machine is not running (it was shut down)",
            ));
        }
        Ok(run)
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Some(run) = self.inner.get_mut().run.take() {
            run.kill();
            run.finish();
        }
    }
}

impl Config {
    /// The command line as far as it is known before launch, for messages.
    fn preview_argv(&self) -> Vec<String> {
        let mut argv = self.wrapper.clone();
        argv.push(self.binary.clone());
        argv.extend(self.args.iter().cloned());
        argv
    }
}

/// Everything a launch needs before QEMU starts.
struct Prepared {
    temp_dir: TempDir,
    log_path: PathBuf,
    log_file: File,
    argv: Vec<String>,
    qmp_socket: Option<Socket>,
    console: Option<Console>,
    /// Descriptors QEMU inherits; closed on our side right after the spawn.
    qemu_fds: Vec<OwnedFd>,
}

impl Prepared {
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
        let mut qemu_fds = Vec::new();
        let mut qmp_socket = None;
        if config.qmp_enabled {
            let (ours, theirs) =
                Socket::pair().map_err(|e| format!("cannot create the QMP socket pair: {e}"))?;
            argv.push("-chardev".into());
            argv.push(format!("socket,id=mon,fd={}", theirs.as_raw_fd()));
            argv.push("-mon".into());
            argv.push("chardev=mon,mode=control".into());
            qmp_socket = Some(ours);
            qemu_fds.push(theirs.into_fd());
        }
        if let Some(machine_type) = &config.machine_type {
            argv.push("-machine".into());
            argv.push(machine_type.clone());
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
            qemu_fds.push(theirs.into_fd());
        }
        argv.extend(config.args.iter().cloned());
        Ok(Prepared {
            temp_dir,
            log_path,
            log_file,
            argv,
            qmp_socket,
            console,
            qemu_fds,
        })
    }
}

/// One launch of QEMU: its process, connections and files.
#[derive(Debug)]
struct Run {
    command_line: Vec<String>,
    /// `None` if QEMU could not be started at all.
    process: Option<QemuProcess>,
    /// Set once negotiation succeeded; stays (closed) after the run for its
    /// events.
    qmp: OnceLock<QmpConnection>,
    qmp_enabled: bool,
    /// The serial console, if configured; its output stays readable after
    /// the run.
    console: Option<Console>,
    temp_dir: Mutex<Option<TempDir>>,
    log_path: PathBuf,
    /// QEMU's output, read into memory when the run is cleaned up (the file
    /// may be in the temporary directory).
    captured_log: Mutex<Option<String>>,
    /// A `quit` went through: shutdown then only waits.
    quit_issued: AtomicBool,
    /// The library sent SIGKILL.
    killed: AtomicBool,
    /// Cleanup done. Held during cleanup so it runs exactly once.
    finished: Mutex<bool>,
}

impl Run {
    fn is_finished(&self) -> bool {
        *self.finished.lock()
    }

    /// Launched, not cleaned up, and QEMU still running.
    fn is_active(&self) -> bool {
        !self.is_finished()
            && self
                .process
                .as_ref()
                .is_some_and(|p| p.try_wait().is_none())
    }

    fn kill(&self) {
        if let Some(process) = &self.process {
            if process.reaped_status().is_none() {
                self.killed.store(true, Ordering::SeqCst);
                process.kill_and_reap();
            }
        }
    }

    /// The graceful part of a shutdown.
    fn stop(&self, deadline: Deadline) -> Result<()> {
        let Some(process) = &self.process else {
            return Ok(());
        };
        let mut failure = None;
        if process.try_wait().is_none() {
            let asked = if self.qmp_enabled {
                if !self.quit_issued.swap(true, Ordering::SeqCst) {
                    match self.qmp.get().map(|q| q.execute("quit", None, deadline)) {
                        // A closed connection is expected: QEMU quits.
                        Some(Ok(_)) | Some(Err(Error::Disconnected(_))) | None => {}
                        Some(Err(e)) => failure = Some(format!("'quit' failed: {e}")),
                    }
                }
                "'quit'"
            } else {
                if !self.quit_issued.swap(true, Ordering::SeqCst) {
                    process.signal(libc::SIGTERM);
                }
                "SIGTERM"
            };
            if failure.is_none() && process.wait_until(deadline).is_none() {
                failure = Some(format!(
                    "QEMU did not exit {} after {asked}",
                    deadline.describe()
                ));
            }
        }
        if let Some(why) = failure {
            self.kill();
            return Err(Error::AbnormalShutdown(format!(
                "{why}; QEMU was killed with SIGKILL and reaped"
            )));
        }
        match process.try_wait() {
            Some(status) if status.success() && !self.killed.load(Ordering::SeqCst) => Ok(()),
            Some(status) => Err(Error::AbnormalShutdown(self.with_log_tail(&format!(
                "QEMU {status}{}",
                if self.killed.load(Ordering::SeqCst) {
                    " (killed by the library)"
                } else {
                    ""
                }
            )))),
            None => unreachable!("waited for the exit above"),
        }
    }

    /// Cleanup after QEMU has gone: close connections, keep the log, remove
    /// the temporary directory. Kills QEMU if it still runs. Idempotent.
    fn finish(&self) {
        let mut finished = self.finished.lock();
        if *finished {
            return;
        }
        if let Some(process) = &self.process {
            if process.try_wait().is_none() {
                self.killed.store(true, Ordering::SeqCst);
                process.kill_and_reap();
            }
        }
        if let Some(qmp) = self.qmp.get() {
            qmp.close(DRAIN_GRACE);
        }
        if let Some(console) = &self.console {
            console.close(DRAIN_GRACE);
        }
        *self.captured_log.lock() = Some(read_log(&self.log_path));
        if let Some(dir) = self.temp_dir.lock().take() {
            let _ = dir.close();
        }
        *finished = true;
    }

    fn check_console_writable(&self) -> Result<()> {
        if self.is_finished() {
            return Err(Error::state(
                "the machine is not running (it was shut down)",
            ));
        }
        Ok(())
    }

    fn log(&self) -> String {
        if let Some(log) = self.captured_log.lock().as_ref() {
            return log.clone();
        }
        read_log(&self.log_path)
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.trim_end().lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// Add how QEMU ended to a message.
    fn describe_exit(&self, what: &str) -> String {
        let Some(process) = &self.process else {
            return what.to_string();
        };
        match process.wait_until(Deadline::after(Some(EXIT_GRACE))) {
            Some(status) => format!("{what}; QEMU {status}"),
            None => format!("{what}; QEMU (pid {}) is still running", process.pid()),
        }
    }

    /// Add QEMU's last words to a message.
    fn with_log_tail(&self, what: &str) -> String {
        let mut msg = what.to_string();
        let tail = self.log_tail();
        if !tail.is_empty() {
            msg.push_str("\nlast lines of QEMU's output:\n");
            msg.push_str(&tail);
        }
        msg
    }

    /// Enrich a lost-connection error with the exit status and log tail.
    fn explain(&self, err: Error) -> Error {
        match err {
            Error::Disconnected(detail) => {
                Error::Disconnected(self.with_log_tail(&self.describe_exit(&detail)))
            }
            other => other,
        }
    }

    fn launch_error(&self, reason: String) -> Error {
        let reason = if self.killed.load(Ordering::SeqCst) {
            format!("{reason}; QEMU was still running and has been killed")
        } else {
            reason
        };
        Error::Launch(Box::new(LaunchError {
            reason,
            exit_status: self.process.as_ref().and_then(QemuProcess::reaped_status),
            command_line: quote_command_line(&self.command_line),
            output: self.log(),
        }))
    }
}

/// Read a log file, keeping at most its last [`LOG_KEEP`] bytes.
fn read_log(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut prefix = String::new();
    if len > LOG_KEEP {
        let _ = file.seek(SeekFrom::Start(len - LOG_KEEP));
        prefix = format!("[... {} earlier bytes omitted ...]\n", len - LOG_KEEP);
    }
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    prefix + &String::from_utf8_lossy(&bytes)
}

fn quote_command_line(argv: &[String]) -> String {
    shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "))
}
