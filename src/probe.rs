//! What a QEMU binary can do, asked once: one short-lived `-machine none`
//! QEMU per binary answers every question (machines with their aliases,
//! device types, accelerators, CPU models, QMP commands), and the answer is
//! kept for the process. Tests use it to skip what a binary lacks.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::machine::{Config, Machine};

/// What to ask a QEMU binary about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// A machine type, by name or alias (`pc` is the alias of
    /// `pc-i440fx-7.2`).
    Machine,
    /// A device type (`virtio-serial-pci`).
    Device,
    /// An accelerator (`tcg`, `kvm`, `qtest`).
    Accel,
    /// A CPU model (`qemu64`).
    Cpu,
    /// A QMP command (`query-status`).
    Command,
}

impl FromStr for Capability {
    type Err = Error;

    fn from_str(what: &str) -> Result<Capability> {
        match what {
            "machine" => Ok(Capability::Machine),
            "device" => Ok(Capability::Device),
            "accel" => Ok(Capability::Accel),
            "cpu" => Ok(Capability::Cpu),
            "command" => Ok(Capability::Command),
            _ => Err(Error::invalid(format!(
                "unknown capability {what:?}: ask about machine, device, accel, cpu or command"
            ))),
        }
    }
}

/// Everything one binary answered.
#[derive(Debug, Default)]
struct Answers {
    sets: HashMap<Capability, BTreeSet<String>>,
}

/// One entry per binary; concurrent first probes of a binary wait for one
/// QEMU.
type Entry = Arc<Mutex<Option<Arc<Answers>>>>;

fn cache() -> &'static Mutex<HashMap<String, Entry>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Entry>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Whether `binary` has `name` of kind `what`. The first question about a
/// binary starts one `-machine none` QEMU (bounded by `timeout`); the
/// answers are kept for the process. A binary that does not start is
/// [`Error::Launch`] (not cached: a later call tries again). QEMU inherits
/// this process's environment (e.g. `QEMU_MODULE_DIR`).
pub fn probe(
    binary: &str,
    what: Capability,
    name: &str,
    timeout: Option<Duration>,
) -> Result<bool> {
    if binary.is_empty() {
        return Err(Error::invalid("the binary must not be empty"));
    }
    let entry = Arc::clone(cache().lock().entry(binary.to_string()).or_default());
    // A first probe of this binary in another thread is asking QEMU now:
    // wait for its answers, within this call's timeout.
    let mut slot = match timeout {
        None => entry.lock(),
        Some(t) => entry.try_lock_for(t).ok_or_else(|| {
            Error::Timeout(format!(
                "another probe of {binary} was still asking QEMU after {} ms",
                t.as_millis()
            ))
        })?,
    };
    let answers = match slot.as_ref() {
        Some(answers) => Arc::clone(answers),
        None => {
            let answers = Arc::new(ask(binary, timeout)?);
            *slot = Some(Arc::clone(&answers));
            answers
        }
    };
    Ok(answers
        .sets
        .get(&what)
        .is_some_and(|set| set.contains(name)))
}

fn names<'a>(value: &'a Value, key: &'a str) -> impl Iterator<Item = String> + 'a {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(move |item| item.get(key)?.as_str().map(str::to_string))
}

/// Start the binary once and ask it everything.
fn ask(binary: &str, timeout: Option<Duration>) -> Result<Answers> {
    let mut config = Config::new(binary);
    config
        .machine_type("none")
        .args(["-accel", "tcg", "-nodefaults"])
        .launch_timeout(timeout);
    let vm = Machine::new(config);
    vm.launch()?;
    let mut answers = Answers::default();
    let machines = vm.command("query-machines", None, timeout)?;
    let mut set: BTreeSet<String> = names(&machines, "name").collect();
    set.extend(names(&machines, "alias"));
    answers.sets.insert(Capability::Machine, set);
    let devices = vm.command(
        "qom-list-types",
        Some(&json!({"implements": "device", "abstract": false})),
        timeout,
    )?;
    answers
        .sets
        .insert(Capability::Device, names(&devices, "name").collect());
    let accels = vm.command(
        "qom-list-types",
        Some(&json!({"implements": "accel"})),
        timeout,
    )?;
    answers.sets.insert(
        Capability::Accel,
        names(&accels, "name")
            .filter_map(|n| n.strip_suffix("-accel").map(str::to_string))
            .collect(),
    );
    let cpus = vm.command("query-cpu-definitions", None, timeout)?;
    answers
        .sets
        .insert(Capability::Cpu, names(&cpus, "name").collect());
    let commands = vm.command("query-commands", None, timeout)?;
    answers
        .sets
        .insert(Capability::Command, names(&commands, "name").collect());
    // The answers are in; how this QEMU ends does not matter.
    let _ = vm.shutdown(timeout);
    Ok(answers)
}
