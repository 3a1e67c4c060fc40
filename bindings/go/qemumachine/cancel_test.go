package qemumachine_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"qemu-machine/bindings/go/qemumachine"
)

// abandonedDrained requires the late replies of abandoned commands to be
// dropped by the next commands.
func abandonedDrained(t testing.TB, m *qemumachine.Machine, ctx context.Context) {
	t.Helper()
	for i := 0; qemumachine.AbandonedTickets(m) > 0; i++ {
		if i == 50 {
			t.Fatalf("%d abandoned commands are still waiting to be dropped", qemumachine.AbandonedTickets(m))
		}
		if _, err := m.Command(ctx, "query-status", nil); err != nil {
			t.Fatalf("query-status: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A command QEMU does not answer (it is stopped with SIGSTOP) ends when
// its context is cancelled or its deadline passes; the late replies are
// dropped, and the next commands get their own.
func TestCommandCancel(t *testing.T) {
	t.Parallel()
	m := launchedNone(t)
	ctx := timeout(t, 30*time.Second)
	pid := m.Pid()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	continued := false
	defer func() {
		if !continued {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}()

	cancelled, cancel := context.WithCancel(ctx)
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	if _, err := m.Command(cancelled, "query-status", nil); err != context.Canceled {
		t.Fatalf("a cancelled Command returned %v", err)
	}
	if elapsed := time.Since(start); elapsed < 200*time.Millisecond || elapsed > 1200*time.Millisecond {
		t.Fatalf("the cancelled Command returned after %v", elapsed)
	}
	cancelled, cancel = context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := m.QMP(cancelled, "query-name", nil); err != context.Canceled {
		t.Fatalf("a cancelled QMP returned %v", err)
	}
	start = time.Now()
	_, err := m.Command(timeout(t, 300*time.Millisecond), "query-kvm", nil)
	qerr := qmError(t, err, qemumachine.StatusTimeout, qemumachine.ErrTimeout)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%v is not context.DeadlineExceeded", err)
	}
	contains(t, "the timeout message", qerr.Message, "no reply to 'query-kvm'")
	withinBudget(t, qerr.Message, 300*time.Millisecond)
	if elapsed := time.Since(start); elapsed < 300*time.Millisecond || elapsed > 1500*time.Millisecond {
		t.Fatalf("a 300 ms Command took %v", elapsed)
	}
	if n := qemumachine.AbandonedTickets(m); n != 3 {
		t.Fatalf("%d abandoned commands, want 3", n)
	}

	// Goroutines giving up at once, while others wait for their replies.
	var wg sync.WaitGroup
	answered := make(chan error, 4)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if i%2 == 0 {
				c, cancel := context.WithTimeout(ctx, time.Duration(50+10*i)*time.Millisecond)
				defer cancel()
				_, err := m.Command(c, "query-status", nil)
				if !errors.Is(err, qemumachine.ErrTimeout) {
					t.Errorf("a command given up: %v", err)
				}
				return
			}
			ret, err := m.Command(ctx, "query-name", nil)
			if err == nil && string(ret) != "{}" {
				err = errors.New("query-name returned " + string(ret))
			}
			answered <- err
		}(i)
	}
	time.Sleep(300 * time.Millisecond)
	continued = true
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(answered)
	for err := range answered {
		if err != nil {
			t.Errorf("a command waiting through the stop: %v", err)
		}
	}
	abandonedDrained(t, m, ctx)
	ret, err := m.Command(ctx, "query-status", nil)
	if err != nil || decode(t, ret)["status"] != "running" {
		t.Fatalf("query-status after it all: %s, %v", ret, err)
	}
	if err := m.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// Tickets abandoned in one run are forgotten by the next; Close ends a
// command QEMU does not answer, also on an attached machine, whose QEMU
// is not ours to kill.
func TestCommandAcrossRunsAndClose(t *testing.T) {
	t.Parallel()
	m := launchedNone(t)
	ctx := timeout(t, 30*time.Second)
	syscall.Kill(m.Pid(), syscall.SIGSTOP)
	_, err := m.Command(timeout(t, 100*time.Millisecond), "query-status", nil)
	qmError(t, err, qemumachine.StatusTimeout, qemumachine.ErrTimeout)
	if err := m.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := m.Launch(); err != nil {
		t.Fatalf("relaunch: %v", err)
	}
	if _, err := m.Command(ctx, "query-status", nil); err != nil {
		t.Fatalf("query-status in the new run: %v", err)
	}
	if n := qemumachine.AbandonedTickets(m); n != 0 {
		t.Fatalf("%d tickets of the earlier run are kept", n)
	}

	// Close during a command QEMU does not answer.
	syscall.Kill(m.Pid(), syscall.SIGSTOP)
	result := make(chan error, 1)
	go func() {
		_, err := m.Command(context.Background(), "query-status", nil)
		result <- err
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	m.Close()
	if err := <-result; !errors.Is(err, qemumachine.ErrDisconnected) && err != qemumachine.ErrClosed {
		t.Fatalf("the command during Close returned %v", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("Close took %v", elapsed)
	}

	sock := t.TempDir() + "/ext.sock"
	ext := startExternal(t, "unix:"+sock+",server=on,wait=off")
	a := attach(t, func(ctx context.Context) (*qemumachine.Machine, error) { return qemumachine.AttachUnix(ctx, sock) })
	syscall.Kill(ext.cmd.Process.Pid, syscall.SIGSTOP)
	defer syscall.Kill(ext.cmd.Process.Pid, syscall.SIGCONT)
	go func() {
		_, err := a.Command(context.Background(), "query-status", nil)
		result <- err
	}()
	time.Sleep(200 * time.Millisecond)
	start = time.Now()
	a.Close()
	if err := <-result; err != qemumachine.ErrClosed {
		t.Fatalf("the command on the attached machine during Close returned %v", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("Close of the attached machine took %v", elapsed)
	}
}

// Commands given up leave no goroutine behind (none is started for a
// pending reply), and a quit through Command counts for Shutdown.
func TestCommandCancelNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	m := launchedNone(t)
	ctx := timeout(t, 20*time.Second)
	syscall.Kill(m.Pid(), syscall.SIGSTOP)
	for i := 0; i < 10; i++ {
		c, cancel := context.WithCancel(ctx)
		time.AfterFunc(20*time.Millisecond, cancel) // after the command is sent
		if _, err := m.Command(c, "query-status", nil); err != context.Canceled {
			t.Fatalf("a cancelled Command returned %v", err)
		}
	}
	if n := qemumachine.AbandonedTickets(m); n != 10 {
		t.Fatalf("%d abandoned commands, want 10", n)
	}
	goroutinesSettle(t, before)
	syscall.Kill(m.Pid(), syscall.SIGCONT)
	abandonedDrained(t, m, ctx)
	if ret, err := m.Command(ctx, "quit", nil); err != nil || string(ret) != "{}" {
		t.Fatalf("quit: %s, %v", ret, err)
	}
	if err := m.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown after quit: %v", err)
	}
	if code, err := m.ExitCode(); err != nil || code != 0 {
		t.Fatalf("ExitCode = %d, %v", code, err)
	}
	m.Close()
	goroutinesSettle(t, before)
}
