package qemumachine_test

import (
	"context"
	"encoding/json"
	"runtime"
	"syscall"
	"testing"
	"time"

	"qemu-machine/bindings/go/qemumachine"
)

// receive takes the next event from ch, failing the test after 10 s or if
// the channel is closed.
func receive(t testing.TB, ch <-chan qemumachine.Event) qemumachine.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("the event channel was closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
	}
	panic("unreachable")
}

// closedWithin requires ch to be closed within d; events still on it are
// returned.
func closedWithin(t testing.TB, ch <-chan qemumachine.Event, d time.Duration) []qemumachine.Event {
	t.Helper()
	var rest []qemumachine.Event
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return rest
			}
			rest = append(rest, ev)
		case <-timer.C:
			// What is buffered is there already: drain it.
			for {
				select {
				case ev, ok := <-ch:
					if !ok {
						return rest
					}
					rest = append(rest, ev)
				default:
					t.Fatalf("the event channel was not closed within %v", d)
				}
			}
		}
	}
}

// goroutinesSettle requires the number of goroutines to come back to at
// most before (goroutines that are ending take a moment).
func goroutinesSettle(t testing.TB, before int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		now := runtime.NumGoroutine()
		if now <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, now, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestListen(t *testing.T) {
	m := launchedNone(t)
	ctx := timeout(t, 20*time.Second)
	all, err := m.Listen(ctx)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	resumes, err := m.Listen(ctx, qemumachine.EventFilter{Name: "RESUME"})
	if err != nil {
		t.Fatalf("Listen with a filter: %v", err)
	}
	resets, err := m.Listen(ctx, qemumachine.EventFilter{Match: map[string]any{"data": map[string]any{"reason": "host-qmp-system-reset"}}})
	if err != nil {
		t.Fatalf("Listen with a match: %v", err)
	}
	start := time.Now()
	for _, cmd := range []string{"stop", "cont", "system_reset"} {
		if _, err := m.Command(ctx, cmd, nil); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
	}
	for _, want := range []string{"STOP", "RESUME", "RESET"} {
		ev := receive(t, all)
		if ev.Name != want {
			t.Fatalf("got %s, want %s", ev, want)
		}
		if ev.Timestamp.Before(start.Add(-time.Second)) || ev.Timestamp.After(time.Now().Add(time.Second)) {
			t.Fatalf("the timestamp of %s is %v", ev, ev.Timestamp)
		}
		if eventName(t, ev.JSON) != want {
			t.Fatalf("the JSON of the event: %s", ev.JSON)
		}
		if want == "RESET" && decode(t, ev.Data)["reason"] != "host-qmp-system-reset" {
			t.Fatalf("the data of RESET: %s", ev.Data)
		}
		if want == "STOP" && ev.Data != nil {
			t.Fatalf("STOP has data: %s", ev.Data)
		}
	}
	if ev := receive(t, resumes); ev.Name != "RESUME" {
		t.Fatalf("the RESUME listener got %s", ev)
	}
	if ev := receive(t, resets); ev.Name != "RESET" {
		t.Fatalf("the RESET listener got %s", ev)
	}
	// The machine's own queue is untouched.
	events, err := m.EventsTake()
	if err != nil || len(events) != 3 {
		t.Fatalf("EventsTake = %s, %v; want the three events", events, err)
	}
	// Nothing more on the filtered channels.
	select {
	case ev := <-resumes:
		t.Fatalf("the RESUME listener got another event: %s", ev)
	case ev := <-resets:
		t.Fatalf("the RESET listener got another event: %s", ev)
	case <-time.After(150 * time.Millisecond):
	}

	// The run ends: the rest is delivered, then the channels are closed.
	if err := m.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	rest := closedWithin(t, all, 2*time.Second)
	if len(rest) != 1 || rest[0].Name != "SHUTDOWN" {
		t.Fatalf("after the shutdown the channel had %v", rest)
	}
	if rest := closedWithin(t, resumes, 2*time.Second); len(rest) != 0 {
		t.Fatalf("the RESUME listener had %v", rest)
	}
	closedWithin(t, resets, 2*time.Second)

	// Listen needs a running machine.
	_, err = m.Listen(ctx)
	qmError(t, err, qemumachine.StatusState, qemumachine.ErrState)
}

// The goroutine of Listen reads QMP itself: an event QEMU sends on its
// own (SIGTERM: SHUTDOWN, then the exit) arrives while no other call is
// made on the machine.
func TestListenReadsByItself(t *testing.T) {
	m := launchedNone(t)
	ch, err := m.Listen(timeout(t, 10*time.Second))
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	if err := syscall.Kill(m.Pid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ev := receive(t, ch)
	if ev.Name != "SHUTDOWN" || decode(t, ev.Data)["reason"] != "host-signal" {
		t.Fatalf("got %s", ev)
	}
	closedWithin(t, ch, 5*time.Second)
}

// Every way a channel ends frees its listener and ends its goroutine:
// cancel, deadline, Close (with and without a reader), the run's end, a
// reader that stopped reading.
func TestListenEndsWithoutLeaks(t *testing.T) {
	before := runtime.NumGoroutine()

	m := launchedNone(t)
	ctx := timeout(t, 20*time.Second)

	// Cancelled: closed within about a slice.
	cctx, cancel := context.WithCancel(ctx)
	ch, err := m.Listen(cctx)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	cancel()
	closedWithin(t, ch, 2*time.Second)
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Fatalf("closed %v after the cancellation", elapsed)
	}

	// A deadline.
	dctx, dcancel := context.WithTimeout(ctx, 150*time.Millisecond)
	defer dcancel()
	ch, err = m.Listen(dctx)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	start = time.Now()
	closedWithin(t, ch, 2*time.Second)
	if elapsed := time.Since(start); elapsed < 140*time.Millisecond || elapsed > 1500*time.Millisecond {
		t.Fatalf("a 150 ms deadline closed the channel after %v", elapsed)
	}

	// A reader that stopped reading, with more events than the channel
	// holds: cancelling still ends the goroutine.
	sctx, scancel := context.WithCancel(ctx)
	stuck, err := m.Listen(sctx)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	for i := 0; i < 30; i++ {
		if _, err := m.Command(ctx, "system_reset", nil); err != nil {
			t.Fatalf("system_reset: %v", err)
		}
	}
	time.Sleep(200 * time.Millisecond) // the goroutine fills the channel and blocks
	scancel()
	closedWithin(t, stuck, 2*time.Second)

	// Close with one channel read and one not: both are closed by the
	// time Close returns.
	read, err := m.Listen(ctx)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	unread, err := m.Listen(ctx)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	for i := 0; i < 30; i++ {
		if _, err := m.Command(ctx, "system_reset", nil); err != nil {
			t.Fatalf("system_reset: %v", err)
		}
	}
	receive(t, read)
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closedWithin(t, read, 0)
	closedWithin(t, unread, 0)
	_, err = m.Listen(ctx)
	if err != qemumachine.ErrClosed {
		t.Fatalf("Listen on a closed machine: %v", err)
	}

	// The run's end, with the reader gone: Kill ends it.
	k := launchedNone(t)
	if _, err := k.Listen(ctx); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	if err := k.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	goroutinesSettle(t, before)
}

// An attached machine: Close does not stop its QEMU, yet ends the
// channel.
func TestListenAttachedClose(t *testing.T) {
	sock := t.TempDir() + "/ext.sock"
	startExternal(t, "unix:"+sock+",server=on,wait=off")
	before := runtime.NumGoroutine()
	m := attach(t, func(ctx context.Context) (*qemumachine.Machine, error) { return qemumachine.AttachUnix(ctx, sock) })
	ch, err := m.Listen(context.Background())
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	if _, err := m.Command(timeout(t, 10*time.Second), "stop", nil); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if ev := receive(t, ch); ev.Name != "STOP" {
		t.Fatalf("got %s", ev)
	}
	start := time.Now()
	m.Close()
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("Close took %v", elapsed)
	}
	closedWithin(t, ch, 0)
	goroutinesSettle(t, before)
}

func TestListenBadInput(t *testing.T) {
	m := noneMachine(t)
	ctx := timeout(t, 10*time.Second)
	_, err := m.Listen(ctx) // not launched
	qmError(t, err, qemumachine.StatusState, qemumachine.ErrState)
	if err := m.Launch(); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	for _, filters := range [][]qemumachine.EventFilter{
		{{Match: []int{1}}},
		{{Match: "x"}},
		{{Name: "STOP"}, {Match: func() {}}},
	} {
		_, err := m.Listen(ctx, filters...)
		qmError(t, err, qemumachine.StatusInvalidArgument, qemumachine.ErrInvalidArgument)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Listen(cancelled); err != context.Canceled {
		t.Fatalf("Listen with a cancelled context: %v", err)
	}
	expired, ecancel := context.WithTimeout(context.Background(), 0)
	defer ecancel()
	_, err = m.Listen(expired)
	qmError(t, err, qemumachine.StatusTimeout, qemumachine.ErrTimeout)
	// Without QMP no event can come.
	noQMP := noneMachine(t)
	for _, err := range []error{noQMP.SetQMPEnabled(false), noQMP.AddMonitorNull(), noQMP.Launch()} {
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = noQMP.Listen(ctx)
	qmError(t, err, qemumachine.StatusAddDevice, qemumachine.ErrAddDevice)
	// A nil match and an empty name are wildcards.
	ch, err := m.Listen(ctx, qemumachine.EventFilter{Match: json.RawMessage("null")})
	if err != nil {
		t.Fatalf("Listen with a null match: %v", err)
	}
	if _, err := m.Command(ctx, "stop", nil); err != nil {
		t.Fatal(err)
	}
	if ev := receive(t, ch); ev.Name != "STOP" {
		t.Fatalf("got %s", ev)
	}
}

// A Machine dropped without Close while a Listen channel is open is still
// finalized: the goroutine does not keep it alive. Its QEMU is killed and
// the channel closed.
func TestListenFinalizer(t *testing.T) {
	var ch <-chan qemumachine.Event
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
		if ch, err = m.Listen(context.Background()); err != nil {
			t.Fatalf("Listen: %v", err)
		}
		return m.Pid()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for pidAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("QEMU (pid %d) of a dropped Machine with a listener is still running", pid)
		}
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
	closedWithin(t, ch, 5*time.Second)
}
