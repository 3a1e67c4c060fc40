package qemumachine_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"qemu-machine/bindings/go/qemumachine"
)

// pidAlive reports whether a process with this pid exists.
func pidAlive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

// Eight goroutines run 100 commands each on one machine while another
// goroutine waits for an event that only comes at the end.
func TestGoroutinesShareMachine(t *testing.T) {
	m := launchedNone(t)
	ctx := timeout(t, 30*time.Second)

	type result struct {
		event []byte
		err   error
	}
	waited := make(chan result, 1)
	go func() {
		ev, err := m.EventWait(context.Background(), "STOP", nil) // no deadline
		waited <- result{ev, err}
	}()

	const workers, commands = 8, 100
	var wg sync.WaitGroup
	errs := make(chan error, workers*commands)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < commands; i++ {
				var err error
				switch i % 3 {
				case 0:
					_, err = m.Command(ctx, "query-status", nil)
				case 1:
					_, err = m.QMP(ctx, "query-name", nil)
				default:
					_, err = m.Command(ctx, "no-such-command", nil)
					var qerr *qemumachine.Error
					if errors.As(err, &qerr) && qerr.QMPClass == "CommandNotFound" {
						err = nil
					}
				}
				if err != nil {
					errs <- fmt.Errorf("worker %d, command %d: %w", w, i, err)
					return
				}
				if m.Pid() <= 0 || !m.IsRunning() {
					errs <- fmt.Errorf("worker %d: QEMU looks dead", w)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	select {
	case r := <-waited:
		t.Fatalf("the event waiter returned early: %s, %v", r.event, r.err)
	default:
	}
	if _, err := m.Command(ctx, "stop", nil); err != nil {
		t.Fatalf("stop: %v", err)
	}
	select {
	case r := <-waited:
		if r.err != nil || eventName(t, r.event) != "STOP" {
			t.Fatalf("the event waiter got %s, %v", r.event, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the event waiter did not see STOP")
	}
	if err := m.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// Several machines launched, used and shut down concurrently.
func TestConcurrentMachines(t *testing.T) {
	const machines = 6
	var wg sync.WaitGroup
	errs := make(chan error, machines)
	pids := make(chan int, machines)
	for i := 0; i < machines; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- func() error {
				m, err := qemumachine.New(qemuBinary())
				if err != nil {
					return err
				}
				defer m.Close()
				if err := m.SetName(fmt.Sprintf("go-concurrent-%d-%d", os.Getpid(), i)); err != nil {
					return err
				}
				if err := m.AddArgs("-machine", "none", "-accel", "tcg", "-nodefaults"); err != nil {
					return err
				}
				if err := m.Launch(); err != nil {
					return fmt.Errorf("machine %d: %w", i, err)
				}
				pids <- m.Pid()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				for j := 0; j < 20; j++ {
					if _, err := m.Command(ctx, "query-status", nil); err != nil {
						return fmt.Errorf("machine %d: %w", i, err)
					}
				}
				if _, err := m.Command(ctx, "stop", nil); err != nil {
					return err
				}
				if _, err := m.EventWait(ctx, "STOP", nil); err != nil {
					return fmt.Errorf("machine %d: %w", i, err)
				}
				if err := m.Shutdown(10 * time.Second); err != nil {
					return fmt.Errorf("machine %d: %w", i, err)
				}
				if code, err := m.ExitCode(); err != nil || code != 0 {
					return fmt.Errorf("machine %d: exit code %d, %v", i, code, err)
				}
				return nil
			}()
		}(i)
	}
	wg.Wait()
	close(errs)
	close(pids)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	seen := map[int]bool{}
	for pid := range pids {
		if seen[pid] {
			t.Errorf("pid %d used twice", pid)
		}
		seen[pid] = true
	}
	if len(seen) != machines {
		t.Errorf("%d machines ran, want %d", len(seen), machines)
	}
}

// Close while other goroutines are blocked in the machine: they are woken,
// Close waits for them, and later calls get ErrClosed.
func TestCloseWakesBlockedCalls(t *testing.T) {
	m := launchedNone(t)
	pid := m.Pid()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for _, call := range []func() error{
		func() error { _, err := m.EventWait(context.Background(), "NEVER", nil); return err },
		func() error { _, err := m.EventGet(timeout(t, time.Hour)); return err },
		func() error { return m.Wait(context.Background()) },
	} {
		wg.Add(1)
		go func(call func() error) {
			defer wg.Done()
			errs <- call()
		}(call)
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Fatalf("Close took %v", elapsed)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		// Woken by QEMU's death (Disconnected), or seeing the close.
		// Wait succeeds once QEMU has exited.
		if err != nil && !errors.Is(err, qemumachine.ErrDisconnected) && !errors.Is(err, qemumachine.ErrClosed) {
			t.Errorf("a blocked call returned %v", err)
		}
	}
	if pidAlive(pid) {
		t.Fatalf("QEMU (pid %d) survived Close", pid)
	}
}

// external is a QEMU started by the test, not by the library.
type external struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once it has exited; then err is set
	err    error
}

// A Machine that is dropped without Close is freed by its finalizer,
// which kills its QEMU.
func TestFinalizer(t *testing.T) {
	pid := func() int {
		m, err := qemumachine.New(qemuBinary())
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		if err := m.AddArgs("-machine", "none", "-accel", "tcg", "-nodefaults"); err != nil {
			t.Fatalf("AddArgs: %v", err)
		}
		if err := m.Launch(); err != nil {
			t.Fatalf("Launch: %v", err)
		}
		return m.Pid()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for pidAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("QEMU (pid %d) of a dropped Machine is still running", pid)
		}
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
}

// startExternal starts a QEMU whose QMP monitor listens at qmp, killed
// when the test ends.
func startExternal(t *testing.T, qmp string) *external {
	t.Helper()
	e := &external{exited: make(chan struct{})}
	e.cmd = exec.Command(qemuBinary(), "-display", "none", "-machine", "none", "-accel", "tcg",
		"-nodefaults", "-qmp", qmp)
	if err := e.cmd.Start(); err != nil {
		t.Fatalf("starting QEMU: %v", err)
	}
	go func() {
		e.err = e.cmd.Wait()
		close(e.exited)
	}()
	t.Cleanup(func() {
		e.cmd.Process.Kill()
		<-e.exited
	})
	return e
}

// attach retries until the external QEMU listens.
func attach(t *testing.T, connect func(ctx context.Context) (*qemumachine.Machine, error)) *qemumachine.Machine {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, err := connect(timeout(t, 5*time.Second))
		if err == nil {
			t.Cleanup(func() { m.Close() })
			return m
		}
		if !errors.Is(err, qemumachine.ErrIO) || time.Now().After(deadline) {
			t.Fatalf("attach: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitExit waits for an external QEMU to exit and returns its status.
func waitExit(t *testing.T, e *external) int {
	t.Helper()
	select {
	case <-e.exited:
		if e.err != nil {
			t.Fatalf("the external QEMU: %v", e.err)
		}
		return e.cmd.ProcessState.ExitCode()
	case <-time.After(10 * time.Second):
		t.Fatal("the external QEMU did not exit")
		return -1
	}
}

func TestAttach(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ext.sock")
	_, err := qemumachine.AttachUnix(timeout(t, time.Second), sock)
	qmError(t, err, qemumachine.StatusIO, qemumachine.ErrIO)
	_, err = qemumachine.AttachTCP(timeout(t, time.Second), "127.0.0.1", 70000)
	qmError(t, err, qemumachine.StatusInvalidArgument, qemumachine.ErrInvalidArgument)

	ext := startExternal(t, "unix:"+sock+",server=on,wait=off")
	m := attach(t, func(ctx context.Context) (*qemumachine.Machine, error) { return qemumachine.AttachUnix(ctx, sock) })
	if !m.IsRunning() || m.Pid() != -1 {
		t.Fatalf("attached: IsRunning %v, Pid %d", m.IsRunning(), m.Pid())
	}
	qmError(t, m.Kill(), qemumachine.StatusState, qemumachine.ErrState)
	qmError(t, m.Launch(), qemumachine.StatusState, qemumachine.ErrState)
	_, err = m.Log()
	qmError(t, err, qemumachine.StatusState, qemumachine.ErrState)
	ctx := timeout(t, 10*time.Second)
	if _, err := m.Command(ctx, "stop", nil); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := m.EventWait(ctx, "STOP", nil); err != nil {
		t.Fatalf("STOP: %v", err)
	}
	devnull, _ := os.Open(os.DevNull)
	defer devnull.Close()
	if err := m.SendFD(int(devnull.Fd()), "devnull"); err != nil {
		t.Fatalf("SendFD to an attached QEMU: %v", err)
	}

	// Close wakes a wait on an attached machine, although its QEMU is
	// not ours to kill, and leaves that QEMU running.
	waitErr := make(chan error, 1)
	go func() {
		_, err := m.EventWait(context.Background(), "NEVER", nil)
		waitErr <- err
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	m.Close()
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("Close took %v", elapsed)
	}
	if err := <-waitErr; err != qemumachine.ErrClosed {
		t.Fatalf("the wait on the closed attached machine returned %v", err)
	}
	select {
	case <-ext.exited:
		t.Fatal("Close stopped the attached QEMU")
	case <-time.After(100 * time.Millisecond):
	}

	// Attach again and shut it down: quit, then the connection closes.
	m2 := attach(t, func(ctx context.Context) (*qemumachine.Machine, error) { return qemumachine.AttachUnix(ctx, sock) })
	if err := m2.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown of an attached QEMU: %v", err)
	}
	if code := waitExit(t, ext); code != 0 {
		t.Fatalf("the attached QEMU exited with %d", code)
	}

	// Over TCP.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ext = startExternal(t, fmt.Sprintf("tcp:127.0.0.1:%d,server=on,wait=off", port))
	m3 := attach(t, func(ctx context.Context) (*qemumachine.Machine, error) {
		return qemumachine.AttachTCP(ctx, "127.0.0.1", port)
	})
	ret, err := m3.Command(ctx, "query-status", nil)
	if err != nil || decode(t, ret)["running"] != true {
		t.Fatalf("query-status over TCP: %s, %v", ret, err)
	}
	argv, err := m3.CommandLine()
	if err != nil {
		t.Fatalf("CommandLine: %v", err)
	}
	t.Logf("attached command line: %q", argv)
	qmError(t, m3.SendFD(int(devnull.Fd()), "x"), qemumachine.StatusAddDevice, qemumachine.ErrAddDevice)
	if err := m3.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown over TCP: %v", err)
	}
	if code := waitExit(t, ext); code != 0 {
		t.Fatalf("the attached QEMU exited with %d", code)
	}
}
