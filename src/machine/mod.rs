//! [`Machine`]: one QEMU virtual machine, from configuration through launch
//! and use to shutdown, modelled on QEMU's own Python `QEMUMachine`.
//!
//! Every method takes `&self` and may be called from several threads at
//! once: one thread can wait for an event while another sends commands, and
//! [`Machine::kill`] interrupts a launch or a shutdown in progress.
//!
//! `config.rs` holds what is decided before launch, `launch.rs` what a
//! launch prepares and how the QMP connection comes about, `run.rs` one
//! launch (or attachment) and the ways it ends.

mod config;
mod launch;
mod run;

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;

pub use config::{Config, MonitorAddress, DEFAULT_LAUNCH_TIMEOUT, MAX_UNIX_SOCKET_PATH};

use crate::console::Console;
use crate::deadline::Deadline;
use crate::error::{Error, LaunchError, Result};
use crate::process::{ExitStatus, QemuProcess, SpawnSpec};
use crate::qmp::events::{EventFilter, DEFAULT_EVENT_QUEUE_CAPACITY};
use crate::qmp::framing::Reply;
use crate::qmp::trace::Trace;
use crate::qmp::{ConnectOptions, QmpConnection};
use launch::{Prepared, QmpEndpoint, Transport};
use run::{quote_command_line, Run};

/// How long a failed launch lets QEMU exit on its own before killing it.
const LAUNCH_EXIT_GRACE: Duration = Duration::from_secs(2);

static NEXT_MACHINE: AtomicU64 = AtomicU64::new(0);

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
    /// Connected to a QEMU started elsewhere: no launch, no configuration.
    attached: bool,
}

impl Machine {
    /// A machine that will run with `config`. Nothing starts until
    /// [`Machine::launch`].
    pub fn new(config: Config) -> Machine {
        Machine {
            inner: Mutex::new(Inner {
                config,
                run: None,
                attached: false,
            }),
            lifecycle: Mutex::new(()),
            id: NEXT_MACHINE.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Attach to a QEMU started elsewhere whose QMP monitor listens on the
    /// Unix socket `path` (`-qmp unix:PATH,server=on,wait=off`). QMP and
    /// events work as for a launched machine; [`Machine::shutdown`] sends
    /// `quit` and waits for QEMU to close the connection; there is no pid
    /// and no log, and the QEMU is never killed (dropping the machine only
    /// disconnects). `timeout` covers connecting and negotiation.
    pub fn attach_unix(path: impl AsRef<Path>, timeout: Option<Duration>) -> Result<Machine> {
        let path = path.as_ref();
        let deadline = Deadline::after(timeout);
        let socket = launch::connect_unix(path)?;
        Self::attach(
            socket,
            Transport::Unix,
            format!("unix:{}", path.display()),
            deadline,
        )
    }

    /// Attach to a QEMU started elsewhere whose QMP monitor listens on TCP
    /// (`-qmp tcp:HOST:PORT,server=on,wait=off`), possibly on another host.
    /// See [`Machine::attach_unix`].
    pub fn attach_tcp(host: &str, port: u16, timeout: Option<Duration>) -> Result<Machine> {
        let deadline = Deadline::after(timeout);
        let socket = launch::connect_tcp(host, port, deadline)?;
        Self::attach(
            socket,
            Transport::Tcp,
            format!("tcp:{host}:{port}"),
            deadline,
        )
    }

    fn attach(
        socket: crate::socket::Socket,
        transport: Transport,
        address: String,
        deadline: Deadline,
    ) -> Result<Machine> {
        let options = ConnectOptions {
            event_queue_capacity: DEFAULT_EVENT_QUEUE_CAPACITY,
            trace: None,
        };
        let qmp = QmpConnection::handshake(socket, deadline, None, &options)?;
        let machine = Machine::new(Config::new(String::new()));
        {
            let mut inner = machine.inner.lock();
            inner.attached = true;
            inner.run = Some(Arc::new(Run::attached(qmp, transport, address)));
        }
        Ok(machine)
    }

    /// Whether this machine is attached to a QEMU started elsewhere.
    pub fn is_attached(&self) -> bool {
        self.inner.lock().attached
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
        if inner.attached {
            return Err(Error::state(
                "an attached machine cannot be configured (QEMU was started elsewhere)",
            ));
        }
        if inner.run.as_ref().is_some_and(|run| run.is_active()) {
            return Err(Error::state(
                "cannot configure a launched machine; shut it down first",
            ));
        }
        Ok(change(&mut inner.config))
    }

    /// Like [`Machine::configure`] for a change that can fail.
    pub fn try_configure<R>(&self, change: impl FnOnce(&mut Config) -> Result<R>) -> Result<R> {
        self.configure(change)?
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
            if inner.attached {
                return Err(Error::state(
                    "an attached machine cannot be launched (QEMU was started elsewhere)",
                ));
            }
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
        let fail_early = |reason: String| {
            Error::Launch(Box::new(LaunchError {
                reason,
                exit_status: None,
                command_line: quote_command_line(&config.preview_argv()),
                output: String::new(),
            }))
        };
        let trace = match &config.qmp_trace {
            Some(path) => Some(Arc::new(Trace::open(path).map_err(|e| {
                fail_early(format!("cannot open the QMP trace {}: {e}", path.display()))
            })?)),
            None => None,
        };
        let prepared = Prepared::new(&config, self.id).map_err(fail_early)?;
        let spawned = QemuProcess::spawn(&SpawnSpec {
            argv: &prepared.argv,
            output: &prepared.log_file,
            inherit: &prepared.inherit,
        });
        // Our copies of QEMU's socketpair ends must go now, or QEMU's exit
        // would not show up as EOF on our side.
        drop(prepared.qemu_ends);
        drop(prepared.log_file);
        let (process, spawn_error) = match spawned {
            Ok(process) => (Some(process), None),
            Err(e) => (None, Some(e)),
        };
        let run = Arc::new(Run {
            command_line: prepared.argv,
            process,
            qmp: OnceLock::new(),
            qmp_enabled: config.qmp_enabled,
            transport: prepared.transport,
            monitor_port: prepared.monitor_port,
            console: prepared.console,
            temp_dir: Mutex::new(Some(prepared.temp_dir)),
            remove_on_finish: prepared.remove_on_finish,
            log_path: Some(prepared.log_path),
            captured_log: Mutex::new(None),
            quit_issued: Default::default(),
            killed: Default::default(),
            finished: Mutex::new(false),
        });
        self.inner.lock().run = Some(Arc::clone(&run));

        if let Some(e) = spawn_error {
            run.finish();
            let program = run.command_line.first().map_or("", String::as_str);
            return Err(run.launch_error(format!("cannot execute {program:?}: {e}")));
        }
        let process = run.process.as_ref().expect("spawned");
        let options = ConnectOptions {
            event_queue_capacity: config.event_queue_capacity,
            trace,
        };
        let connected = match prepared.qmp {
            QmpEndpoint::None => return Ok(()),
            QmpEndpoint::Connected(socket) => Ok(socket),
            QmpEndpoint::Listening(listener) => listener.accept(deadline, process),
        }
        .and_then(|socket| {
            let exit_fd = process.exit_fd();
            let watch = exit_fd.as_deref().map(AsFd::as_fd);
            QmpConnection::handshake(socket, deadline, watch, &options)
        });
        match connected {
            Ok(connection) => {
                let _ = run.qmp.set(connection);
                Ok(())
            }
            Err(e) => {
                if matches!(e, Error::Disconnected(_)) {
                    // QEMU is on its way out: let it report its own status.
                    process.wait_until(Deadline::after(Some(LAUNCH_EXIT_GRACE)));
                }
                run.finish();
                Err(run.launch_error(e.to_string()))
            }
        }
    }

    /// Run a QMP command and return QEMU's whole reply, `{"return": ...}` or
    /// `{"error": {"class": ..., "desc": ...}}`, without the `id` the
    /// library added. `args` must be a JSON object. A QMP error is not an
    /// `Err` here; see [`Machine::command`]. A timeout does not cancel the
    /// command: QEMU may still run it.
    pub fn qmp(&self, cmd: &str, args: Option<&Value>, timeout: Option<Duration>) -> Result<Value> {
        self.execute(cmd, args, timeout)?
            .to_value()
            .map_err(Error::Protocol)
    }

    /// [`Machine::qmp`] with the reply as JSON text, as QEMU sent it: a
    /// large reply is never built into a tree.
    pub fn qmp_text(
        &self,
        cmd: &str,
        args: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<String> {
        Ok(self.execute(cmd, args, timeout)?.to_json_text())
    }

    fn execute(&self, cmd: &str, args: Option<&Value>, timeout: Option<Duration>) -> Result<Reply> {
        if cmd.is_empty() {
            return Err(Error::invalid("the command name must not be empty"));
        }
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
        if cmd == "quit" && !reply.is_error() {
            run.quit_issued.store(true, Ordering::SeqCst);
        }
        Ok(reply)
    }

    /// Pass `fd` to QEMU under the name `fdname`: sends `getfd` with the
    /// descriptor as `SCM_RIGHTS` ancillary data on the QMP socket. The
    /// name is then usable where QEMU takes an fd name (`closefd`,
    /// `migrate` to `fd:NAME`, `netdev_add`, ...). Only possible on a
    /// Unix-socket monitor: otherwise [`Error::State`]. A refusal by QEMU is
    /// [`Error::Command`].
    pub fn send_fd(
        &self,
        fd: BorrowedFd<'_>,
        fdname: &str,
        timeout: Option<Duration>,
    ) -> Result<()> {
        let run = self.command_run()?;
        if run.transport != Transport::Unix {
            return Err(Error::state(
                "descriptors can only be passed over a Unix-socket QMP monitor (this one is TCP)",
            ));
        }
        let qmp = run.qmp.get().expect("checked by command_run");
        let args = serde_json::json!({ "fdname": fdname });
        let reply = qmp
            .execute_with_fd("getfd", Some(&args), fd, Deadline::after(timeout))
            .map_err(|e| run.explain(e))?;
        returned("getfd", reply).map(drop)
    }

    /// Start tracing QMP traffic to `path` (see [`Config::qmp_trace`]): for
    /// every later launch, and at once if a connection is open (also for an
    /// attached machine).
    pub fn set_qmp_trace(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let live = self.current_run().filter(|run| run.is_active());
        if let Some(qmp) = live.as_ref().and_then(|run| run.qmp.get()) {
            let trace = Trace::open(path).map_err(|e| {
                Error::io(format!("cannot open the QMP trace {}", path.display()), e)
            })?;
            qmp.set_trace(Some(Arc::new(trace)));
        }
        let mut inner = self.inner.lock();
        if !inner.attached {
            inner.config.qmp_trace(path);
        }
        Ok(())
    }

    /// Run a QMP command and return its `return` value; a QMP error becomes
    /// [`Error::Command`] with the error class and description.
    pub fn command(
        &self,
        cmd: &str,
        args: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<Value> {
        returned(cmd, self.execute(cmd, args, timeout)?)?
            .member()
            .map_err(Error::Protocol)
    }

    /// [`Machine::command`] with the `return` value as JSON text, as QEMU
    /// sent it: a large reply is never built into a tree.
    pub fn command_text(
        &self,
        cmd: &str,
        args: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<String> {
        Ok(returned(cmd, self.execute(cmd, args, timeout)?)?
            .member_text()
            .to_string())
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
        if filters.is_empty() {
            return Err(Error::invalid(
                "no event filters: no event could ever match",
            ));
        }
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
        check_patterns(success, failure)?;
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
        check_patterns(success, failure)?;
        let run = self.console_run()?;
        let console = run.console.as_ref().expect("checked by console_run");
        let deadline = Deadline::after(timeout);
        let mut line = Vec::with_capacity(command.len() + 1);
        line.extend_from_slice(command.as_bytes());
        line.push(b'\r');
        run.check_writable()?;
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
        run.check_writable()?;
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
        if self.is_attached() {
            return Err(Error::state(
                "an attached QEMU was not started by this library and cannot be killed; \
                 use shutdown (quit) instead",
            ));
        }
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

    /// Kill our QEMU, or disconnect from an attached one, and clean up:
    /// every call blocked on this machine returns. What dropping a machine
    /// does, for a machine that is shared.
    pub fn release(&self) {
        if self.is_attached() {
            if let Some(run) = self.current_run() {
                run.finish();
            }
        } else {
            let _ = self.kill();
        }
    }

    /// Wait up to `timeout` for QEMU to exit on its own (a guest power-off),
    /// then clean up. Succeeds whatever the exit status (see
    /// [`Machine::exit_status`]); on timeout returns [`Error::Timeout`] and
    /// leaves QEMU running. Not launched: does nothing.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<()> {
        let Some(run) = self.unfinished_run() else {
            return Ok(());
        };
        run.wait_exit(Deadline::after(timeout))?;
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
        run.log()
    }

    /// The TCP port of a TCP monitor (the one picked when port 0 was
    /// asked for), while launched or after.
    pub fn monitor_port(&self) -> Option<u16> {
        self.current_run()?.monitor_port
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
        run.check_writable()?;
        Ok(run)
    }
}

/// Console patterns must not be empty (an empty pattern matches at once).
fn check_patterns(success: &str, failure: Option<&str>) -> Result<()> {
    if success.is_empty() {
        return Err(Error::invalid("the success pattern must not be empty"));
    }
    if failure.is_some_and(str::is_empty) {
        return Err(Error::invalid(
            "the failure pattern must not be empty (pass none instead)",
        ));
    }
    Ok(())
}

/// The reply if QEMU answered `return`; its `error` as [`Error::Command`].
fn returned(cmd: &str, reply: Reply) -> Result<Reply> {
    if !reply.is_error() {
        return Ok(reply);
    }
    let error = reply.member().map_err(Error::Protocol)?;
    let field = |name: &str| {
        error
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Err(Error::Command {
        command: cmd.to_string(),
        class: field("class"),
        desc: field("desc"),
    })
}

impl Drop for Machine {
    fn drop(&mut self) {
        // An attached QEMU is not ours: `finish` only disconnects from it.
        if let Some(run) = self.inner.get_mut().run.take() {
            run.kill();
            run.finish();
        }
    }
}
