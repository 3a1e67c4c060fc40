//! [`Machine`]: one QEMU virtual machine, from configuration through launch
//! and use to shutdown, modelled on QEMU's own Python `QEMUMachine`.
//!
//! Every method takes `&self` and may be called from several threads at
//! once: one thread can wait for an event while another sends commands, and
//! [`Machine::kill`] interrupts a launch or a shutdown in progress.
//!
//! `config.rs` holds what is decided before launch, `lifecycle.rs` the
//! machine's state and its transitions, `launch.rs` how a launch happens,
//! `run.rs` one launch (or attachment) and the ways it ends,
//! `listener.rs` event listeners, `agent.rs` the guest agent's calls,
//! `qtest.rs` qtest's.

mod agent;
mod artifacts;
mod config;
mod launch;
mod lifecycle;
mod listener;
mod migrate;
mod qtest;
mod run;

use std::os::fd::{BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use config::{
    Config, MonitorAddress, DEFAULT_LAUNCH_TIMEOUT, DEFAULT_QTEST_TIMEOUT, MAX_CONSOLE_INDEX,
    MAX_UNIX_SOCKET_PATH,
};
pub use listener::Listener;
pub use migrate::migrate;

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::process::ExitStatus;
use crate::qmp::events::EventFilter;
use crate::qmp::framing::Reply;
use crate::qmp::listeners::ListenerSet;
use crate::qmp::trace::Trace;
use crate::qmp::wire::Arguments;
use crate::qmp::{ConnectOptions, QmpConnection};
use launch::Transport;
use lifecycle::{Core, Need, Phase};
use run::{Origin, Run, RunFiles, RunParts};

static NEXT_MACHINE: AtomicU64 = AtomicU64::new(0);

/// A command sent with [`Machine::command_send`], whose reply is collected
/// with [`Machine::command_receive`]. Tickets are unique in the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

impl Ticket {
    /// The ticket's number (what the C API hands out).
    pub fn id(&self) -> u64 {
        self.0
    }

    /// The ticket with number `id`.
    pub fn from_id(id: u64) -> Ticket {
        Ticket(id)
    }
}

/// A QEMU virtual machine.
///
/// Dropping a `Machine` whose QEMU still runs kills and reaps it.
#[derive(Debug)]
pub struct Machine {
    core: Arc<Core>,
}

impl Machine {
    /// A machine that will run with `config`. Nothing starts until
    /// [`Machine::launch`].
    pub fn new(config: Config) -> Machine {
        Machine {
            core: Arc::new(Core::new(
                config,
                NEXT_MACHINE.fetch_add(1, Ordering::Relaxed),
                Phase::Idle,
            )),
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
        let socket = launch::connect_unix(path, deadline)?;
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
        let config = Config::new(String::new());
        let listeners = Arc::new(ListenerSet::default());
        let options = ConnectOptions {
            event_queue_capacity: config.event_queue_capacity,
            event_queue_bytes: config.event_queue_bytes,
            trace: None,
            listeners: Arc::clone(&listeners),
        };
        let qmp = QmpConnection::handshake(socket, None, deadline, &options)?;
        let run = Run::new(RunParts {
            origin: Origin::Attached(address.clone()),
            command_line: vec![address],
            process: None,
            qmp: Some(qmp),
            transport,
            monitor_port: None,
            console: None,
            agent: None,
            qtest: None,
            files: RunFiles::default(),
            log_path: None,
            trace_path: None,
        });
        let mut core = Core::new(
            config,
            NEXT_MACHINE.fetch_add(1, Ordering::Relaxed),
            Phase::Attached(Arc::new(run)),
        );
        core.listeners = listeners;
        Ok(Machine {
            core: Arc::new(core),
        })
    }

    /// [`Error::State`] in a process forked from the one that created this
    /// machine (see `owner.rs`).
    pub(crate) fn check_owner(&self) -> Result<()> {
        self.core.check_owner()
    }

    /// Whether this machine is attached to a QEMU started elsewhere.
    pub fn is_attached(&self) -> bool {
        self.core
            .phase()
            .ok()
            .and_then(|p| p.run().map(|r| r.is_attached()))
            .unwrap_or(false)
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
        self.core.configure(change)
    }

    /// Like [`Machine::configure`] for a change that can fail. Invalid input
    /// is [`Error::InvalidArgument`] whatever the state.
    pub fn try_configure<R>(&self, change: impl FnOnce(&mut Config) -> Result<R>) -> Result<R> {
        self.core.try_configure(change)
    }

    /// A copy of the current configuration.
    pub fn config(&self) -> Result<Config> {
        self.core.config()
    }

    /// Start QEMU and, unless QMP is disabled, complete QMP negotiation.
    ///
    /// On failure nothing is left behind (no process, socket, temporary
    /// directory or descriptor) and the error is [`Error::Launch`], holding
    /// QEMU's exit status, command line and output. A QEMU that exits early
    /// is reported as soon as it has exited, not after the launch timeout.
    /// [`Machine::kill`] (or dropping the machine) from another thread
    /// cancels a launch at any point.
    pub fn launch(&self) -> Result<()> {
        self.core.launch()
    }

    /// Run a QMP command and return QEMU's whole reply, `{"return": ...}` or
    /// `{"error": {"class": ..., "desc": ...}}`. `args` must be a JSON
    /// object. A QMP error is not an `Err` here; see [`Machine::command`].
    /// A timeout does not cancel the command: QEMU may still run it.
    pub fn qmp(&self, cmd: &str, args: Option<&Value>, timeout: Option<Duration>) -> Result<Value> {
        let args = args.map(Arguments::from_value).transpose()?;
        self.execute(cmd, args.as_ref(), timeout)?
            .to_value()
            .map_err(Error::Protocol)
    }

    /// [`Machine::qmp`] with arguments and reply as JSON text (a large
    /// reply is never built into a tree; arguments are sent as written).
    pub fn qmp_text(
        &self,
        cmd: &str,
        args: Option<&Arguments>,
        timeout: Option<Duration>,
    ) -> Result<String> {
        Ok(self.execute(cmd, args, timeout)?.to_json_text())
    }

    /// Run a QMP command and return its `return` value; a QMP error becomes
    /// [`Error::Command`] with the error class and description.
    pub fn command(
        &self,
        cmd: &str,
        args: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<Value> {
        let args = args.map(Arguments::from_value).transpose()?;
        returned(cmd, self.execute(cmd, args.as_ref(), timeout)?)?
            .member()
            .map_err(Error::Protocol)
    }

    /// [`Machine::command`] with arguments and `return` value as JSON text.
    pub fn command_text(
        &self,
        cmd: &str,
        args: Option<&Arguments>,
        timeout: Option<Duration>,
    ) -> Result<String> {
        Ok(returned(cmd, self.execute(cmd, args, timeout)?)?
            .member_text()
            .to_string())
    }

    fn execute(
        &self,
        cmd: &str,
        args: Option<&Arguments>,
        timeout: Option<Duration>,
    ) -> Result<Reply> {
        let run = self.core.run(Need::Live)?;
        let qmp = run.qmp()?;
        let reply = qmp
            .execute(cmd, args, Deadline::after(timeout))
            .map_err(|e| run.explain(e))?;
        if cmd == "quit" && !reply.is_error() {
            run.quit_issued.store(true, Ordering::SeqCst);
        }
        Ok(reply)
    }

    /// Send a command now without waiting for its reply (pipelining, event
    /// loops): never blocks — what the socket does not take at once is
    /// written as later calls read or write. Collect the reply with
    /// [`Machine::command_receive`].
    pub fn command_send(&self, cmd: &str, args: Option<&Arguments>) -> Result<Ticket> {
        let run = self.core.run(Need::Live)?;
        let ticket = run
            .qmp()?
            .send_split(cmd, args)
            .map_err(|e| run.explain(e))?;
        if cmd == "quit" {
            run.quit_issued.store(true, Ordering::SeqCst);
        }
        Ok(Ticket(ticket))
    }

    /// The whole reply (as [`Machine::qmp_text`] gives it) to a command
    /// sent with [`Machine::command_send`]. A timeout (`Some(ZERO)` polls)
    /// keeps the ticket valid; any other outcome consumes it. A ticket
    /// that is not outstanding on this machine is
    /// [`Error::InvalidArgument`]; the run ending answers every
    /// outstanding ticket with [`Error::Disconnected`].
    pub fn command_receive(&self, ticket: Ticket, timeout: Option<Duration>) -> Result<String> {
        let run = self.core.run(Need::Any)?;
        let reply = run
            .qmp()?
            .receive_split(ticket.0, Deadline::after(timeout))
            .map_err(|e| run.explain(e))?;
        Ok(reply.to_json_text())
    }

    /// Pass `fd` to QEMU under the name `fdname`: sends `getfd` with the
    /// descriptor as `SCM_RIGHTS` ancillary data on the QMP socket. The
    /// name is then usable where QEMU takes an fd name (`closefd`,
    /// `migrate` to `fd:NAME`, `netdev_add`, ...). Only possible on a
    /// Unix-socket monitor: otherwise [`Error::AddDevice`]. A refusal by
    /// QEMU is [`Error::Command`].
    pub fn send_fd(
        &self,
        fd: BorrowedFd<'_>,
        fdname: &str,
        timeout: Option<Duration>,
    ) -> Result<()> {
        let run = self.core.run(Need::Live)?;
        if run.transport != Transport::Unix {
            return Err(Error::AddDevice(
                "descriptors can only be passed over a Unix-socket QMP monitor (this one is TCP)"
                    .into(),
            ));
        }
        let args = Arguments::from_value(&serde_json::json!({ "fdname": fdname }))?;
        let reply = run
            .qmp()?
            .execute_with("getfd", Some(&args), Some(fd), Deadline::after(timeout))
            .map_err(|e| run.explain(e))?;
        returned("getfd", reply).map(drop)
    }

    /// Start tracing QMP traffic to `path` (see [`Config::qmp_trace`]): for
    /// every later launch, and at once if a connection is open (also for an
    /// attached machine).
    pub fn set_qmp_trace(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        if let Ok(run) = self.core.run(Need::Live) {
            if let Some(qmp) = &run.qmp {
                let trace = Trace::open(path).map_err(|e| {
                    Error::io(format!("cannot open the QMP trace {}", path.display()), e)
                })?;
                qmp.set_trace(Some(Arc::new(trace)));
                *run.trace_path.lock() = Some(path.to_path_buf());
            }
            if run.is_attached() {
                return Ok(());
            }
        }
        self.core.configure(|c| {
            c.qmp_trace(path);
        })
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
        EventFilter::check_list(filters)?;
        let run = self.core.run(Need::Any)?;
        run.qmp()?
            .wait_event(
                |ev| filters.iter().any(|f| f.matches(ev)),
                Deadline::after(timeout),
                || EventFilter::describe(filters),
            )
            .map_err(|e| run.explain(e))
    }

    /// All queued events, oldest first; the queue is left empty.
    pub fn events_take(&self) -> Result<Vec<Value>> {
        let run = self.core.run(Need::Any)?;
        Ok(run.qmp()?.take_events())
    }

    /// Events dropped because the queue was full, in this run.
    pub fn events_dropped(&self) -> u64 {
        self.qmp_stat(QmpConnection::events_dropped)
    }

    /// Replies that arrived for no waiting command (late replies to
    /// commands that timed out), dropped, in this run.
    pub fn stray_replies(&self) -> u64 {
        self.qmp_stat(QmpConnection::stray_replies)
    }

    /// Bytes this run has written to QEMU's QMP monitor (the benchmark
    /// compares them with a minimal client's).
    pub fn qmp_bytes_written(&self) -> u64 {
        self.qmp_stat(QmpConnection::bytes_written)
    }

    fn qmp_stat(&self, stat: impl Fn(&QmpConnection) -> u64) -> u64 {
        self.core
            .run(Need::Any)
            .ok()
            .and_then(|run| run.qmp.as_ref().map(&stat))
            .unwrap_or(0)
    }

    /// A listener that receives a copy of every event passing any of
    /// `filters` (`None`: every event) that QEMU sends from now on, through
    /// any number of launches, until it is dropped. The machine's own queue
    /// is unaffected. See [`Listener`].
    pub fn listen(&self, filters: Option<Vec<EventFilter>>) -> Result<Listener> {
        if let Some(filters) = &filters {
            EventFilter::check_list(filters)?;
        }
        let qmp_off = match self.core.phase()? {
            Phase::Running(run) | Phase::Ending(run) | Phase::Ended(run) | Phase::Attached(run) => {
                run.qmp.is_none() && !run.is_attached()
            }
            Phase::Idle | Phase::Launching(_) => !self.core.config()?.qmp_enabled,
        };
        if qmp_off {
            return Err(Error::AddDevice(
                "QMP is disabled for this machine: no events can come (see qmp(false))".into(),
            ));
        }
        Listener::new(&self.core, filters)
    }

    /// A descriptor for event loops: readable when QMP input waits to be
    /// routed, when another thread's blocking call routed input (a reply
    /// or event the loop has not seen), when QEMU has exited, and (for
    /// good) once the run has ended.
    /// Poll it, then call [`Machine::dispatch`]. `None` when QEMU is not
    /// running (also once it has died); a descriptor handed out earlier
    /// stays open, and readable, until the next launch or until the machine
    /// is dropped.
    pub fn poll_fd(&self) -> Result<Option<RawFd>> {
        let Ok(run) = self.core.run(Need::Live) else {
            return Ok(None);
        };
        if !run.is_alive() {
            return Ok(None);
        }
        match &run.qmp {
            Some(qmp) => qmp.loop_fd().map(Some),
            None => Ok(None),
        }
    }

    /// Route whatever QMP input has arrived (replies to tickets, events to
    /// the queue and listeners) without ever blocking: returns at once if
    /// another thread is reading. [`Error::Disconnected`] once the run has
    /// ended, with QEMU's exit status.
    pub fn dispatch(&self) -> Result<()> {
        let run = self.core.run(Need::Any)?;
        run.qmp()?.dispatch().map_err(|e| run.explain(e))
    }

    /// Wait until `success` appears on the serial console after the read
    /// cursor (byte-wise, so a prompt without a newline matches). Returns
    /// the output from the cursor up to and including the match and moves
    /// the cursor past it. If `failure` appears first:
    /// [`Error::ConsoleFailure`] (the cursor moves past it). On timeout:
    /// [`Error::Timeout`] with the output seen so far; the cursor stays.
    /// Once QEMU is gone and the buffered output does not match:
    /// [`Error::Disconnected`]. Concurrent waits never return the same
    /// bytes: each continues from where the other's match ended.
    pub fn console_wait(
        &self,
        success: &str,
        failure: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<String> {
        self.console_wait_bytes(success, failure, timeout)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// [`Machine::console_wait`] returning the output byte-exact.
    pub fn console_wait_bytes(
        &self,
        success: &str,
        failure: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>> {
        check_patterns(success, failure)?;
        let run = self.console_run(Need::Any)?;
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
        let run = self.console_run(Need::Live)?;
        let console = run.console.as_ref().expect("checked by console_run");
        let deadline = Deadline::after(timeout);
        let mut line = Vec::with_capacity(command.len() + 1);
        line.extend_from_slice(command.as_bytes());
        line.push(b'\r');
        console
            .write(&line, deadline)
            .and_then(|()| console.wait(success, failure, deadline))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| run.explain(e))
    }

    /// Send raw bytes to the console. Blocks only while QEMU is not reading
    /// its console and the socket buffer is full; QEMU exiting (or
    /// [`Machine::kill`] from another thread) ends the wait.
    pub fn console_write(&self, data: &[u8]) -> Result<()> {
        let run = self.console_run(Need::Live)?;
        let console = run.console.as_ref().expect("checked by console_run");
        console
            .write(data, Deadline::never())
            .map_err(|e| run.explain(e))
    }

    /// Console output after the read cursor, without waiting; moves the
    /// cursor to the end. Invalid UTF-8 is replaced; see
    /// [`Machine::console_read_bytes`]. Readable after QEMU has exited,
    /// until the next launch.
    pub fn console_read(&self) -> Result<String> {
        self.console_read_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// [`Machine::console_read`], byte-exact (NUL bytes included).
    pub fn console_read_bytes(&self) -> Result<Vec<u8>> {
        let run = self.console_run(Need::Any)?;
        Ok(run.console.as_ref().expect("checked by console_run").read())
    }

    /// Console bytes dropped in this run because the in-memory buffer was
    /// full.
    pub fn console_dropped(&self) -> u64 {
        self.console_run(Need::Any)
            .ok()
            .and_then(|run| run.console.as_ref().map(|c| c.dropped()))
            .unwrap_or(0)
    }

    /// Shut QEMU down gracefully: send `quit` (unless one already went
    /// through; without QMP, SIGTERM) and wait up to `timeout` for it to
    /// exit. If that fails, QEMU is killed and reaped and the result is
    /// [`Error::AbnormalShutdown`] saying why. `Ok` only if QEMU exited with
    /// status 0 without being killed by the library. Cleans up in every
    /// case, by the deadline (a launch still in progress then is
    /// cancelled). Not launched: does nothing.
    pub fn shutdown(&self, timeout: Option<Duration>) -> Result<()> {
        self.core.shutdown(Deadline::after(timeout))
    }

    /// Kill QEMU with SIGKILL, reap it and clean up. Interrupts a launch,
    /// shutdown or wait in progress in another thread. Not launched: does
    /// nothing.
    pub fn kill(&self) -> Result<()> {
        self.core.kill()
    }

    /// Kill our QEMU (cancelling a launch in progress), or disconnect from
    /// an attached one, and clean up: every call blocked on this machine
    /// returns. What dropping a machine does, for a machine that is shared.
    pub fn release(&self) {
        self.core.release()
    }

    /// Wait up to `timeout` for QEMU to exit on its own (a guest power-off),
    /// then clean up. Succeeds whatever the exit status (see
    /// [`Machine::exit_status`]); on timeout returns [`Error::Timeout`] and
    /// leaves QEMU running. Not launched: does nothing.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<()> {
        self.core.wait(Deadline::after(timeout))
    }

    /// Whether QEMU is running (launched, not yet ended, and alive; for an
    /// attachment: connected). Never blocks.
    pub fn is_running(&self) -> bool {
        match self.core.phase() {
            Ok(Phase::Running(run) | Phase::Attached(run)) => run.is_alive(),
            _ => false,
        }
    }

    /// QEMU's pid while the process exists (from its start during a launch
    /// until it is reaped).
    pub fn pid(&self) -> Option<i32> {
        self.core.pid()
    }

    /// How QEMU ended, once it has (after any exit, including a failed
    /// launch in which it ran). `None` while it runs or if it never started.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let run = self.core.run(Need::Any).ok()?;
        run.process.as_ref()?.try_wait()
    }

    /// QEMU's stdout and stderr so far (or of the last run).
    /// [`Error::State`] before the first launch.
    pub fn log(&self) -> Result<String> {
        self.core.run(Need::Any)?.log()
    }

    /// The TCP port of a TCP monitor (the one picked when port 0 was
    /// asked for), while launched or after.
    pub fn monitor_port(&self) -> Option<u16> {
        self.core.run(Need::Any).ok()?.monitor_port
    }

    /// The per-run temporary directory (mode 0700), while launched.
    pub fn temp_dir(&self) -> Option<PathBuf> {
        let run = self.core.run(Need::Any).ok()?;
        let files = run.files.lock();
        files.temp_dir.as_ref().map(|d| d.path().to_path_buf())
    }

    /// The full command line of the current or last run.
    pub fn command_line(&self) -> Option<Vec<String>> {
        Some(self.core.run(Need::Any).ok()?.command_line.clone())
    }

    /// The QMP greeting of the current or last run.
    pub fn greeting(&self) -> Option<Value> {
        let run = self.core.run(Need::Any).ok()?;
        run.qmp.as_ref().map(|q| q.greeting().clone())
    }

    /// The run whose console (open or closed) holds the output.
    fn console_run(&self, need: Need) -> Result<Arc<Run>> {
        let run = self.core.run(need)?;
        if run.console.is_none() {
            return Err(Error::AddDevice(
                "the machine has no console (set one up before the launch: qm_set_console, Config::console)".into(),
            ));
        }
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
pub(crate) fn returned(cmd: &str, reply: Reply) -> Result<Reply> {
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
        // Kills our QEMU; an attached one is only disconnected from. In a
        // forked child's copy this does nothing (see `owner.rs`).
        self.core.release();
    }
}
