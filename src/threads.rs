//! Threads the library starts inside the host process.
//!
//! They are born with every signal blocked: process-directed signals (the
//! host's SIGINT, SIGTERM, SIGCHLD, SIGPIPE, a Go runtime's SIGURG) are then
//! always delivered to the host's own threads, never to ours.

use std::io;
use std::thread::JoinHandle;

const STACK_SIZE: usize = 512 << 10;

/// Spawn a named library thread with all signals blocked.
pub(crate) fn spawn<F>(name: &str, body: F) -> io::Result<JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    // Block everything in the creating thread for the duration of the
    // spawn: the new thread inherits the mask from its first instruction,
    // leaving no window in which it could take a signal.
    let previous = block_all_signals();
    let result = std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(STACK_SIZE)
        .spawn(body);
    restore_signal_mask(&previous);
    result
}

fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigfillset/pthread_sigmask only write
    // to the sets passed in.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        old
    }
}

fn restore_signal_mask(previous: &libc::sigset_t) {
    // SAFETY: `previous` is a mask obtained from pthread_sigmask above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, previous, std::ptr::null_mut());
    }
}
