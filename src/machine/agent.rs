//! The guest agent's calls on [`Machine`] (see `crate::agent`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::lifecycle::Need;
use super::run::Run;
use super::{returned, Listener, Machine};
use crate::agent::{AgentChannel, ExecResult};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::qmp::events::EventFilter;
use crate::qmp::wire::Arguments;

/// Agent commands that never reply, with the events that show they took
/// effect instead.
const NO_REPLY: &[(&str, &[&str])] = &[
    ("guest-shutdown", &["SHUTDOWN", "RESET"]),
    ("guest-suspend-disk", &["SHUTDOWN"]),
    ("guest-suspend-ram", &["SUSPEND"]),
    ("guest-suspend-hybrid", &["SUSPEND"]),
];

impl Machine {
    /// The run and its agent channel, or why there is none.
    fn agent_run(&self) -> Result<Arc<Run>> {
        let run = self.core.run(Need::Live)?;
        if run.agent.is_none() {
            return Err(Error::AddDevice(
                "the machine has no guest agent channel (set one up before the launch: qm_set_agent, Config::agent)".into(),
            ));
        }
        Ok(run)
    }

    fn with_agent<T>(&self, call: impl FnOnce(&Run, &AgentChannel) -> Result<T>) -> Result<T> {
        let run = self.agent_run()?;
        let agent = run.agent.as_ref().expect("checked by agent_run");
        call(&run, agent).map_err(|e| run.explain(e))
    }

    /// Wait until the guest agent answers (a `guest-sync-delimited`
    /// handshake, retried until the deadline: the agent starts late in the
    /// guest's boot). [`Error::Timeout`] says no agent answered.
    pub fn agent_wait_ready(&self, timeout: Option<Duration>) -> Result<()> {
        self.with_agent(|_, agent| agent.wait_ready(Deadline::after(timeout)))
    }

    /// Run a guest agent command and return its `return` value as JSON text
    /// ([`Error::Command`] with the agent's error class and description
    /// otherwise). The channel is synchronized first when its state is not
    /// known. Commands that never reply (`guest-shutdown`,
    /// `guest-suspend-*`) return `{}` once QEMU reports the effect
    /// (SHUTDOWN, RESET, SUSPEND) or exits.
    pub fn agent_cmd(
        &self,
        cmd: &str,
        args: Option<&Arguments>,
        timeout: Option<Duration>,
    ) -> Result<String> {
        let deadline = Deadline::after(timeout);
        if let Some((_, events)) = NO_REPLY.iter().find(|(name, _)| *name == cmd) {
            return self.agent_no_reply(cmd, args, events, deadline);
        }
        self.with_agent(|_, agent| {
            let reply = agent.execute(cmd, args, deadline)?;
            Ok(returned(cmd, reply)?.member_text().to_string())
        })
    }

    /// [`Machine::agent_cmd`] with arguments and result as values.
    pub fn agent_command(
        &self,
        cmd: &str,
        args: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<Value> {
        let args = args.map(Arguments::from_value).transpose()?;
        let text = self.agent_cmd(cmd, args.as_ref(), timeout)?;
        serde_json::from_str(&text).map_err(|e| Error::Protocol(e.to_string()))
    }

    fn agent_no_reply(
        &self,
        cmd: &str,
        args: Option<&Arguments>,
        events: &[&str],
        deadline: Deadline,
    ) -> Result<String> {
        let run = self.agent_run()?;
        // Listen before asking, so the event cannot be missed.
        let listener = match &run.qmp {
            Some(_) => Some(Listener::new(
                &self.core,
                Some(
                    events
                        .iter()
                        .map(|e| EventFilter::new(Some(e), None))
                        .collect(),
                ),
            )?),
            None => None,
        };
        let agent = run.agent.as_ref().expect("checked by agent_run");
        agent
            .send_only(cmd, args, deadline)
            .map_err(|e| run.explain(e))?;
        let happened = match &listener {
            Some(listener) => match listener.wait(deadline.remaining()) {
                Ok(_) | Err(Error::Disconnected(_)) => true,
                Err(Error::Timeout(_)) => false,
                Err(other) => return Err(other),
            },
            None => run.wait_exit(deadline),
        };
        if happened {
            Ok("{}".to_string())
        } else {
            Err(Error::Timeout(format!(
                "'{cmd}' was sent, but QEMU reported no {} and did not exit {}",
                events.join(" or "),
                deadline.describe()
            )))
        }
    }

    /// Run `argv` in the guest through the agent (`guest-exec` with
    /// captured output; `input`, if given, on its standard input) and wait
    /// for it to exit, polling `guest-exec-status` (backing off from 1 ms)
    /// within the one deadline. On timeout the program is left running and
    /// the message gives its pid in the guest.
    pub fn agent_exec(
        &self,
        argv: &[&str],
        input: Option<&[u8]>,
        timeout: Option<Duration>,
    ) -> Result<ExecResult> {
        match argv.first().copied() {
            None => return Err(Error::invalid("argv must name a program (it is empty)")),
            Some("") => return Err(Error::invalid("the program (argv[0]) must not be empty")),
            Some(_) => {}
        }
        self.with_agent(|_, agent| agent.exec(argv, input, Deadline::after(timeout)))
    }

    /// The content of the guest file `path` (any size, any bytes), read
    /// through the agent in chunks. The guest file is always closed.
    pub fn agent_file_read(&self, path: &str, timeout: Option<Duration>) -> Result<Vec<u8>> {
        self.with_agent(|_, agent| agent.file_read(path, Deadline::after(timeout)))
    }

    /// Write `data` to the guest file `path` (created or truncated) through
    /// the agent in chunks. The guest file is always closed.
    pub fn agent_file_write(
        &self,
        path: &str,
        data: &[u8],
        timeout: Option<Duration>,
    ) -> Result<()> {
        self.with_agent(|_, agent| agent.file_write(path, data, Deadline::after(timeout)))
    }
}
