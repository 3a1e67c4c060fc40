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

	// The environment: a name the library refuses, a NUL byte anywhere.
	invalid("SetEnv", m.SetEnv("", "x"))
	invalid("SetEnv", m.SetEnv("A=B", "x"))
	invalid("SetEnv", m.SetEnv("A\x00", "x"))
	invalid("SetEnv", m.SetEnv("A", "x\x00"))
	invalid("SetEnv", m.SetEnv("A", "\xff"))
	invalid("UnsetEnv", m.UnsetEnv(""))
	invalid("SetAgent", m.SetAgent("isa-serial\x00"))
	invalid("SetAgent", m.SetAgent("\xff"))
	invalid("SaveArtifacts", m.SaveArtifacts("dir\x00"))
	// Probe: an empty binary, an unknown kind, NUL bytes.
	for _, args := range [][3]string{
		{"", qemumachine.ProbeDevice, "x"},
		{qemuBinary(), "bogus", "x"},
		{qemuBinary(), "", "x"},
		{qemuBinary() + "\x00", qemumachine.ProbeDevice, "x"},
		{qemuBinary(), qemumachine.ProbeDevice, "x\x00"},
	} {
		_, err := qemumachine.Probe(args[0], args[1], args[2], 10*time.Second)
		invalid("Probe", err)
	}

	if err := m.Launch(); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	ctx := timeout(t, 10*time.Second)

	// Configuration after the launch.
	for name, err := range map[string]error{
		"SetEnv":          m.SetEnv("A", "b"),
		"SetAgent":        m.SetAgent(""),
		"SetQtest":        m.SetQtest(),
		"SetQtestTimeout": m.SetQtestTimeout(time.Second),
	} {
		if !errors.Is(err, qemumachine.ErrState) {
			t.Errorf("%s after the launch: %v", name, err)
		}
	}
	// The guest agent: argv and arguments are checked first; without a
	// channel every call is ErrAddDevice.
	a := m.Agent()
	_, err = a.Exec(ctx, nil, nil)
	invalid("Exec", err)
	_, err = a.Exec(ctx, []string{}, []byte("x"))
	invalid("Exec", err)
	_, err = a.Exec(ctx, []string{"echo", "a\x00b"}, nil)
	invalid("Exec", err)
	_, err = a.Command(ctx, "guest-ping", []int{1})
	invalid("Agent.Command", err)
	_, err = a.ReadFile(ctx, "/a\x00")
	invalid("ReadFile", err)
	invalid("WriteFile", a.WriteFile(ctx, "/a\x00", nil))
	for name, call := range map[string]func() error{
		"WaitReady": func() error { return a.WaitReady(ctx) },
		"Command":   func() error { _, err := a.Command(ctx, "guest-ping", nil); return err },
		"Exec":      func() error { _, err := a.Exec(ctx, []string{"true"}, nil); return err },
		"ReadFile":  func() error { _, err := a.ReadFile(ctx, "/etc/hostname"); return err },
		"WriteFile": func() error { return a.WriteFile(ctx, "/tmp/x", []byte("x")) },
	} {
		if err := call(); !errors.Is(err, qemumachine.ErrAddDevice) {
			t.Errorf("Agent.%s without an agent channel: %v", name, err)
		}
	}
	// qtest without SetQtest.
	q := m.Qtest()
	for name, call := range map[string]func() error{
		"Raw":       func() error { _, err := q.Raw("endianness"); return err },
		"Readb":     func() error { _, err := q.Readb(0); return err },
		"Outb":      func() error { return q.Outb(0x70, 0) },
		"MemRead":   func() error { _, err := q.MemRead(0, 16); return err },
		"ClockStep": func() error { _, err := q.ClockStep(1); return err },
		"GetIRQ":    func() error { _, err := q.GetIRQ(0); return err },
	} {
		if err := call(); !errors.Is(err, qemumachine.ErrAddDevice) {
			t.Errorf("Qtest.%s without qtest: %v", name, err)
		}
	}
	// Migrating a machine into itself.
	if err := qemumachine.Migrate(ctx, m, m); err == nil {
		t.Error("Migrate(m, m) succeeded")
	} else {
		t.Logf("Migrate(m, m): %v", err)
	}

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

// qtest arguments are checked before anything is sent (QEMU aborts on
// malformed input), by the binding or the library; QEMU is unharmed.
func TestQtestBadInput(t *testing.T) {
	t.Parallel()
	m, q := launchedQtest(t)
	for name, call := range map[string]func() error{
		"Read size 3":          func() error { _, err := q.Read(0, 3); return err },
		"Read size -1":         func() error { _, err := q.Read(0, -1); return err },
		"Read size 2^40":       func() error { _, err := q.Read(0, 1<<40); return err },
		"Write too big":        func() error { return q.Write(0, 1, 0x100) },
		"In size 8":            func() error { _, err := q.In(0x70, 8); return err },
		"Out too big":          func() error { return q.Out(0x70, 1, 0x1ff) },
		"IRQInterceptIn empty": func() error { return q.IRQInterceptIn("") },
		"IRQInterceptOut a b":  func() error { return q.IRQInterceptOut("a b") },
		"IRQInterceptIn NUL":   func() error { return q.IRQInterceptIn("a\x00") },
		"SetIRQIn newline":     func() error { return q.SetIRQIn("/machine/x", "a\nb", 0, 1) },
		"SetIRQIn empty name":  func() error { return q.SetIRQIn("ioapic", "", 0, 1) },
		"SetIRQIn line 2^40":   func() error { return q.SetIRQIn("ioapic", "unnamed-gpio-in", 1<<40, 1) },
		"GetIRQ -1":            func() error { _, err := q.GetIRQ(-1); return err },
		"GetIRQ 2^40":          func() error { _, err := q.GetIRQ(1 << 40); return err },
		"Raw empty":            func() error { _, err := q.Raw(""); return err },
		"Raw double space":     func() error { _, err := q.Raw("clock_step  1"); return err },
		"Raw newline":          func() error { _, err := q.Raw("readb 0\n"); return err },
		"Raw NUL":              func() error { _, err := q.Raw("readb\x000"); return err },
		"MemWrite wraps":       func() error { return q.MemWrite(1<<64-1, []byte{1, 2}) },
		"MemRead negative":     func() error { _, err := q.MemRead(0, -1); return err },
		"MemSet negative":      func() error { return q.MemSet(0, 0, -1) },
		"ClockStep negative":   func() error { _, err := q.ClockStep(-1); return err },
	} {
		err := call()
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		var qerr *qemumachine.Error
		if !errors.As(err, &qerr) || qerr.Status != qemumachine.StatusInvalidArgument {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	if reply, err := q.Raw("endianness"); err != nil || reply != "OK little" {
		t.Fatalf("QEMU after the bad input: %q, %v", reply, err)
	}
	if err := m.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
