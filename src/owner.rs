//! Which process a machine belongs to.
//!
//! A host that calls `fork()` without `exec` (Python's `multiprocessing`
//! with the fork start method, C test frameworks that fork per test) gives
//! its child a copy of every machine, with copies of their descriptors —
//! QEMU's pidfd, the sockets — and of locks that may have been held by
//! threads that do not exist in the child. Such a copy is inert: every call
//! on it is refused before any lock is taken, and dropping it releases
//! memory and closes the child's copies of the descriptors, but never
//! signals, reaps, shuts a shared socket down, joins a thread or removes a
//! file, all of which would act on the parent's machine.

use rustix::process::{getpid, Pid};

use crate::error::{Error, Result};

/// The process that created something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner(Pid);

impl Owner {
    /// This process.
    pub(crate) fn current() -> Owner {
        Owner(getpid())
    }

    /// Whether this process is the owner (false in a forked child).
    pub(crate) fn is_current(&self) -> bool {
        getpid() == self.0
    }

    /// [`Error::State`] in a forked child, naming the owner.
    pub(crate) fn check(&self) -> Result<()> {
        if self.is_current() {
            return Ok(());
        }
        Err(Error::state(format!(
            "this machine belongs to process {}; this process ({}) is a fork of it \
             and may only free its copy (new machines launch normally here)",
            self.0.as_raw_nonzero(),
            getpid().as_raw_nonzero()
        )))
    }
}
