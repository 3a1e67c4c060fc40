package qemumachine_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"qemu-machine/bindings/go/qemumachine"
)

// Arguments the binding rejects itself (before calling C) and arguments it
// passes on for the library to reject: both are ErrInvalidArgument.
func TestBadInput(t *testing.T) {
	m := noneMachine(t)
	invalid := func(what string, err error) *qemumachine.Error {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: no error", what)
		}
		return qmError(t, err, qemumachine.StatusInvalidArgument, qemumachine.ErrInvalidArgument)
	}

	// Strings with a NUL byte cannot reach C.
	_, err := qemumachine.New("qemu\x00x")
	contains(t, "New with a NUL byte", invalid("New", err).Message, "NUL byte at offset 4")
	invalid("AddArgs", m.AddArgs("-name", "a\x00b")) // all or nothing: "-name" is not added
	invalid("SetName", m.SetName("\x00"))
	invalid("SetConsole", m.SetConsole("isa-serial\x00", 0))
	invalid("AddFD", m.AddFD(0, 1, "a\x00", ""))
	// Invalid UTF-8 goes to C, which rejects it and names the parameter.
	contains(t, "the message", invalid("AddWrapperArgs", m.AddWrapperArgs("a\xffb")).Message, "not valid UTF-8")
	contains(t, "the message", invalid("SetMachineType", m.SetMachineType("\xff")).Message, "machine_type")

	// Values out of range.
	invalid("SetMonitorTCP", m.SetMonitorTCP("127.0.0.1", 65536))
	invalid("SetMonitorTCP", m.SetMonitorTCP("127.0.0.1", -1))
	invalid("SetMonitorTCP", m.SetMonitorTCP("", 0)) // from C: empty host
	invalid("SetConsole", m.SetConsole("", -1))
	invalid("SetConsole", m.SetConsole("", 65)) // from C: at most 64
	invalid("AddFD", m.AddFD(-1, 1, "o", ""))   // from C: not an open descriptor
	invalid("AddFD", m.AddFD(0, -1, "o", ""))   // from C: negative fdset
	invalid("AddFD", m.AddFD(1<<40, 1, "o", ""))

	if err := m.Launch(); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	ctx := timeout(t, 10*time.Second)

	// Command arguments that do not marshal to a JSON object are rejected
	// before C is called.
	for _, args := range []any{
		[]int{1, 2}, "query", 42, true, json.RawMessage(`[1]`), json.RawMessage(`"x"`),
	} {
		_, err := m.Command(ctx, "query-status", args)
		contains(t, "the message", invalid("Command", err).Message, "must marshal to a JSON object")
		_, err = m.QMP(ctx, "query-status", args)
		invalid("QMP", err)
		_, err = m.EventWait(ctx, "STOP", args)
		invalid("EventWait", err)
		_, err = m.EventsWait(ctx, []qemumachine.EventFilter{{Name: "STOP", Match: args}})
		invalid("EventsWait", err)
	}
	// Values encoding/json cannot marshal: the json error is wrapped.
	_, err = m.Command(ctx, "query-status", map[string]any{"c": make(chan int)})
	var unsupported *json.UnsupportedTypeError
	if invalid("Command", err); !errors.As(err, &unsupported) {
		t.Fatalf("%v does not wrap the json error", err)
	}
	_, err = m.Command(ctx, "query-status", json.RawMessage(`{"a":`))
	var marshalErr *json.MarshalerError
	if invalid("Command", err); !errors.As(err, &marshalErr) {
		t.Fatalf("%v does not wrap the json error", err)
	}
	_, err = m.EventsWait(ctx, []qemumachine.EventFilter{{Match: func() {}}})
	invalid("EventsWait", err)
	_, err = m.EventsWait(ctx, nil) // nothing could match
	invalid("EventsWait", err)
	// The command name: NUL byte (binding), invalid UTF-8 (C).
	_, err = m.Command(ctx, "query\x00status", nil)
	invalid("Command", err)
	_, err = m.Command(ctx, "query-\xffstatus", nil)
	invalid("Command", err)
	// An empty console pattern is the library's to reject; a machine
	// without a console cannot do the rest.
	_, err = m.ConsoleWait(ctx, "", "")
	if err == nil {
		t.Fatal("ConsoleWait with an empty pattern succeeded")
	}
	_, err = m.ConsoleWait(ctx, "x", "")
	qmError(t, err, qemumachine.StatusAddDevice, qemumachine.ErrAddDevice)
	qmError(t, m.ConsoleWrite([]byte("x")), qemumachine.StatusAddDevice, qemumachine.ErrAddDevice)
	qmError(t, m.ConsoleWrite(nil), qemumachine.StatusAddDevice, qemumachine.ErrAddDevice)
	_, err = m.ConsoleRead()
	qmError(t, err, qemumachine.StatusAddDevice, qemumachine.ErrAddDevice)
	_, err = m.ConsoleReadBytes()
	qmError(t, err, qemumachine.StatusAddDevice, qemumachine.ErrAddDevice)
	if n, err := m.ConsoleDropped(); err != nil || n != 0 {
		t.Fatalf("ConsoleDropped = %d, %v", n, err)
	}

	// None of that disturbed the machine.
	if _, err := m.Command(ctx, "query-status", nil); err != nil {
		t.Fatalf("query-status: %v", err)
	}
	if err := m.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// Every call on a closed machine returns ErrClosed; Close is idempotent.
func TestClosedMachine(t *testing.T) {
	m := launchedNone(t)
	pid := m.Pid()
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if pidAlive(pid) {
		t.Fatalf("QEMU (pid %d) survived Close", pid)
	}
	ctx := timeout(t, time.Second)
	for name, err := range map[string]error{
		"Launch":   m.Launch(),
		"AddArgs":  m.AddArgs("-S"),
		"Shutdown": m.Shutdown(time.Second),
		"Kill":     m.Kill(),
		"Wait":     m.Wait(ctx),
		"Command": func() error {
			_, err := m.Command(ctx, "query-status", nil)
			return err
		}(),
		"EventWait": func() error {
			_, err := m.EventWait(ctx, "", nil)
			return err
		}(),
		"EventsTake": func() error {
			_, err := m.EventsTake()
			return err
		}(),
		"Log": func() error {
			_, err := m.Log()
			return err
		}(),
		"ConsoleWrite": m.ConsoleWrite([]byte("x")),
	} {
		if err != qemumachine.ErrClosed || !errors.Is(err, qemumachine.ErrState) {
			t.Errorf("%s on a closed machine: %v", name, err)
		}
	}
	if m.Pid() != -1 || m.IsRunning() {
		t.Error("a closed machine looks alive")
	}
}
