package qemumachine

/*
#include <stdlib.h>
#include <qemu_machine.h>
*/
import "C"

import (
	"context"
	"encoding/json"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Machine is a QEMU virtual machine: its configuration and, once launched
// (or attached), the QEMU process with its QMP connection. Create one with
// New, AttachUnix or AttachTCP, and free it with Close. Its methods may be
// called from several goroutines at once; see the package documentation
// for the rules around Close.
type Machine struct {
	mu       sync.Mutex
	c        *C.qm_machine // nil once closed
	inflight int           // calls between acquire and release
	closing  bool          // Close has begun: no new calls
	idle     chan struct{} // closed by the last release while closing
	closed   chan struct{} // closed when Close has freed c

	// done is closed when Close begins: the goroutines of Listen stop
	// sending, and Close waits for them (listeners). The goroutines hold
	// these two, not the Machine, which the finalizer may then free.
	done      chan struct{}
	listeners *sync.WaitGroup

	// abandoned holds the tickets of commands whose caller gave up (a
	// cancelled context, a deadline); their late replies are received
	// and dropped by the next command (see qmp.go).
	abandonedMu sync.Mutex
	abandoned   []C.uint64_t
}

func newMachine(c *C.qm_machine) *Machine {
	m := &Machine{c: c, done: make(chan struct{}), listeners: new(sync.WaitGroup)}
	runtime.SetFinalizer(m, (*Machine).Close)
	return m
}

// acquire registers a call on the C machine, which stays valid until the
// matching release.
func (m *Machine) acquire() (*C.qm_machine, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c == nil || m.closing {
		return nil, ErrClosed
	}
	m.inflight++
	return m.c, nil
}

func (m *Machine) release() {
	m.mu.Lock()
	m.inflight--
	if m.inflight == 0 && m.idle != nil {
		close(m.idle)
		m.idle = nil
	}
	m.mu.Unlock()
}

// isClosing reports whether Close has begun (for sliced waits).
func (m *Machine) isClosing() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closing
}

// do runs one C call that takes only the machine and the error pointer.
func (m *Machine) do(f func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status) error {
	c, err := m.acquire()
	if err != nil {
		return err
	}
	defer m.release()
	var e *C.qm_error
	return takeError(f(c, &e), e)
}

// doString runs one C call with a string argument.
func (m *Machine) doString(what, s string, f func(c *C.qm_machine, s *C.char, e **C.qm_error) C.enum_qm_status) error {
	cs, err := cString(what, s)
	if err != nil {
		return err
	}
	defer freeC(cs)
	return m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status { return f(c, cs, e) })
}

// New creates a machine that will run binary (a path, or a name looked up
// in PATH; not checked until Launch). Defaults, as in the C library:
// arguments "-display none -vga none" plus the QMP monitor, a temporary
// directory under $TMPDIR (or /tmp) holding the log, a 30 s launch
// timeout, QMP enabled.
func New(binary string) (*Machine, error) {
	cb, err := cString("binary", binary)
	if err != nil {
		return nil, err
	}
	defer freeC(cb)
	var c *C.qm_machine
	var e *C.qm_error
	if err := takeError(C.qm_machine_new(cb, &c, &e), e); err != nil {
		return nil, err
	}
	return newMachine(c), nil
}

// AttachUnix connects to a QEMU started elsewhere whose QMP monitor listens
// on the Unix socket path (e.g. "-qmp unix:PATH,server=on,wait=off") and
// negotiates QMP within ctx's deadline. The machine is used like a
// launched one, except that Kill returns ErrState and Pid is -1; Shutdown
// sends quit and waits for QEMU to close the connection; Close
// disconnects without stopping QEMU.
func AttachUnix(ctx context.Context, path string) (*Machine, error) {
	cp, err := cString("path", path)
	if err != nil {
		return nil, err
	}
	defer freeC(cp)
	ms, err := timeoutOf(ctx)
	if err != nil {
		return nil, err
	}
	var c *C.qm_machine
	var e *C.qm_error
	if err := takeError(C.qm_attach_unix(cp, ms, &c, &e), e); err != nil {
		return nil, err
	}
	return newMachine(c), nil
}

// AttachTCP connects to a QEMU whose QMP monitor listens on TCP at
// host:port, possibly on another host, as AttachUnix does. Descriptors
// cannot be passed over TCP (SendFD returns ErrState).
func AttachTCP(ctx context.Context, host string, port int) (*Machine, error) {
	if port < 0 || port > 65535 {
		return nil, invalid(nil, "`port` must be within 0..65535, got %d", port)
	}
	ch, err := cString("host", host)
	if err != nil {
		return nil, err
	}
	defer freeC(ch)
	ms, err := timeoutOf(ctx)
	if err != nil {
		return nil, err
	}
	var c *C.qm_machine
	var e *C.qm_error
	if err := takeError(C.qm_attach_tcp(ch, C.uint16_t(port), ms, &c, &e), e); err != nil {
		return nil, err
	}
	return newMachine(c), nil
}

// Close frees the machine (qm_machine_free): a QEMU still running is
// killed (SIGKILL) and reaped and its temporary directory removed; an
// attached machine is disconnected without stopping its QEMU. Calls in
// progress in other goroutines are woken and Close waits for them to
// return; later calls return ErrClosed (see the package documentation).
// Close is idempotent and always returns nil.
func (m *Machine) Close() error {
	m.mu.Lock()
	if m.c == nil {
		m.mu.Unlock()
		return nil
	}
	if m.closing { // another Close is in progress
		closed := m.closed
		m.mu.Unlock()
		<-closed
		return nil
	}
	m.closing = true
	m.closed = make(chan struct{})
	close(m.done)
	c := m.c
	idle := make(chan struct{})
	if m.inflight == 0 {
		close(idle)
	} else {
		m.idle = idle
	}
	m.mu.Unlock()

	for waiting := true; waiting; {
		select {
		case <-idle:
			waiting = false
		default:
			// Kill QEMU, as qm_machine_free would, to wake the calls still
			// in progress (an attached machine answers QM_ERR_STATE: its
			// sliced waits notice the close instead). Repeated, since a
			// call in progress may be a Launch.
			C.qm_kill(c, nil)
			select {
			case <-idle:
				waiting = false
			case <-time.After(waitSlice):
			}
		}
	}
	C.qm_machine_free(c)
	// The listeners' goroutines stop at once when they send (done is
	// closed) and within a slice when they wait: their waits end as the
	// run ends with the free.
	m.listeners.Wait()

	m.mu.Lock()
	m.c = nil
	close(m.closed)
	m.mu.Unlock()
	runtime.SetFinalizer(m, nil)
	return nil
}

// AddArgs appends arguments to QEMU's command line (after the library's
// own), each as one argv element: no shell, no quoting. An argument with a
// NUL byte is rejected before any is added; if the library rejects one
// (e.g. invalid UTF-8), the arguments before it stay added.
func (m *Machine) AddArgs(args ...string) error {
	return m.addEach(args, func(c *C.qm_machine, s *C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_add_arg(c, s, e)
	})
}

// AddWrapperArgs appends words to the wrapper command QEMU runs under
// (e.g. "strace", "-f", "-o", "trace.txt"), as AddArgs does.
func (m *Machine) AddWrapperArgs(args ...string) error {
	return m.addEach(args, func(c *C.qm_machine, s *C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_add_wrapper_arg(c, s, e)
	})
}

func (m *Machine) addEach(args []string, f func(c *C.qm_machine, s *C.char, e **C.qm_error) C.enum_qm_status) error {
	for i, a := range args {
		if j := strings.IndexByte(a, 0); j >= 0 {
			return invalid(nil, "argument %d (`arg`) contains a NUL byte at offset %d", i, j)
		}
	}
	for _, a := range args {
		if err := m.doString("arg", a, f); err != nil {
			return err
		}
	}
	return nil
}

// SetName names the machine, for its log file (NAME.log) and sockets.
func (m *Machine) SetName(name string) error {
	return m.doString("name", name, func(c *C.qm_machine, s *C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_set_name(c, s, e)
	})
}

// SetEnv sets environment variable name to value for QEMU only, replacing
// an earlier setting of name. QEMU otherwise inherits this process's
// environment as it is at Launch (e.g. QEMU_MODULE_DIR for modules built
// elsewhere).
func (m *Machine) SetEnv(name, value string) error {
	cv, err := cString("value", value)
	if err != nil {
		return err
	}
	defer freeC(cv)
	return m.doString("name", name, func(c *C.qm_machine, s *C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_set_env(c, s, cv, e)
	})
}

// UnsetEnv removes environment variable name from QEMU's environment
// (replacing an earlier SetEnv of name).
func (m *Machine) UnsetEnv(name string) error {
	return m.doString("name", name, func(c *C.qm_machine, s *C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_set_env(c, s, nil, e)
	})
}

// SetBaseTempDir sets the directory in which each launch creates its
// private temporary directory (default $TMPDIR, else /tmp).
func (m *Machine) SetBaseTempDir(dir string) error {
	return m.doString("dir", dir, func(c *C.qm_machine, s *C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_set_base_temp_dir(c, s, e)
	})
}

// SetLogDir sets the directory for QEMU's log file, which is then kept
// after shutdown.
func (m *Machine) SetLogDir(dir string) error {
	return m.doString("dir", dir, func(c *C.qm_machine, s *C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_set_log_dir(c, s, e)
	})
}

// SetMachineType adds "-machine TYPE" (e.g. "none", "pc", "q35").
func (m *Machine) SetMachineType(machineType string) error {
	return m.doString("machine_type", machineType, func(c *C.qm_machine, s *C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_set_machine_type(c, s, e)
	})
}

// SetQMPEnabled chooses whether QEMU gets a QMP monitor (default true).
// Without one, QMP and event calls return ErrState, Launch returns as soon
// as QEMU is started, and Shutdown sends SIGTERM.
func (m *Machine) SetQMPEnabled(enabled bool) error {
	return m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_set_qmp_enabled(c, C.bool(enabled), e)
	})
}

// SetMonitorUnix puts the QMP monitor on a Unix socket at path (which must
// not exist at launch) instead of a socketpair.
func (m *Machine) SetMonitorUnix(path string) error {
	return m.doString("path", path, func(c *C.qm_machine, s *C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_set_monitor_unix(c, s, e)
	})
}

// SetMonitorTCP puts the QMP monitor on TCP: the library listens on host
// and port (0: any free port, see MonitorPort) and QEMU connects to it.
func (m *Machine) SetMonitorTCP(host string, port int) error {
	if port < 0 || port > 65535 {
		return invalid(nil, "`port` must be within 0..65535, got %d", port)
	}
	return m.doString("host", host, func(c *C.qm_machine, s *C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_set_monitor_tcp(c, s, C.uint16_t(port), e)
	})
}

// SetLaunchTimeout sets how long Launch waits for QEMU to start and
// negotiate QMP (default 30 s). A negative duration waits forever;
// durations are rounded up to whole milliseconds and capped at
// QM_TIMEOUT_MAX_MS.
func (m *Machine) SetLaunchTimeout(d time.Duration) error {
	ms := timeoutArg(d)
	return m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_set_launch_timeout(c, ms, e)
	})
}

// AddMonitorNull adds "-monitor null": no default human monitor.
func (m *Machine) AddMonitorNull() error {
	return m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_add_monitor_null(c, e)
	})
}

// AddFD passes descriptor fd to QEMU at launch ("-add-fd
// fd=N,set=FDSET,opaque=OPAQUE[,OPTS]"; opts "" for none), usable in QEMU
// as /dev/fdset/FDSET. The library keeps its own duplicate, so fd may be
// closed right after the call.
func (m *Machine) AddFD(fd, fdset int, opaque, opts string) error {
	if fd < -1<<31 || fd > 1<<31-1 || fdset < -1<<31 || fdset > 1<<31-1 {
		return invalid(nil, "`fd` (%d) or `fdset` (%d) is out of range", fd, fdset)
	}
	co, err := cString("opaque", opaque)
	if err != nil {
		return err
	}
	defer freeC(co)
	copts, err := cStringOpt("opts", opts)
	if err != nil {
		return err
	}
	defer freeC(copts)
	return m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_add_fd(c, C.int(fd), C.int(fdset), co, copts, e)
	})
}

// SetQMPTrace appends every QMP line sent and received to the file at
// path; it applies to later launches and at once to an open connection.
func (m *Machine) SetQMPTrace(path string) error {
	return m.doString("path", path, func(c *C.qm_machine, s *C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_set_qmp_trace(c, s, e)
	})
}

// Launch starts QEMU and completes QMP negotiation, within the launch
// timeout (SetLaunchTimeout). A launch clears the previous run's events,
// console output and exit status. On failure (ErrLaunch: the message
// holds the exit status, the command line and QEMU's output) nothing is
// left behind.
func (m *Machine) Launch() error {
	return m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_launch(c, e)
	})
}

// Shutdown shuts QEMU down gracefully: it sends quit (without QMP,
// SIGTERM) and waits up to timeout for QEMU to exit (a negative timeout
// waits forever), else kills it; a timeout of 0 leaves no time even for
// the reply to quit, so QEMU is killed. It returns nil only if QEMU exited
// with status 0 without being killed, ErrAbnormalShutdown otherwise. The
// exit status, log and queued events stay readable. Not launched: no-op.
func (m *Machine) Shutdown(timeout time.Duration) error {
	ms := timeoutArg(timeout)
	return m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_shutdown(c, ms, e)
	})
}

// Kill kills QEMU with SIGKILL, reaps it and cleans up; it also interrupts
// a Launch, Shutdown or Wait in another goroutine. An attached machine
// returns ErrState. Not launched: no-op.
func (m *Machine) Kill() error {
	return m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_kill(c, e)
	})
}

// Wait waits until QEMU exits on its own (e.g. the guest powered off) or
// ctx is done, then cleans up as Shutdown does. It succeeds whatever the
// exit status (see ExitCode); ErrTimeout means QEMU still runs. Not
// launched: no-op.
func (m *Machine) Wait(ctx context.Context) error {
	return m.sliced(ctx, func(c *C.qm_machine, ms C.int64_t, e **C.qm_error) C.enum_qm_status {
		return C.qm_wait(c, ms, e)
	})
}

// IsRunning reports whether QEMU is running (false once closed).
func (m *Machine) IsRunning() bool {
	c, err := m.acquire()
	if err != nil {
		return false
	}
	defer m.release()
	return bool(C.qm_is_running(c))
}

// Pid returns QEMU's process id while it runs, else -1 (also for an
// attached or closed machine).
func (m *Machine) Pid() int {
	c, err := m.acquire()
	if err != nil {
		return -1
	}
	defer m.release()
	return int(C.qm_pid(c))
}

// ExitCode returns how QEMU ended: its exit status (>= 0) or minus the
// signal that killed it (e.g. -9). ErrState while QEMU runs or if it never
// started.
func (m *Machine) ExitCode() (int, error) {
	var code C.int
	err := m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_exit_code(c, &code, e)
	})
	if err != nil {
		return 0, err
	}
	return int(code), nil
}

// stringResult runs a C call that returns a library string.
func (m *Machine) stringResult(f func(c *C.qm_machine, out **C.char, e **C.qm_error) C.enum_qm_status) (string, error) {
	var out *C.char
	err := m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return f(c, &out, e)
	})
	if err != nil {
		return "", err
	}
	return takeString(out), nil
}

// Log returns QEMU's stdout and stderr, so far or of the last run.
func (m *Machine) Log() (string, error) {
	return m.stringResult(func(c *C.qm_machine, out **C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_log(c, out, e)
	})
}

// TempDir returns the per-run temporary directory (removed at shutdown).
func (m *Machine) TempDir() (string, error) {
	return m.stringResult(func(c *C.qm_machine, out **C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_temp_dir(c, out, e)
	})
}

// CommandLine returns the full command line of the current or last run
// (wrapper, binary, the library's arguments, yours); for an attached
// machine, the address it is attached to.
func (m *Machine) CommandLine() ([]string, error) {
	text, err := m.stringResult(func(c *C.qm_machine, out **C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_command_line(c, out, e)
	})
	if err != nil {
		return nil, err
	}
	var argv []string
	if err := json.Unmarshal([]byte(text), &argv); err != nil {
		return nil, &Error{Status: StatusProtocol, Message: "qm_command_line returned invalid JSON: " + err.Error(), cause: err}
	}
	return argv, nil
}

// SaveArtifacts writes what a failed test's reader needs into directory
// dir (created with mode 0700 if missing): qemu.log, console.log (with a
// console), qmp-trace.log (when traced to a regular file), events.jsonl
// (every event of the run so far), command-line.txt and status.txt. It is
// safe at any moment (running, after a shutdown, after a failed launch),
// never waits for QEMU, and overwrites the files of an earlier call.
// ErrState if the machine was never launched.
func (m *Machine) SaveArtifacts(dir string) error {
	return m.doString("dir", dir, func(c *C.qm_machine, s *C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_save_artifacts(c, s, e)
	})
}

// MonitorPort returns the TCP port of a TCP monitor (SetMonitorTCP) once
// launched.
func (m *Machine) MonitorPort() (int, error) {
	var port C.uint16_t
	err := m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_monitor_port(c, &port, e)
	})
	if err != nil {
		return 0, err
	}
	return int(port), nil
}
