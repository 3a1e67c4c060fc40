//! Starting a child process without copying the caller's address space.
//!
//! `fork` makes the kernel copy the page tables of the whole process, which
//! costs tens of milliseconds per GiB the host program holds. [`spawn`]
//! instead creates the child with `clone(CLONE_VM | CLONE_VFORK |
//! CLONE_PIDFD)`: the child borrows this process's memory until it calls
//! `execve`, so the launch costs the same whatever the host's size.
//!
//! # The spawn path
//!
//! Everything the child needs is prepared here, in the parent, before the
//! clone: argv and envp as NUL-terminated C arrays (the environment is this
//! process's current one with the requested changes applied), every path
//! to try for the program (`execvp` semantics, the `PATH` being the one the
//! child will get), `/dev/null` opened close-on-exec, and a stack of its own
//! for the child (`mmap`'d, [`STACK_SIZE`] bytes above one `PROT_NONE`
//! guard page). Then the parent blocks every signal, calls `clone`, and
//! restores its mask. The child
//!
//! 1. resets to `SIG_DFL` each signal whose disposition is a handler
//!    (ignored signals stay ignored, as `execve` would keep them), then
//!    unblocks every signal: QEMU starts with an empty mask;
//! 2. asks for `SIGKILL` when its parent thread ends
//!    (`PR_SET_PDEATHSIG`), and exits if that parent is already gone;
//! 3. takes `/dev/null` as stdin and the output descriptor as stdout and
//!    stderr;
//! 4. marks every descriptor from 3 up close-on-exec (`close_range`), so
//!    descriptors the host leaked without `O_CLOEXEC` do not reach QEMU,
//!    then clears close-on-exec on the descriptors it is meant to inherit;
//! 5. `execve`s each candidate path in turn.
//!
//! # Why sharing memory and stack is safe
//!
//! With `CLONE_VFORK` the kernel suspends the calling thread until the child
//! has exec'd (its old memory released) or exited, so nothing on this
//! thread can change, free or reuse the data the child reads while it
//! reads it, and the child's stack is not unmapped before the child is done
//! with it. The child runs on its own stack, so it never writes into the
//! stack frames of the suspended thread (unlike `vfork()`, which Rust
//! cannot express soundly). The host's other threads keep running and
//! share memory with the child; the child only reads data owned by the
//! suspended call, writes only `errno` (the suspended thread's) and its
//! report pipe, and takes no lock, so it cannot deadlock on a lock one of
//! them holds.
//!
//! # Why the child is async-signal-safe
//!
//! Between `clone` and `execve` the child only makes system calls, through
//! libc's thin wrappers (`execve`, `dup2`, `fcntl`, `getppid`, `prctl`,
//! `_exit`, all async-signal-safe, no locks) or `syscall(2)` directly. It
//! does not allocate, uses no thread-local state beyond `errno`, does no
//! arithmetic that could overflow and indexes nothing (iterators only), so
//! it cannot panic. `_exit` ends only the child: without `CLONE_THREAD` it
//! is a thread group of its own.
//!
//! # Signals
//!
//! No handler of the host may run in the child while it shares the host's
//! memory. The parent blocks every signal (with the raw `rt_sigprocmask`,
//! so libc's internal ones too) for the duration of the clone; the child
//! inherits that mask, and a new process starts with no pending signals.
//! The child then installs `SIG_DFL` for every signal that has a handler
//! before it unblocks anything. Without `CLONE_SIGHAND` the child's table
//! of dispositions is its own copy, so none of this changes any disposition
//! of the host; the parent's own mask is restored as it was.
//!
//! Signals the host ignores stay ignored in QEMU, as with `posix_spawn`.
//! (`std::process::Command` differs for one: it puts back `SIGPIPE`, which
//! the Rust runtime ignores, to its default.)
//!
//! # Dying with the host
//!
//! `PR_SET_PDEATHSIG` sends the child `SIGKILL` when the *thread* that
//! created it ends; the library spawns from one long-lived thread, so in
//! practice this means when the host process dies. If the host died after
//! the clone but before the `prctl`, the signal would never come; the child
//! then sees that `getppid()` is no longer the pid recorded before the clone
//! (it was reparented) and exits with status 127 before exec'ing.
//!
//! # How errors travel
//!
//! Through a close-on-exec pipe: the child writes the `errno` of a failed
//! step and exits; a successful `execve` closes its end. The parent reads
//! the pipe after `clone` returns: end-of-file means the child exec'd, four
//! bytes are the `errno` (the child is reaped and the error returned). A
//! pipe rather than a slot in the shared memory, because some tools turn
//! `CLONE_VM | CLONE_VFORK` into a plain fork (valgrind does, so that test
//! programs run under it): the child then has memory of its own and
//! `clone` returns before the exec, but the pipe still carries the result
//! and the read waits for it.
//!
//! # `clone`, not `clone3`
//!
//! The child needs a stack of its own, and starting a function on a new
//! stack takes a few instructions of assembly: libc's `clone` wrapper does
//! exactly that (glibc's and musl's `posix_spawn` start their child the
//! same way, through their internal equivalents). A raw `clone3` system
//! call would return into Rust code in the child either on the new stack
//! with no frame, or, given no stack, on the parent's stack like `vfork()`;
//! neither can be written soundly without assembly. `clone3` offers
//! nothing needed here: `clone` accepts `CLONE_PIDFD` since Linux 5.2 (the
//! descriptor arrives through the `parent_tid` argument), and some
//! container seccomp profiles make `clone3` fail with `ENOSYS`. A kernel
//! that does not know `CLONE_PIDFD` either rejects it (the error is
//! returned) or ignores it; then the child is killed and reaped and
//! `ENOSYS` returned, as there is no pidfd to give.
//!
//! glibc's `posix_spawn` takes the same path but cannot set the death
//! signal, check the parent, mark descriptors close-on-exec rather than
//! closing them, or (before glibc 2.39) return a pidfd.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::ptr;

use libc::{c_char, c_int, c_void};

use crate::socket::above_stdio;

/// What to start.
pub(crate) struct SpawnRequest<'a> {
    /// The whole argv; argv[0] is the program: a path if it contains '/',
    /// else looked up in PATH (of the environment given to the child, like
    /// execvp; default PATH "/usr/local/bin:/usr/bin:/bin" if unset).
    pub argv: &'a [String],
    /// Environment changes on top of this process's current environment
    /// (read at spawn time): (name, Some(value)) sets, (name, None) removes.
    pub env: &'a [(String, Option<String>)],
    /// Becomes the child's stdout and stderr.
    pub output: BorrowedFd<'a>,
    /// Descriptors the child inherits under the same numbers (they are
    /// close-on-exec in this process; made inheritable only in the child).
    pub inherit: &'a [BorrowedFd<'a>],
}

/// A started child.
pub(crate) struct Spawned {
    pub pid: i32,
    /// From CLONE_PIDFD: refers to exactly this child, no window in which
    /// the pid could be reaped and reused.
    pub pidfd: OwnedFd,
}

/// `PATH` when the child's environment has none.
const DEFAULT_PATH: &[u8] = b"/usr/local/bin:/usr/bin:/bin";

/// The child's stack. It holds a few small frames (the child routine and
/// libc's system call wrappers); glibc's `posix_spawn` uses 32 KiB. Pages
/// never touched cost nothing.
const STACK_SIZE: usize = 64 << 10;

/// The exit status of a child that could not exec (as shells use).
const EXEC_FAILED: c_int = 127;

/// The kernel's signal set (`_NSIG` = 64 on every architecture this
/// builds for). Only the values "all" and "none" are ever constructed; a
/// saved mask is written back byte for byte, so word order does not matter.
type KernelSigset = u64;
const KERNEL_SIGSET_SIZE: usize = std::mem::size_of::<KernelSigset>();
const LAST_SIGNAL: c_int = 64;

// The kernel's `struct sigaction` starts with the handler on these
// architectures; elsewhere (MIPS: flags first; SPARC, Alpha: other
// rt_sigaction arguments) `KernelSigaction` would be wrong.
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64",
    target_arch = "riscv32",
    target_arch = "powerpc64",
    target_arch = "powerpc",
    target_arch = "s390x",
    target_arch = "loongarch64",
)))]
compile_error!("src/spawn.rs: check the kernel's struct sigaction layout for this architecture");

/// Room for the kernel's `struct sigaction` (at most 32 bytes on the
/// architectures above), of which only the first field, the handler, is
/// read. The only value ever written is all zeros: `SIG_DFL`, no flags, an
/// empty mask, whatever the layout after the handler.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    _rest: [u64; 7],
}

impl KernelSigaction {
    const DEFAULT: KernelSigaction = KernelSigaction {
        handler: 0,
        _rest: [0; 7],
    };
}

/// Start the child; returns once it has exec'd, or with the reason it
/// could not (ENOENT, EACCES, ... from execve, as io::Error; the failed
/// child is reaped here).
pub(crate) fn spawn(req: &SpawnRequest<'_>) -> io::Result<Spawned> {
    let output = req.output.as_raw_fd();
    let inherit: Vec<RawFd> = req.inherit.iter().map(|fd| fd.as_raw_fd()).collect();
    if output < 3 || inherit.iter().any(|&fd| fd < 3) {
        return Err(invalid(
            "descriptors for the child must be above stdio (>= 3)",
        ));
    }
    let program = req
        .argv
        .first()
        .ok_or_else(|| invalid("empty command line"))?;
    let argv = CArray::new(
        req.argv
            .iter()
            .map(|arg| c_string(arg.as_bytes().to_vec()))
            .collect::<io::Result<_>>()?,
    );
    let environment = child_environment(req.env)?;
    let path = environment
        .iter()
        .find(|(name, _)| name == "PATH")
        .map_or(DEFAULT_PATH, |(_, value)| value.as_bytes());
    if program.is_empty() {
        // As execvp: an empty name names nothing (rather than each PATH
        // directory).
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    let candidates = CArray::new(candidates(program.as_bytes(), path)?);
    let envp = CArray::new(
        environment
            .into_iter()
            .map(|(name, value)| {
                let mut entry = name.into_vec();
                entry.push(b'=');
                entry.extend_from_slice(value.as_bytes());
                c_string(entry)
            })
            .collect::<io::Result<_>>()?,
    );
    let stdin = dev_null()?;
    let stack = ChildStack::new()?;
    let (report_read, report_write) = report_pipe()?;
    let context = ChildContext {
        candidates: candidates.entries(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        stdin: stdin.as_raw_fd(),
        output,
        inherit: &inherit,
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
        report: report_write.as_raw_fd(),
    };

    let mut pidfd: c_int = -1;
    let previous_mask = set_signal_mask(!0);
    // SAFETY: `child_main` runs on `stack` (its top, 16-byte aligned, the
    // stack grows down onto the guard page), reads `context` and what it
    // points to, which all outlive the call: with CLONE_VFORK, `clone`
    // returns only once the child has exec'd or exited. The kernel writes
    // the pidfd into `pidfd` (the `parent_tid` argument); `tls` and
    // `child_tid` are unused with these flags.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD,
            &context as *const ChildContext<'_> as *mut c_void,
            &mut pidfd as *mut c_int,
            ptr::null_mut::<c_void>(),
            ptr::null_mut::<libc::pid_t>(),
        )
    };
    let clone_error = io::Error::last_os_error();
    set_signal_mask(previous_mask);
    // The child no longer runs in this memory: the stack can go.
    drop(stack);
    // Ours must be closed for the read below to see the child's exec.
    drop(report_write);
    if pid < 0 {
        return Err(clone_error);
    }
    if pidfd < 0 {
        // A kernel older than 5.2 that ignored CLONE_PIDFD: the child is
        // running (and unreaped, so its pid cannot have been reused).
        // SAFETY: plain syscall on our own unreaped child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        reap(pid);
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    // SAFETY: the kernel just created this descriptor (close-on-exec) for
    // us and nothing else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    match read_report(&report_read) {
        None => Ok(Spawned { pid, pidfd }),
        Some(errno) => {
            reap(pid);
            Err(io::Error::from_raw_os_error(errno))
        }
    }
}

/// The pipe on which the child reports why it could not exec. Both ends
/// are close-on-exec: a successful exec closes the child's copy, so the
/// parent reads end-of-file. With `CLONE_VFORK` that has already happened
/// when `clone` returns; a tool that turns the clone into a plain fork
/// (valgrind does) makes the read wait for the exec instead, so the result
/// is the same.
fn report_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((above_stdio(read)?, above_stdio(write)?))
}

/// The child's report: `None` once it has exec'd (end-of-file), else the
/// errno it failed with.
fn read_report(report: &OwnedFd) -> Option<c_int> {
    let mut bytes = [0u8; 4];
    let mut got = 0;
    while got < bytes.len() {
        match rustix::io::read(report, &mut bytes[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => break,
        }
    }
    (got == bytes.len()).then(|| c_int::from_ne_bytes(bytes))
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

fn c_string(bytes: Vec<u8>) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| invalid("a NUL byte in a command line or environment string"))
}

/// This process's environment as of now, with `changes` applied in order.
fn child_environment(
    changes: &[(String, Option<String>)],
) -> io::Result<Vec<(OsString, OsString)>> {
    let mut environment: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    for (name, value) in changes {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(invalid(
                "an environment variable name that is empty or contains '=' or NUL",
            ));
        }
        environment.retain(|(existing, _)| existing != OsStr::new(name));
        if let Some(value) = value {
            environment.push((name.into(), value.into()));
        }
    }
    Ok(environment)
}

/// The paths to try, as `execvp`: the program itself if it contains a
/// slash, else the program in each `PATH` directory (an empty entry being
/// the current directory).
fn candidates(program: &[u8], path: &[u8]) -> io::Result<Vec<CString>> {
    if program.contains(&b'/') {
        return Ok(vec![c_string(program.to_vec())?]);
    }
    path.split(|&b| b == b':')
        .map(|dir| {
            let mut candidate = Vec::with_capacity(dir.len() + 1 + program.len());
            if !dir.is_empty() {
                candidate.extend_from_slice(dir);
                candidate.push(b'/');
            }
            candidate.extend_from_slice(program);
            c_string(candidate)
        })
        .collect()
}

/// `/dev/null` for the child's stdin, close-on-exec, above stdio (so that
/// `dup2` onto 0 always makes a new, inheritable descriptor).
fn dev_null() -> io::Result<OwnedFd> {
    // SAFETY: the path is a NUL-terminated literal.
    let fd = unsafe {
        libc::open(
            c"/dev/null".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and belongs to nobody else.
    above_stdio(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// C strings and the NULL-terminated array of pointers to them.
struct CArray {
    _strings: Vec<CString>,
    pointers: Vec<*const c_char>,
}

impl CArray {
    fn new(strings: Vec<CString>) -> CArray {
        // The pointers stay valid while `_strings` lives: moving the Vec
        // does not move the strings' heap buffers.
        let pointers = strings
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(ptr::null()))
            .collect();
        CArray {
            _strings: strings,
            pointers,
        }
    }

    fn as_ptr(&self) -> *const *const c_char {
        self.pointers.as_ptr()
    }

    /// The pointers without the terminating NULL.
    fn entries(&self) -> &[*const c_char] {
        &self.pointers[..self.pointers.len() - 1]
    }
}

/// The child's stack: `STACK_SIZE` bytes above a `PROT_NONE` guard page, so
/// an overflow faults instead of writing into whatever lies below.
struct ChildStack {
    base: *mut c_void,
    len: usize,
}

impl ChildStack {
    fn new() -> io::Result<ChildStack> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page = usize::try_from(page).unwrap_or(4096);
        let len = STACK_SIZE + page;
        // SAFETY: a new private anonymous mapping, touching no existing one.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = ChildStack { base, len };
        // SAFETY: the lowest page of the mapping just made.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The initial stack pointer: the end of the mapping (page-aligned).
    fn top(&self) -> *mut c_void {
        self.base.wrapping_byte_add(self.len)
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer used by anyone.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// Set this thread's signal mask, returning the previous one. The raw
/// system call: libc's wrappers refuse to block their internal signals.
fn set_signal_mask(mask: KernelSigset) -> KernelSigset {
    let mut previous: KernelSigset = 0;
    // SAFETY: both pointers are valid for KERNEL_SIGSET_SIZE bytes. Cannot
    // fail with valid arguments.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &mask as *const KernelSigset,
            &mut previous as *mut KernelSigset,
            KERNEL_SIGSET_SIZE,
        );
    }
    previous
}

/// Wait for our child `pid` (retrying `EINTR`) and return the raw status;
/// 0 if something else in the process reaped it first.
fn reap(pid: libc::pid_t) -> c_int {
    loop {
        let mut status: c_int = 0;
        // SAFETY: plain syscall; `status` is a valid out pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return status;
        }
        if rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        // ECHILD: reaped elsewhere (a host handler, SIGCHLD ignored).
        return 0;
    }
}

/// What the child reads, all prepared by the parent and alive until
/// `clone` returns there.
struct ChildContext<'a> {
    candidates: &'a [*const c_char],
    argv: *const *const c_char,
    envp: *const *const c_char,
    stdin: RawFd,
    output: RawFd,
    inherit: &'a [RawFd],
    parent: libc::pid_t,
    /// The write end of the report pipe.
    report: RawFd,
}

/// The child routine (see the module documentation for what it may do).
extern "C" fn child_main(context: *mut c_void) -> c_int {
    // SAFETY: `context` is the ChildContext the suspended parent passed to
    // clone; it outlives the child's use of it.
    unsafe { child_exec(&*(context as *const ChildContext<'_>)) }
}

/// # Safety
///
/// Only in the child of `clone(CLONE_VM | CLONE_VFORK)`, on its own stack.
unsafe fn child_exec(context: &ChildContext<'_>) -> ! {
    // 1. No handler of the host may run in this shared address space: put
    // back the default action for each signal that has a handler, while
    // everything is still blocked (inherited from the parent's mask). This
    // changes only the child's own copy of the dispositions. Ignored
    // signals stay ignored, as execve keeps them. Then unblock everything.
    for signal in 1..=LAST_SIGNAL {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        let mut current = KernelSigaction::DEFAULT;
        let rc = libc::syscall(
            libc::SYS_rt_sigaction,
            signal,
            ptr::null::<KernelSigaction>(),
            &mut current as *mut KernelSigaction,
            KERNEL_SIGSET_SIZE,
        );
        if rc != 0 || current.handler == libc::SIG_DFL || current.handler == libc::SIG_IGN {
            continue;
        }
        let default = KernelSigaction::DEFAULT;
        libc::syscall(
            libc::SYS_rt_sigaction,
            signal,
            &default as *const KernelSigaction,
            ptr::null_mut::<KernelSigaction>(),
            KERNEL_SIGSET_SIZE,
        );
    }
    let no_signals: KernelSigset = 0;
    libc::syscall(
        libc::SYS_rt_sigprocmask,
        libc::SIG_SETMASK,
        &no_signals as *const KernelSigset,
        ptr::null_mut::<KernelSigset>(),
        KERNEL_SIGSET_SIZE,
    );

    // 2. Die with the thread that spawned us; if the parent is already
    // gone (we were reparented before the prctl), do not start at all.
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
    if libc::getppid() != context.parent {
        libc::_exit(EXEC_FAILED);
    }

    // 3. stdio. All sources are >= 3, so no dup2 clobbers another source,
    // and each target is a new descriptor without close-on-exec.
    if libc::dup2(context.stdin, 0) < 0
        || libc::dup2(context.output, 1) < 0
        || libc::dup2(context.output, 2) < 0
    {
        child_fail(context, errno());
    }

    // 4. Everything from 3 up close-on-exec, whatever the host leaked
    // (kernels before 5.11 lack CLOSE_RANGE_CLOEXEC: skipped), then only
    // the descriptors meant for the child made inheritable again.
    libc::syscall(
        libc::SYS_close_range,
        3 as libc::c_uint,
        libc::c_uint::MAX,
        libc::CLOSE_RANGE_CLOEXEC,
    );
    for &fd in context.inherit {
        if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
            child_fail(context, errno());
        }
    }

    // 5. execve each candidate, as execvp: remember EACCES, go on after
    // "not there" errors, stop at any other.
    let mut error = libc::ENOENT;
    let mut denied = false;
    for &path in context.candidates {
        libc::execve(path, context.argv, context.envp);
        error = errno();
        match error {
            libc::EACCES => denied = true,
            libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
            _ => child_fail(context, error),
        }
    }
    child_fail(context, if denied { libc::EACCES } else { error })
}

/// Report `error` to the parent and exit.
///
/// # Safety
///
/// Only in the child, see `child_exec`.
unsafe fn child_fail(context: &ChildContext<'_>, error: c_int) -> ! {
    // An errno is positive, even if a wrapper ever reported nonsense.
    let error = if error > 0 { error } else { libc::EINVAL };
    let bytes = error.to_ne_bytes();
    // Four bytes into an empty pipe: written whole, or not at all if the
    // parent is gone (nobody to tell then).
    libc::write(context.report, bytes.as_ptr().cast(), bytes.len());
    libc::_exit(EXEC_FAILED)
}

/// This thread's errno (in the child: the suspended parent thread's, which
/// the parent does not read after a successful clone).
fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::fs::{self, File};
    use std::io::{Read, Seek, SeekFrom};
    use std::os::fd::AsFd;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::sync::{Mutex, MutexGuard};
    use std::time::{Duration, Instant};

    /// The tests count children, change signal dispositions and leak a
    /// descriptor on purpose: one at a time.
    fn serial() -> MutexGuard<'static, ()> {
        static LOCK: Mutex<()> = Mutex::new(());
        LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    fn output_file() -> File {
        tempfile::tempfile().unwrap()
    }

    fn contents(file: &File) -> String {
        let mut file = file;
        file.seek(SeekFrom::Start(0)).unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        text
    }

    fn start(
        argv: &[&str],
        env: &[(String, Option<String>)],
        output: &File,
        inherit: &[BorrowedFd<'_>],
    ) -> io::Result<Spawned> {
        let argv = strings(argv);
        let req = SpawnRequest {
            argv: &argv,
            env,
            output: output.as_fd(),
            inherit,
        };
        // Another test's concurrent fork may briefly hold a script we just
        // wrote open for writing.
        for _ in 0..100 {
            match spawn(&req) {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                result => return result,
            }
        }
        spawn(&req)
    }

    /// Start, wait, and return (raw wait status, output).
    fn run(
        argv: &[&str],
        env: &[(String, Option<String>)],
        inherit: &[BorrowedFd<'_>],
    ) -> (c_int, String) {
        let output = output_file();
        let child = start(argv, env, &output, inherit).unwrap();
        let status = wait(child.pid);
        (status, contents(&output))
    }

    fn wait(pid: libc::pid_t) -> c_int {
        loop {
            let mut status = 0;
            // SAFETY: plain syscall with a valid out pointer.
            let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
            if rc == pid {
                return status;
            }
            let error = io::Error::last_os_error();
            assert_eq!(
                error.raw_os_error(),
                Some(libc::EINTR),
                "waitpid({pid}): {error}"
            );
        }
    }

    fn exit_code(status: c_int) -> Option<c_int> {
        libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status))
    }

    /// Children of the calling thread (the one that clones), zombies
    /// included.
    fn my_children() -> String {
        fs::read_to_string("/proc/thread-self/children").unwrap()
    }

    fn readable_within(fd: BorrowedFd<'_>, timeout_ms: c_int) -> bool {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        assert!(rc >= 0, "poll: {}", io::Error::last_os_error());
        rc == 1 && pfd.revents & libc::POLLIN != 0
    }

    fn script(dir: &Path, name: &str, body: &str, mode: u32) -> String {
        let path = dir.join(name);
        fs::write(&path, body).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path.to_str().unwrap().to_string()
    }

    fn set(name: &str, value: &str) -> (String, Option<String>) {
        (name.to_string(), Some(value.to_string()))
    }

    #[test]
    fn exit_status_and_path_lookup() {
        let _serial = serial();
        let output = output_file();
        let child = start(&["sh", "-c", "exit 3"], &[], &output, &[]).unwrap();
        // The pidfd refers to the very child whose pid we got.
        let fdinfo =
            fs::read_to_string(format!("/proc/self/fdinfo/{}", child.pidfd.as_raw_fd())).unwrap();
        assert!(
            fdinfo.lines().any(|l| l == format!("Pid:\t{}", child.pid)),
            "{fdinfo}"
        );
        assert_eq!(exit_code(wait(child.pid)), Some(3));
    }

    #[test]
    fn missing_program_is_enoent_and_reaped() {
        let _serial = serial();
        let before = my_children();
        let output = output_file();
        for argv in [
            &["qm-spawn-no-such-program"][..],
            &["/nonexistent-qm-dir/prog", "x"],
            &[""],
        ] {
            let error = start(argv, &[], &output, &[])
                .err()
                .expect("spawn should fail");
            assert_eq!(
                error.raw_os_error(),
                Some(libc::ENOENT),
                "{argv:?}: {error}"
            );
        }
        assert_eq!(my_children(), before, "a failed child was left behind");
        assert_eq!(contents(&output), "");
    }

    #[test]
    fn not_executable_is_eacces_unless_found_later_in_path() {
        let _serial = serial();
        let before = my_children();
        let denied = tempfile::tempdir().unwrap();
        let allowed = tempfile::tempdir().unwrap();
        let plain = script(denied.path(), "qm-probe", "#!/bin/sh\necho denied\n", 0o644);
        script(
            allowed.path(),
            "qm-probe",
            "#!/bin/sh\necho allowed\n",
            0o755,
        );
        let output = output_file();

        let error = start(&[&plain], &[], &output, &[])
            .err()
            .expect("spawn should fail");
        assert_eq!(error.raw_os_error(), Some(libc::EACCES), "{error}");
        // EACCES is remembered even when a later directory has no such file.
        let denied_path = format!("{}:/nonexistent-qm-dir", denied.path().display());
        let only_denied = [set("PATH", &denied_path)];
        let error = start(&["qm-probe"], &only_denied, &output, &[])
            .err()
            .expect("spawn should fail");
        assert_eq!(error.raw_os_error(), Some(libc::EACCES), "{error}");
        assert_eq!(my_children(), before, "a failed child was left behind");

        // execvp goes on past a file it may not run.
        let both = format!("{}:{}", denied.path().display(), allowed.path().display());
        let (status, text) = run(&["qm-probe"], &[set("PATH", &both)], &[]);
        assert_eq!(exit_code(status), Some(0));
        assert_eq!(text, "allowed\n");
    }

    #[test]
    fn path_comes_from_the_child_environment_with_a_default() {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "qm-probe", "#!/bin/sh\necho probe ran\n", 0o755);
        let path = format!("/nonexistent-qm-dir::{}", dir.path().display());
        let (status, text) = run(&["qm-probe"], &[set("PATH", &path)], &[]);
        assert_eq!((exit_code(status), text.as_str()), (Some(0), "probe ran\n"));

        let (status, text) = run(&["sh", "-c", "echo default"], &[("PATH".into(), None)], &[]);
        assert_eq!((exit_code(status), text.as_str()), (Some(0), "default\n"));
    }

    #[test]
    fn stdin_is_dev_null_and_output_gets_both_streams() {
        let _serial = serial();
        let (status, text) = run(
            &[
                "sh",
                "-c",
                "readlink /proc/self/fd/0; echo to-stdout; echo to-stderr >&2; cat",
            ],
            &[],
            &[],
        );
        assert_eq!(exit_code(status), Some(0));
        assert_eq!(text, "/dev/null\nto-stdout\nto-stderr\n");
    }

    #[test]
    fn only_the_inherited_descriptors_reach_the_child() {
        let _serial = serial();
        let mut fds = [0; 2];
        // SAFETY: a valid array of two ints.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: just created, ours alone.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A descriptor leaked without O_CLOEXEC, as a careless host would.
        // SAFETY: NUL-terminated literal; the result is ours alone.
        let leaked = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
        assert!(leaked >= 3);
        // SAFETY: just opened, ours alone.
        let leaked = unsafe { OwnedFd::from_raw_fd(leaked) };

        let n = write_end.as_raw_fd();
        let m = leaked.as_raw_fd();
        let command = format!(
            "echo through-the-pipe > /proc/self/fd/{n}; \
             test -e /proc/self/fd/{n} && echo inherited; \
             test -e /proc/self/fd/{m} && echo leaked; \
             test -e /proc/self/fd/{r} && echo read-end; \
             echo done",
            r = read_end.as_raw_fd()
        );
        let output = output_file();
        let child = start(&["sh", "-c", &command], &[], &output, &[write_end.as_fd()]).unwrap();
        drop(leaked);
        // Still close-on-exec here: inheritable only in the child.
        // SAFETY: plain fcntl on an fd we own.
        let flags = unsafe { libc::fcntl(n, libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        drop(write_end);
        let mut received = String::new();
        File::from(read_end).read_to_string(&mut received).unwrap();
        assert_eq!(exit_code(wait(child.pid)), Some(0));
        assert_eq!(received, "through-the-pipe\n");
        assert_eq!(contents(&output), "inherited\ndone\n");
    }

    #[test]
    fn environment_changes_apply_on_top_of_ours() {
        let _serial = serial();
        let ours: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        let mut existing = ours
            .iter()
            .map(|(k, _)| k.to_str().unwrap_or(""))
            .filter(|k| !k.is_empty() && *k != "PATH");
        let removed = existing.next().expect("a variable to remove").to_string();
        let overridden = existing.next().expect("a variable to override").to_string();
        let changes = vec![
            set("QM_SPAWN_TEST_NEW", "a value with spaces = and more"),
            (removed.clone(), None),
            set(&overridden, "overridden"),
        ];
        let (status, text) = run(&["env", "-0"], &changes, &[]);
        assert_eq!(exit_code(status), Some(0));
        let mut got: Vec<(String, String)> = text
            .split_terminator('\0')
            .map(|entry| {
                let (k, v) = entry.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect();
        got.sort();
        let mut expected: Vec<(String, String)> = ours
            .iter()
            .filter(|(k, _)| *k != *removed && *k != *overridden)
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .chain([
                (
                    "QM_SPAWN_TEST_NEW".to_string(),
                    "a value with spaces = and more".to_string(),
                ),
                (overridden.clone(), "overridden".to_string()),
            ])
            .collect();
        expected.sort();
        assert_eq!(got, expected);
    }

    extern "C" fn test_handler(_: c_int) {}

    fn disposition(signal: c_int) -> libc::sighandler_t {
        // SAFETY: zeroed sigaction is a valid out value; query only.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            assert_eq!(libc::sigaction(signal, ptr::null(), &mut old), 0);
            old.sa_sigaction
        }
    }

    fn set_disposition(signal: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
        // SAFETY: a zeroed sigaction with a valid handler value.
        unsafe {
            let mut new: libc::sigaction = std::mem::zeroed();
            let mut old: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = handler;
            assert_eq!(libc::sigaction(signal, &new, &mut old), 0);
            old.sa_sigaction
        }
    }

    fn status_mask(status: &str, field: &str) -> u64 {
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .unwrap_or_else(|| panic!("no {field} in {status}"));
        u64::from_str_radix(line.trim(), 16).unwrap()
    }

    #[test]
    fn child_starts_unmasked_keeps_ignored_drops_handlers() {
        let _serial = serial();
        let handled = libc::SIGUSR1;
        let ignored = libc::SIGUSR2;
        let old_handled = set_disposition(
            handled,
            test_handler as extern "C" fn(c_int) as libc::sighandler_t,
        );
        let old_ignored = set_disposition(ignored, libc::SIG_IGN);

        // Spawn from a thread that blocks everything, as library threads do.
        let (text, mask_before, mask_after) = std::thread::spawn(|| {
            // SAFETY: sigset_t is plain data filled by sigfillset.
            let mask_before = unsafe {
                let mut all: libc::sigset_t = std::mem::zeroed();
                libc::sigfillset(&mut all);
                libc::pthread_sigmask(libc::SIG_SETMASK, &all, ptr::null_mut());
                set_signal_mask(!0);
                set_signal_mask(!0)
            };
            let (status, text) = run(&["cat", "/proc/self/status"], &[], &[]);
            assert_eq!(exit_code(status), Some(0));
            let mask_after = set_signal_mask(0);
            (text, mask_before, mask_after)
        })
        .join()
        .unwrap();

        let now_handled = set_disposition(handled, old_handled);
        let now_ignored = set_disposition(ignored, old_ignored);
        // Our dispositions and mask are as they were.
        assert_eq!(
            now_handled,
            test_handler as extern "C" fn(c_int) as libc::sighandler_t
        );
        assert_eq!(now_ignored, libc::SIG_IGN);
        assert_eq!(mask_before, mask_after);

        let bit = |signal: c_int| 1u64 << (signal - 1);
        assert_eq!(status_mask(&text, "SigBlk:"), 0, "{text}");
        assert_ne!(status_mask(&text, "SigIgn:") & bit(ignored), 0, "{text}");
        assert_eq!(status_mask(&text, "SigCgt:"), 0, "{text}");
        assert_eq!(status_mask(&text, "SigIgn:") & bit(handled), 0, "{text}");
        assert_eq!(disposition(handled), old_handled);
    }

    #[test]
    fn signal_mask_of_the_caller_is_restored() {
        let _serial = serial();
        let before = set_signal_mask(0);
        set_signal_mask(before);
        let (status, _) = run(&["true"], &[], &[]);
        assert_eq!(exit_code(status), Some(0));
        let after = set_signal_mask(before);
        assert_eq!(before, after);
    }

    #[test]
    fn child_dies_with_the_spawning_thread() {
        let _serial = serial();
        let output = output_file();
        let out = output.try_clone().unwrap();
        let child = std::thread::spawn(move || start(&["sleep", "30"], &[], &out, &[]).unwrap())
            .join()
            .unwrap();
        let ended = Instant::now();
        assert!(
            readable_within(child.pidfd.as_fd(), 1000),
            "still alive a second after its parent thread ended"
        );
        assert!(ended.elapsed() < Duration::from_secs(1));
        let status = wait(child.pid);
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
            "status {status:#x}"
        );
    }

    #[test]
    fn pidfd_becomes_readable_when_the_child_exits() {
        let _serial = serial();
        let output = output_file();
        let child = start(&["sleep", "0.3"], &[], &output, &[]).unwrap();
        assert!(
            !readable_within(child.pidfd.as_fd(), 0),
            "readable while the child runs"
        );
        assert!(
            readable_within(child.pidfd.as_fd(), 5000),
            "not readable after the child exited"
        );
        assert_eq!(exit_code(wait(child.pid)), Some(0));
    }

    #[test]
    fn refuses_stdio_descriptors_empty_argv_and_nul_bytes() {
        let _serial = serial();
        let before = my_children();
        let output = output_file();
        let argv = strings(&["true"]);
        let invalid_input = |req: &SpawnRequest<'_>| {
            let error = spawn(req).err().expect("spawn should refuse");
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        };
        for fd in 0..3 {
            // SAFETY: stdio descriptors of the test process, not closed
            // while borrowed.
            let stdio = unsafe { BorrowedFd::borrow_raw(fd) };
            invalid_input(&SpawnRequest {
                argv: &argv,
                env: &[],
                output: stdio,
                inherit: &[],
            });
            invalid_input(&SpawnRequest {
                argv: &argv,
                env: &[],
                output: output.as_fd(),
                inherit: &[output.as_fd(), stdio],
            });
        }
        invalid_input(&SpawnRequest {
            argv: &[],
            env: &[],
            output: output.as_fd(),
            inherit: &[],
        });
        for bad_argv in [strings(&["tr\0ue"]), strings(&["true", "a\0b"])] {
            invalid_input(&SpawnRequest {
                argv: &bad_argv,
                env: &[],
                output: output.as_fd(),
                inherit: &[],
            });
        }
        for bad_env in [
            set("A\0B", "x"),
            set("A", "x\0y"),
            set("A=B", "x"),
            set("", "x"),
            ("A\0".into(), None),
        ] {
            invalid_input(&SpawnRequest {
                argv: &argv,
                env: &[bad_env],
                output: output.as_fd(),
                inherit: &[],
            });
        }
        assert_eq!(my_children(), before);
    }
}
