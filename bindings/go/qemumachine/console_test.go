package qemumachine_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qemu-machine/bindings/go/qemumachine"
)

// The serial console of a real Linux guest: boot, commands, failure and
// timeout patterns, then a poweroff from inside the guest.
func TestConsoleGuest(t *testing.T) {
	t.Parallel()
	m := guestMachine(t)
	consoleLog := filepath.Join(t.TempDir(), "console.log")
	if err := m.SetConsoleLog(consoleLog); err != nil {
		t.Fatalf("SetConsoleLog: %v", err)
	}
	boot(t, m)
	ctx := timeout(t, 30*time.Second)

	out, err := m.ConsoleExec(ctx, "echo $((6*7))", "42", "")
	if err != nil {
		t.Fatalf("ConsoleExec: %v", err)
	}
	contains(t, "the output", out, "echo $((6*7))") // the echo of the command
	if !strings.HasSuffix(out, "42") {
		t.Fatalf("the output does not end at the match: %q", out)
	}
	out, err = m.ConsoleWait(ctx, prompt, "")
	if err != nil {
		t.Fatalf("the prompt after the answer: %v", err)
	}
	contains(t, "the output", out, prompt)

	// A timeout returns the output seen so far and leaves the cursor.
	if _, err := m.ConsoleExec(ctx, "echo partial-$((1+1))", "partial-2", ""); err != nil {
		t.Fatalf("ConsoleExec: %v", err)
	}
	start := time.Now()
	_, err = m.ConsoleWait(timeout(t, 400*time.Millisecond), "NEVER-SEEN", "")
	qerr := qmError(t, err, qemumachine.StatusTimeout, qemumachine.ErrTimeout)
	contains(t, "the timeout message", qerr.Message, prompt)
	withinBudget(t, qerr.Message, 400*time.Millisecond)
	if elapsed := time.Since(start); elapsed < 400*time.Millisecond || elapsed > 2*time.Second {
		t.Fatalf("a 400 ms console wait took %v", elapsed)
	}
	// Cancelling a console wait ends it, and the cursor stays too.
	waiting, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	if _, err := m.ConsoleWait(waiting, "NEVER-SEEN", ""); err != context.Canceled {
		t.Fatalf("a cancelled console wait returned %v", err)
	}
	if out, err := m.ConsoleWait(ctx, prompt, ""); err != nil || strings.Contains(out, "partial") {
		t.Fatalf("after the timeout: %q, %v", out, err)
	}

	// The failure pattern first: ErrConsoleFailure with the output.
	_, err = m.ConsoleExec(ctx, "echo FAIL-$((1+1)); sleep 1; echo OK-$((1+2))", "OK-3", "FAIL-2")
	qerr = qmError(t, err, qemumachine.StatusConsoleFailure, qemumachine.ErrConsoleFailure)
	contains(t, "the failure message", qerr.Message, "FAIL-2")
	if _, err := m.ConsoleWait(ctx, "OK-3", "FAIL"); err != nil {
		t.Fatalf("the output after the failure: %v", err)
	}

	// Raw writes and reads.
	if err := m.ConsoleWrite([]byte("echo w-$((3*3))\r")); err != nil {
		t.Fatalf("ConsoleWrite: %v", err)
	}
	if _, err := m.ConsoleWait(ctx, "w-9", ""); err != nil {
		t.Fatalf("after ConsoleWrite: %v", err)
	}
	if _, err := m.ConsoleWait(ctx, prompt, ""); err != nil {
		t.Fatalf("the prompt: %v", err)
	}
	if err := m.ConsoleWrite(nil); err != nil {
		t.Fatalf("an empty ConsoleWrite: %v", err)
	}
	if out, err := m.ConsoleRead(); err != nil || strings.Contains(out, "w-9") {
		t.Fatalf("ConsoleRead = %q, %v", out, err)
	}

	// Byte-exact reads: a NUL and an invalid UTF-8 byte from the guest
	// (written as octal escapes, so the echo of the command lacks them).
	if err := m.ConsoleWrite([]byte(`printf '\102<\000\377>\105\n'` + "\r")); err != nil {
		t.Fatalf("ConsoleWrite: %v", err)
	}
	// The cursor moves past what is read: read up to the next prompt.
	var raw []byte
	want := []byte("B<\x00\xff>E\r\n" + prompt)
	for deadline := time.Now().Add(10 * time.Second); !bytes.Contains(raw, want); {
		if time.Now().After(deadline) {
			t.Fatalf("ConsoleReadBytes never gave the bytes: %q", raw)
		}
		chunk, err := m.ConsoleReadBytes()
		if err != nil || chunk == nil {
			t.Fatalf("ConsoleReadBytes = %q, %v", chunk, err)
		}
		raw = append(raw, chunk...)
		time.Sleep(10 * time.Millisecond)
	}

	// QMP works next to the console.
	if _, err := m.Command(ctx, "stop", nil); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := m.EventWait(ctx, "STOP", nil); err != nil {
		t.Fatalf("STOP: %v", err)
	}
	if _, err := m.Command(ctx, "cont", nil); err != nil {
		t.Fatalf("cont: %v", err)
	}
	if _, err := m.ConsoleExec(ctx, "echo alive-$((40+2))", "alive-42", "Kernel panic"); err != nil {
		t.Fatalf("the guest after stop/cont: %v", err)
	}
	if n, err := m.ConsoleDropped(); err != nil || n != 0 {
		t.Fatalf("ConsoleDropped = %d, %v", n, err)
	}

	// Power off from inside: QEMU exits 0 on its own.
	if err := m.ConsoleWrite([]byte("poweroff -f\r")); err != nil {
		t.Fatalf("poweroff: %v", err)
	}
	if err := m.Wait(timeout(t, 60*time.Second)); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if code, err := m.ExitCode(); err != nil || code != 0 {
		t.Fatalf("ExitCode = %d, %v; want 0", code, err)
	}
	ev, err := m.EventWait(timeout(t, time.Second), "SHUTDOWN", map[string]any{"data": map[string]any{"guest": true}})
	if err != nil {
		t.Fatalf("the guest SHUTDOWN event: %v", err)
	}
	contains(t, "the SHUTDOWN event", string(ev), "guest-shutdown")
	// The connection is gone: no more events, and an immediate answer.
	start = time.Now()
	_, err = m.EventWait(context.Background(), "NEVER", nil)
	qmError(t, err, qemumachine.StatusDisconnected, qemumachine.ErrDisconnected)
	if time.Since(start) > time.Second {
		t.Fatal("EventWait after the exit was not immediate")
	}
	qmError(t, m.ConsoleWrite([]byte("x")), qemumachine.StatusState, qemumachine.ErrState)
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	text, err := os.ReadFile(consoleLog)
	if err != nil {
		t.Fatalf("the console log: %v", err)
	}
	contains(t, "the console log", string(text), "QM-GUEST-READY")
	contains(t, "the console log", string(text), "alive-42")
}

// Kill from another goroutine ends a console wait at once; so does Close.
func TestConsoleKillAndClose(t *testing.T) {
	t.Parallel()
	m := guestMachine(t)
	boot(t, m)

	waitErr := make(chan error, 1)
	go func() {
		_, err := m.ConsoleWait(context.Background(), "NEVER-SEEN", "")
		waitErr <- err
	}()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if err := m.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	select {
	case err := <-waitErr:
		qerr := qmError(t, err, qemumachine.StatusDisconnected, qemumachine.ErrDisconnected)
		contains(t, "the message", qerr.Message, "signal 9")
	case <-time.After(5 * time.Second):
		t.Fatal("the console wait did not end after Kill")
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("the console wait ended %v after Kill", elapsed)
	}
	if code, err := m.ExitCode(); err != nil || code != -9 {
		t.Fatalf("ExitCode = %d, %v; want -9", code, err)
	}
	// The output stays readable after the exit, until the next launch.
	if _, err := m.ConsoleRead(); err != nil {
		t.Fatalf("ConsoleRead after the exit: %v", err)
	}

	// Relaunch, and Close while a goroutine waits on the console.
	boot(t, m)
	pid := m.Pid()
	go func() {
		_, err := m.ConsoleWait(context.Background(), "NEVER-SEEN", "")
		waitErr <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-waitErr; !errors.Is(err, qemumachine.ErrDisconnected) && err != qemumachine.ErrClosed {
		t.Fatalf("the console wait during Close returned %v", err)
	}
	if pidAlive(pid) {
		t.Fatalf("QEMU (pid %d) survived Close", pid)
	}
}
