//! qtest's calls on [`Machine`] (see `crate::qtest`). Every call is bounded
//! by the machine's qtest timeout ([`crate::Config::qtest_timeout`]).

use std::sync::Arc;

use super::lifecycle::Need;
use super::run::Run;
use super::Machine;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::qtest::QtestChannel;

impl Machine {
    fn with_qtest<T>(&self, call: impl FnOnce(&QtestChannel, Deadline) -> Result<T>) -> Result<T> {
        let run: Arc<Run> = self.core.run(Need::Live)?;
        let Some(qtest) = &run.qtest else {
            return Err(Error::AddDevice(
                "the machine does not run under qtest (set that up before the launch: qm_set_qtest, Config::qtest)".into(),
            ));
        };
        let deadline = Deadline::after(self.core.config()?.qtest_timeout);
        call(qtest, deadline).map_err(|e| run.explain(e))
    }

    /// Send one qtest protocol line (checked: single spaces, no newline)
    /// and return QEMU's `OK ...` reply; `FAIL`/`ERR` is [`Error::Command`].
    pub fn qtest_raw(&self, line: &str) -> Result<String> {
        self.with_qtest(|q, d| q.raw(line, d))
    }

    /// Read `size` (1, 2, 4 or 8) bytes of guest memory at `addr`.
    pub fn qtest_read(&self, addr: u64, size: u32) -> Result<u64> {
        self.with_qtest(|q, d| q.read(addr, size, d))
    }

    /// Write `size` (1, 2, 4 or 8) bytes of guest memory at `addr`.
    pub fn qtest_write(&self, addr: u64, size: u32, value: u64) -> Result<()> {
        self.with_qtest(|q, d| q.write(addr, size, value, d))
    }

    /// Read I/O port `port`, `size` (1, 2 or 4) bytes wide.
    pub fn qtest_in(&self, port: u16, size: u32) -> Result<u32> {
        self.with_qtest(|q, d| q.port_in(port, size, d))
    }

    /// Write I/O port `port`, `size` (1, 2 or 4) bytes wide.
    pub fn qtest_out(&self, port: u16, size: u32, value: u32) -> Result<()> {
        self.with_qtest(|q, d| q.port_out(port, size, value, d))
    }

    /// Read `buf.len()` bytes of guest memory at `addr`.
    pub fn qtest_memread(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        self.with_qtest(|q, d| q.memread(addr, buf, d))
    }

    /// Write `data` to guest memory at `addr`.
    pub fn qtest_memwrite(&self, addr: u64, data: &[u8]) -> Result<()> {
        self.with_qtest(|q, d| q.memwrite(addr, data, d))
    }

    /// Fill `len` bytes of guest memory at `addr` with `byte`.
    pub fn qtest_memset(&self, addr: u64, byte: u8, len: usize) -> Result<()> {
        self.with_qtest(|q, d| q.memset(addr, byte, len, d))
    }

    /// Advance the virtual clock by `ns` nanoseconds (`None`: to the next
    /// timer deadline) and return the new virtual time. Needs
    /// `-accel qtest`.
    pub fn qtest_clock_step(&self, ns: Option<i64>) -> Result<i64> {
        self.with_qtest(|q, d| q.clock_step(ns, d))
    }

    /// Move the virtual clock to `ns` (if that is later) and return the new
    /// virtual time. Needs `-accel qtest`.
    pub fn qtest_clock_set(&self, ns: i64) -> Result<i64> {
        self.with_qtest(|q, d| q.clock_set(ns, d))
    }

    /// Intercept the GPIO input lines of the device at `qom_path`: their
    /// changes arrive as IRQ reports ([`Machine::qtest_get_irq`]).
    pub fn qtest_irq_intercept_in(&self, qom_path: &str) -> Result<()> {
        self.with_qtest(|q, d| q.irq_intercept(qom_path, false, d))
    }

    /// Intercept the GPIO output lines of the device at `qom_path`.
    pub fn qtest_irq_intercept_out(&self, qom_path: &str) -> Result<()> {
        self.with_qtest(|q, d| q.irq_intercept(qom_path, true, d))
    }

    /// Whether intercepted interrupt line `line` is raised, as QEMU last
    /// reported it. Never waits.
    pub fn qtest_get_irq(&self, line: i32) -> Result<bool> {
        self.with_qtest(|q, _| q.irq(line))
    }

    /// Set input line `line` of the GPIO list `name` of the device at
    /// `qom_path` to `level`.
    pub fn qtest_set_irq_in(
        &self,
        qom_path: &str,
        name: &str,
        line: i32,
        level: i32,
    ) -> Result<()> {
        self.with_qtest(|q, d| q.set_irq_in(qom_path, name, line, level, d))
    }
}
