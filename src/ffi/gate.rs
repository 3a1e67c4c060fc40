//! Counting the calls in flight on a handle, so that freeing it from one
//! thread can wake calls blocked in others and wait for them to return
//! before the memory goes away.

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};

#[derive(Debug, Default)]
pub(crate) struct Gate {
    state: Mutex<GateState>,
    idle: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    in_flight: usize,
    closing: bool,
}

/// One call in flight; leaving the call drops it.
pub(crate) struct Pass<'a> {
    gate: &'a Gate,
}

impl Gate {
    /// Register a call; refused once freeing has begun.
    pub(crate) fn enter(&self, what: &str) -> Result<Pass<'_>> {
        let mut state = self.state.lock();
        if state.closing {
            return Err(Error::state(format!("the {what} is being freed")));
        }
        state.in_flight += 1;
        Ok(Pass { gate: self })
    }

    /// Refuse new calls from now on.
    pub(crate) fn close(&self) {
        self.state.lock().closing = true;
    }

    /// Wait until every call in flight has returned (after [`Gate::close`]
    /// and after waking them).
    pub(crate) fn wait_idle(&self) {
        let mut state = self.state.lock();
        while state.in_flight > 0 {
            self.idle.wait(&mut state);
        }
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let mut state = self.gate.state.lock();
        state.in_flight -= 1;
        if state.in_flight == 0 && state.closing {
            self.gate.idle.notify_all();
        }
    }
}
