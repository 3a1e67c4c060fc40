// Package qemumachine drives QEMU virtual machines from Go test programs.
// It is a cgo binding of libqemu_machine, the qemu-machine C library:
// launch QEMU with a QMP monitor, run QMP commands, wait for QMP events,
// talk to the guest on its serial console, read QEMU's log, and shut QEMU
// down gracefully or hard, always cleaning up.
//
//	m, err := qemumachine.New("qemu-system-x86_64")
//	if err != nil { ... }
//	defer m.Close()
//	m.SetMachineType("none")
//	m.AddArgs("-accel", "tcg", "-nodefaults")
//	if err := m.Launch(); err != nil { ... }
//	status, err := m.Command(ctx, "query-status", nil) // {"running": true, ...}
//	err = m.Shutdown(10 * time.Second)
//
// # Events on a channel
//
// Listen delivers events on a Go channel, each as an Event (Name, Data,
// Timestamp and the whole JSON), until ctx ends, the machine is closed or
// the run ends (examples/listen):
//
//	events, err := m.Listen(ctx, qemumachine.EventFilter{Name: "STOP"})
//	for ev := range events { fmt.Println(ev.Name, string(ev.Data)) }
//
// # Guest agent and qtest
//
// SetAgent adds a guest agent channel (virtio-serial, or e.g. an extra
// "isa-serial" port); Agent gives WaitReady, Command, Exec (a program's
// exit code and output as bytes), ReadFile and WriteFile
// (examples/agent):
//
//	m.SetAgent("")
//	r, err := m.Agent().Exec(ctx, []string{"uname", "-r"}, nil) // r.ExitCode, r.Stdout
//
// SetQtest runs QEMU under qtest; Qtest gives libqtest's calls: Readb...
// Readq and Writeb... Writeq for guest memory, Inb/Inw/Inl and
// Outb/Outw/Outl for I/O ports, MemRead, MemWrite, MemSet, ClockStep,
// ClockStepNext, ClockSet, IRQInterceptIn/Out, GetIRQ, SetIRQIn and Raw
// (examples/qtest). "-accel qtest" needs QEMU's qtest accelerator module,
// which Debian deletes: scripts/build-qtest-accel.sh builds it and prints
// its directory, for SetEnv("QEMU_MODULE_DIR", dir).
//
// # Tests
//
// Package qemumachinetest (examples/qemumachinetest) makes machines for
// Go tests: qemumachinetest.New(t, binary, options...) launches one that
// is shut down and freed when the test ends, and whose artifacts are
// saved and logged when the test fails (SaveArtifacts: QEMU's log, the
// console, the events, the command line, how QEMU ended); SkipUnless and
// its variants skip tests that need what a binary lacks (Probe).
//
// Also: SetEnv and UnsetEnv (QEMU's environment), Greeting (QMP's),
// ConsoleReadBytes (byte-exact console output), Migrate (live migration
// between two machines in one call).
//
// # Building
//
// The package compiles against the C header of the repository
// (include/qemu_machine.h, found through the cgo directive
// "#cgo CFLAGS: -I${SRCDIR}/../../../include") and links with
// -lqemu_machine. Where the library lives comes from the environment.
// For the library built in the repository ("make build", which creates
// target/release/libqemu_machine.so and its SONAME link
// libqemu_machine.so.0):
//
//	CGO_LDFLAGS="-L/path/to/qemu-machine/target/release -Wl,-rpath,/path/to/qemu-machine/target/release" go test ./...
//
// The rpath lets the program find libqemu_machine.so.0 at run time
// (LD_LIBRARY_PATH works too). For an installed library ("make install"
// writes a pkg-config file, qemu-machine.pc):
//
//	CGO_CFLAGS="$(pkg-config --cflags qemu-machine)" CGO_LDFLAGS="$(pkg-config --libs qemu-machine)" go build
//
// # Errors
//
// Every failure of the C library is returned as an *Error, which carries
// the library's status (a Status), its message and, for QMP command errors,
// the QMP error class and description:
//
//	var qerr *qemumachine.Error
//	if errors.As(err, &qerr) && qerr.QMPClass == "CommandNotFound" { ... }
//
// Each status has a sentinel (ErrTimeout, ErrCommand, ErrLaunch, ...) for
// errors.Is. Arguments the binding rejects before calling C (a string with
// a NUL byte, command arguments that do not marshal to a JSON object, a
// port out of range) are *Error values with StatusInvalidArgument, like the
// ones the library itself returns. ErrClosed (a StatusState error) is
// returned by every call on a closed Machine.
//
// # Timeouts and contexts
//
// Calls that may block take a context.Context. Its deadline becomes the C
// call's timeout: no deadline waits forever; a positive remaining time is
// rounded up to whole milliseconds, so a short deadline never turns into a
// poll. If the context is already done before the call, the call returns
// without calling C: ctx.Err() when the context was cancelled, and when its
// deadline has passed an *Error with StatusTimeout that wraps
// context.DeadlineExceeded. Every StatusTimeout error matches both
// ErrTimeout and context.DeadlineExceeded under errors.Is, whether the
// deadline passed before or during the call.
//
// Cancelling a context does interrupt the waits: EventWait, EventsWait,
// EventGet, ConsoleWait, Wait, Agent.WaitReady and the goroutine of
// Listen call C in slices of at most 100 ms and check the context between
// slices. This relies only on documented guarantees of the C API (a wait
// that times out consumes no event, leaves the console read cursor where
// it was and leaves QEMU running), so a sliced wait behaves exactly like a
// single one, except that it returns ctx.Err() within about 100 ms of the
// cancellation.
//
// Command and QMP use the C API's split calls: qm_command_send, then
// qm_command_receive in slices (a receive that times out keeps the
// ticket). A cancelled context ends the wait within 100 ms; the command
// itself is not cancelled (QEMU may still run it), and its late reply is
// dropped: the ticket is abandoned, and the next Command or QMP call on
// the machine receives the replies of abandoned tickets without waiting
// and discards them (a relaunch forgets them). No goroutine is left
// waiting for a reply.
//
// The other blocking calls (ConsoleExec, ConsoleWrite, Launch, Shutdown,
// SendFD, AttachUnix, AttachTCP, Migrate, and the agent's Command, Exec,
// ReadFile and WriteFile) are single C calls: cancelling their context
// cannot interrupt them once they are blocked in C; only the deadline
// (or, for Launch and Shutdown, their own timeout) bounds them. Their
// timeouts have effects a slice could not undo (an agent command or a
// program left running, a migration under way). qtest calls are bounded
// by the qtest timeout (SetQtestTimeout) and take no context.
//
// # Concurrency and Close
//
// All methods of one Machine may be called from several goroutines at once
// (one goroutine in EventWait while others run Command), as the C library
// allows. The library keeps no thread-local state, so no
// runtime.LockOSThread is needed.
//
// The C library requires qm_machine_free, which Close calls, to be the last
// call on a machine: calls already blocked in it are woken, but starting a
// call once the free has begun is undefined behaviour. So the simple rule
// is the C one: call Close once the other goroutines using the machine are
// done. The binding also enforces the rule itself, so that Close is
// memory-safe at any time: once Close has begun, new calls return
// ErrClosed; calls already in progress are woken and Close waits for them
// to return before it frees the C machine. For a QEMU this machine
// launched, Close kills it first (as qm_machine_free would), which ends
// every blocked call (even a graceful Shutdown in progress elsewhere);
// sliced waits also notice the close between slices, which is how they
// end on an attached machine, whose QEMU is not ours to kill (Command and
// QMP too, since they wait in slices). The calls Close cannot wake are
// single C calls on an attached machine whose QEMU does not answer:
// SendFD (Close then waits until it gives up, 30 s) and Migrate (until
// its deadline). Listen channels are
// closed by the time Close returns. Close is idempotent. A finalizer frees a Machine that
// was never closed, but Close (typically deferred) is the normal path,
// since only Close stops QEMU at a predictable time.
package qemumachine
