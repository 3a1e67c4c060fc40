package qemumachine_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"qemu-machine/bindings/go/qemumachine"
)

func TestVersionAndStatuses(t *testing.T) {
	if v := qemumachine.Version(); !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v) {
		t.Fatalf("Version() = %q", v)
	}
	// The values of the C enum, in order.
	statuses := []qemumachine.Status{
		qemumachine.StatusOK, qemumachine.StatusInvalidArgument, qemumachine.StatusState,
		qemumachine.StatusLaunch, qemumachine.StatusTimeout, qemumachine.StatusDisconnected,
		qemumachine.StatusProtocol, qemumachine.StatusCommand, qemumachine.StatusAbnormalShutdown,
		qemumachine.StatusIO, qemumachine.StatusAddDevice, qemumachine.StatusPanic,
		qemumachine.StatusConsoleFailure,
	}
	for i, s := range statuses {
		if int(s) != i {
			t.Errorf("status %v = %d, want %d", s, int(s), i)
		}
		if s.String() == "" || s.String() == "unknown status" {
			t.Errorf("status %d has no description", i)
		}
	}
	if got := qemumachine.StatusTimeout.String(); got != "timed out" {
		t.Errorf("StatusTimeout.String() = %q", got)
	}
	for _, s := range []qemumachine.Status{13, -1, 1 << 40} {
		if got := s.String(); got != "unknown status" {
			t.Errorf("Status(%d).String() = %q", int(s), got)
		}
	}
	sentinels := map[error]qemumachine.Status{
		qemumachine.ErrInvalidArgument:  qemumachine.StatusInvalidArgument,
		qemumachine.ErrState:            qemumachine.StatusState,
		qemumachine.ErrLaunch:           qemumachine.StatusLaunch,
		qemumachine.ErrTimeout:          qemumachine.StatusTimeout,
		qemumachine.ErrDisconnected:     qemumachine.StatusDisconnected,
		qemumachine.ErrProtocol:         qemumachine.StatusProtocol,
		qemumachine.ErrCommand:          qemumachine.StatusCommand,
		qemumachine.ErrAbnormalShutdown: qemumachine.StatusAbnormalShutdown,
		qemumachine.ErrIO:               qemumachine.StatusIO,
		qemumachine.ErrAddDevice:        qemumachine.StatusAddDevice,
		qemumachine.ErrPanic:            qemumachine.StatusPanic,
		qemumachine.ErrConsoleFailure:   qemumachine.StatusConsoleFailure,
	}
	for sentinel, status := range sentinels {
		err := error(&qemumachine.Error{Status: status, Message: "m"})
		for other := range sentinels {
			if errors.Is(err, other) != (other == sentinel) {
				t.Errorf("errors.Is(%v, %v) = %v", err, other, !(other == sentinel))
			}
		}
	}
	timeoutErr := &qemumachine.Error{Status: qemumachine.StatusTimeout}
	if !errors.Is(timeoutErr, context.DeadlineExceeded) {
		t.Error("a timeout does not match context.DeadlineExceeded")
	}
	if errors.Is(&qemumachine.Error{Status: qemumachine.StatusState}, context.DeadlineExceeded) {
		t.Error("a state error matches context.DeadlineExceeded")
	}
	for _, c := range []struct {
		err  error
		want string
	}{
		{&qemumachine.Error{Status: qemumachine.StatusTimeout}, "qemumachine: timed out"},
		{&qemumachine.Error{Status: qemumachine.StatusTimeout, Message: "no STOP within 5 ms"}, "qemumachine: no STOP within 5 ms"},
		{&qemumachine.Error{Status: qemumachine.StatusCommand, Message: "failed", QMPClass: "GenericError"}, "qemumachine: failed (GenericError)"},
		{&qemumachine.Error{Status: qemumachine.StatusCommand, Message: "GenericError: x", QMPClass: "GenericError"}, "qemumachine: GenericError: x"},
		{qemumachine.ErrLaunch, "qemumachine: QEMU launch failed"},
		{qemumachine.ErrClosed, "qemumachine: the machine is closed"},
	} {
		if got := c.err.Error(); got != c.want {
			t.Errorf("Error() = %q, want %q", got, c.want)
		}
	}
	if !errors.Is(qemumachine.ErrClosed, qemumachine.ErrState) {
		t.Error("ErrClosed is not an ErrState")
	}
}

func TestLaunchQueryShutdown(t *testing.T) {
	m := noneMachine(t)
	if m.IsRunning() || m.Pid() != -1 {
		t.Fatal("running before launch")
	}
	if _, err := m.ExitCode(); err == nil {
		t.Fatal("ExitCode before launch succeeded")
	} else {
		qmError(t, err, qemumachine.StatusState, qemumachine.ErrState)
	}
	if err := m.Launch(); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	if !m.IsRunning() || m.Pid() <= 0 {
		t.Fatalf("IsRunning %v, Pid %d after launch", m.IsRunning(), m.Pid())
	}
	ctx := timeout(t, 10*time.Second)
	ret, err := m.Command(ctx, "query-status", nil)
	if err != nil {
		t.Fatalf("query-status: %v", err)
	}
	status := decode(t, ret)
	if status["running"] != true || status["status"] != "running" {
		t.Fatalf("query-status returned %s", ret)
	}
	dir, err := m.TempDir()
	if err != nil {
		t.Fatalf("TempDir: %v", err)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Fatalf("temporary directory %q: %v", dir, err)
	}
	argv, err := m.CommandLine()
	if err != nil {
		t.Fatalf("CommandLine: %v", err)
	}
	joined := strings.Join(argv, " ")
	contains(t, "the command line", joined, "-machine none")
	contains(t, "the command line", joined, "-accel tcg -nodefaults")
	if argv[0] != qemuBinary() {
		t.Fatalf("command line starts with %q", argv[0])
	}
	if _, err := m.Log(); err != nil {
		t.Fatalf("Log: %v", err)
	}
	if _, err := m.ExitCode(); err == nil {
		t.Fatal("ExitCode while running succeeded")
	}
	if err := m.Launch(); err == nil {
		t.Fatal("a second Launch succeeded")
	} else {
		qmError(t, err, qemumachine.StatusState, qemumachine.ErrState)
	}
	if err := m.AddArgs("-S"); err == nil {
		t.Fatal("AddArgs after launch succeeded")
	} else {
		qmError(t, err, qemumachine.StatusState, qemumachine.ErrState)
	}

	if err := m.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if code, err := m.ExitCode(); err != nil || code != 0 {
		t.Fatalf("ExitCode = %d, %v; want 0", code, err)
	}
	if m.IsRunning() || m.Pid() != -1 {
		t.Fatal("still running after shutdown")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the temporary directory survived the shutdown: %v", err)
	}
	// Events stay readable: the SHUTDOWN of our quit.
	ev, err := m.EventWait(timeout(t, time.Second), "SHUTDOWN", map[string]any{"data": map[string]any{"guest": false}})
	if err != nil {
		t.Fatalf("SHUTDOWN event: %v", err)
	}
	contains(t, "the SHUTDOWN event", string(ev), "host-qmp-quit")
	if _, err := m.Command(ctx, "query-status", nil); err == nil {
		t.Fatal("a command after shutdown succeeded")
	} else {
		qmError(t, err, qemumachine.StatusState, qemumachine.ErrState)
	}
	// Shutting down again, or killing, is a no-op.
	if err := m.Shutdown(time.Second); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if err := m.Kill(); err != nil {
		t.Fatalf("Kill after shutdown: %v", err)
	}

	// The machine can be launched again.
	if err := m.Launch(); err != nil {
		t.Fatalf("relaunch: %v", err)
	}
	if _, err := m.Command(ctx, "query-status", nil); err != nil {
		t.Fatalf("query-status after relaunch: %v", err)
	}
	if err := m.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if code, err := m.ExitCode(); err != nil || code != -9 {
		t.Fatalf("ExitCode after Kill = %d, %v; want -9", code, err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestQMPReplyAndCommandError(t *testing.T) {
	m := launchedNone(t)
	ctx := timeout(t, 10*time.Second)

	reply, err := m.QMP(ctx, "query-status", nil)
	if err != nil {
		t.Fatalf("QMP query-status: %v", err)
	}
	if _, ok := decode(t, reply)["return"]; !ok {
		t.Fatalf("reply without return: %s", reply)
	}
	reply, err = m.QMP(ctx, "no-such-command", nil)
	if err != nil {
		t.Fatalf("QMP no-such-command: %v", err)
	}
	qerrObj, _ := decode(t, reply)["error"].(map[string]any)
	if qerrObj["class"] != "CommandNotFound" {
		t.Fatalf("reply: %s", reply)
	}
	if strings.Contains(string(reply), `"id"`) {
		t.Fatalf("the reply has the library's id: %s", reply)
	}

	_, err = m.Command(ctx, "no-such-command", nil)
	qerr := qmError(t, err, qemumachine.StatusCommand, qemumachine.ErrCommand)
	if qerr.QMPClass != "CommandNotFound" {
		t.Fatalf("QMPClass = %q", qerr.QMPClass)
	}
	contains(t, "QMPDesc", qerr.QMPDesc, "no-such-command")
	contains(t, "the message", qerr.Message, qerr.QMPDesc)
	contains(t, "Error()", err.Error(), "CommandNotFound")

	// A command error with arguments: GenericError and its description.
	_, err = m.Command(ctx, "closefd", map[string]string{"fdname": "nonexistent"})
	qerr = qmError(t, err, qemumachine.StatusCommand, qemumachine.ErrCommand)
	if qerr.QMPClass != "GenericError" {
		t.Fatalf("QMPClass = %q (%v)", qerr.QMPClass, err)
	}

	// Arguments as a struct, a map, a json.RawMessage; nil maps mean none.
	type hmp struct {
		CommandLine string `json:"command-line"`
	}
	for _, args := range []any{
		hmp{CommandLine: "info version"},
		&hmp{CommandLine: "info version"},
		map[string]any{"command-line": "info version"},
		json.RawMessage(` {"command-line": "info version"} `),
	} {
		ret, err := m.Command(ctx, "human-monitor-command", args)
		if err != nil {
			t.Fatalf("human-monitor-command with %#v: %v", args, err)
		}
		var text string
		if err := json.Unmarshal(ret, &text); err != nil || !regexp.MustCompile(`\d+\.\d+\.\d+`).MatchString(text) {
			t.Fatalf("human-monitor-command returned %s (%v)", ret, err)
		}
	}
	var nilMap map[string]any
	var nilPtr *hmp
	for _, args := range []any{nil, nilMap, nilPtr, json.RawMessage("null")} {
		if _, err := m.Command(ctx, "query-status", args); err != nil {
			t.Fatalf("query-status with %#v: %v", args, err)
		}
	}
	// Arguments QEMU does not know are QEMU's business.
	_, err = m.Command(ctx, "query-status", map[string]int{"bogus": 1})
	qmError(t, err, qemumachine.StatusCommand, qemumachine.ErrCommand)
}

func TestStopContEvents(t *testing.T) {
	m := launchedNone(t)
	ctx := timeout(t, 10*time.Second)
	if _, err := m.Command(ctx, "stop", nil); err != nil {
		t.Fatalf("stop: %v", err)
	}
	ev, err := m.EventWait(ctx, "STOP", nil)
	if err != nil {
		t.Fatalf("STOP: %v", err)
	}
	if eventName(t, ev) != "STOP" {
		t.Fatalf("got %s", ev)
	}
	if _, ok := decode(t, ev)["timestamp"]; !ok {
		t.Fatalf("event without timestamp: %s", ev)
	}
	ret, _ := m.Command(ctx, "query-status", nil)
	if decode(t, ret)["running"] != false {
		t.Fatalf("query-status after stop: %s", ret)
	}
	if _, err := m.Command(ctx, "cont", nil); err != nil {
		t.Fatalf("cont: %v", err)
	}
	if ev, err := m.EventWait(ctx, "RESUME", nil); err != nil || eventName(t, ev) != "RESUME" {
		t.Fatalf("RESUME: %s, %v", ev, err)
	}

	// A null in the match is a wildcard: any reason, as long as there is one.
	if _, err := m.Command(ctx, "system_reset", nil); err != nil {
		t.Fatalf("system_reset: %v", err)
	}
	ev, err = m.EventWait(ctx, "", map[string]any{"event": "RESET", "data": map[string]any{"reason": nil}})
	if err != nil {
		t.Fatalf("RESET with a wildcard reason: %v", err)
	}
	data, _ := decode(t, ev)["data"].(map[string]any)
	if data["reason"] != "host-qmp-system-reset" || data["guest"] != false {
		t.Fatalf("RESET event: %s", ev)
	}
	// A wildcard still requires the member.
	if _, err := m.Command(ctx, "system_reset", nil); err != nil {
		t.Fatalf("system_reset: %v", err)
	}
	_, err = m.EventWait(timeout(t, 200*time.Millisecond), "RESET", map[string]any{"data": map[string]any{"nosuch": nil}})
	qmError(t, err, qemumachine.StatusTimeout, qemumachine.ErrTimeout)
	if ev, err := m.EventGet(ctx); err != nil || eventName(t, ev) != "RESET" {
		t.Fatalf("EventGet: %s, %v", ev, err)
	}
	if events, err := m.EventsTake(); err != nil || len(events) != 0 {
		t.Fatalf("EventsTake = %s, %v; want none", events, err)
	}
	if n, err := m.EventsDropped(); err != nil || n != 0 {
		t.Fatalf("EventsDropped = %d, %v", n, err)
	}
}

func TestEventsWaitFilters(t *testing.T) {
	m := launchedNone(t)
	ctx := timeout(t, 10*time.Second)
	for _, cmd := range []string{"stop", "cont", "system_reset"} {
		if _, err := m.Command(ctx, cmd, nil); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
	}
	if _, err := m.EventWait(ctx, "RESET", nil); err != nil { // all three have arrived
		t.Fatalf("RESET: %v", err)
	}
	// Not the oldest event (STOP), but the first one passing a filter.
	ev, err := m.EventsWait(ctx, []qemumachine.EventFilter{
		{Name: "NO-SUCH-EVENT"},
		{Name: "RESUME", Match: map[string]any{"event": "RESUME"}},
	})
	if err != nil || eventName(t, ev) != "RESUME" {
		t.Fatalf("EventsWait: %s, %v", ev, err)
	}
	// A filter without a name, matching on contents only.
	if _, err := m.Command(ctx, "system_reset", nil); err != nil {
		t.Fatalf("system_reset: %v", err)
	}
	ev, err = m.EventsWait(ctx, []qemumachine.EventFilter{
		{Name: "STOP", Match: map[string]any{"data": map[string]any{"nosuch": 1}}},
		{Match: json.RawMessage(`{"data": {"reason": "host-qmp-system-reset"}}`)},
	})
	if err != nil || eventName(t, ev) != "RESET" {
		t.Fatalf("EventsWait by contents: %s, %v", ev, err)
	}
	// Nothing matches: a timeout that consumes nothing.
	_, err = m.EventsWait(timeout(t, 100*time.Millisecond), []qemumachine.EventFilter{{Name: "NOPE"}, {Name: "NEVER"}})
	qmError(t, err, qemumachine.StatusTimeout, qemumachine.ErrTimeout)
	// A filter matching anything takes the oldest event.
	ev, err = m.EventsWait(ctx, []qemumachine.EventFilter{{}})
	if err != nil || eventName(t, ev) != "STOP" {
		t.Fatalf("EventsWait(any): %s, %v", ev, err)
	}
	events, err := m.EventsTake()
	if err != nil || len(events) != 0 {
		t.Fatalf("EventsTake: %s, %v", events, err)
	}
}

func TestDeadlines(t *testing.T) {
	m := launchedNone(t)
	ctx := timeout(t, 10*time.Second)
	if _, err := m.Command(ctx, "stop", nil); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := m.EventWait(ctx, "STOP", nil); err != nil {
		t.Fatalf("STOP: %v", err)
	}
	if _, err := m.Command(ctx, "cont", nil); err != nil {
		t.Fatalf("cont: %v", err)
	}
	if _, err := m.EventWait(ctx, "", map[string]any{"event": "RESUME"}); err != nil {
		t.Fatalf("RESUME: %v", err)
	}
	// Queue one event to check that nothing below consumes it.
	if _, err := m.Command(ctx, "stop", nil); err != nil {
		t.Fatalf("stop: %v", err)
	}
	expired, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	start := time.Now()
	for _, call := range []func() error{
		func() error { _, err := m.EventWait(expired, "NEVER", nil); return err },
		func() error { _, err := m.EventWait(expired, "STOP", nil); return err }, // not even a queued one
		func() error { _, err := m.EventsWait(expired, []qemumachine.EventFilter{{}}); return err },
		func() error { _, err := m.EventGet(expired); return err },
		func() error { _, err := m.Command(expired, "query-status", nil); return err },
		func() error { _, err := m.QMP(expired, "query-status", nil); return err },
		func() error { return m.Wait(expired) },
		func() error { _, err := m.ConsoleWait(expired, "x", ""); return err },
		func() error { _, err := m.ConsoleExec(expired, "x", "y", ""); return err },
	} {
		err := call()
		qmError(t, err, qemumachine.StatusTimeout, qemumachine.ErrTimeout)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%v is not context.DeadlineExceeded", err)
		}
	}
	if elapsed := time.Since(start); elapsed > 500*time.Millisecond {
		t.Fatalf("expired deadlines took %v", elapsed)
	}

	// Short deadlines: a real wait in C, rounded up to whole milliseconds.
	for _, d := range []time.Duration{time.Nanosecond, 30 * time.Millisecond, 250 * time.Millisecond} {
		start := time.Now()
		_, err := m.EventWait(timeout(t, d), "NEVER", nil)
		elapsed := time.Since(start)
		qerr := qmError(t, err, qemumachine.StatusTimeout, qemumachine.ErrTimeout)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%v is not context.DeadlineExceeded", err)
		}
		if elapsed < d || elapsed > d+time.Second {
			t.Fatalf("a %v deadline returned after %v", d, elapsed)
		}
		if d == 250*time.Millisecond {
			// A wait longer than a slice reports the whole budget.
			withinBudget(t, qerr.Message, 250*time.Millisecond)
			contains(t, "the timeout message", qerr.Message, "1 other event is queued")
		}
	}
	start = time.Now()
	_, err := m.Command(timeout(t, time.Nanosecond), "query-status", nil)
	if err != nil && !errors.Is(err, qemumachine.ErrTimeout) {
		t.Fatalf("query-status with a 1 ns deadline: %v", err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("a 1 ns deadline took more than a second")
	}

	// Cancelled before the call: ctx.Err() itself.
	cancelled, cancelNow := context.WithCancel(context.Background())
	cancelNow()
	if _, err := m.EventWait(cancelled, "STOP", nil); err != context.Canceled {
		t.Fatalf("EventWait with a cancelled context: %v", err)
	}
	if _, err := m.Command(cancelled, "query-status", nil); err != context.Canceled {
		t.Fatalf("Command with a cancelled context: %v", err)
	}

	// Cancelled during the wait: the wait ends soon after.
	waiting, cancelLater := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancelLater)
	start = time.Now()
	_, err = m.EventWait(waiting, "NEVER", nil)
	if err != context.Canceled {
		t.Fatalf("EventWait cancelled during the wait: %v", err)
	}
	if elapsed := time.Since(start); elapsed < 300*time.Millisecond || elapsed > 2*time.Second {
		t.Fatalf("the cancelled wait returned after %v", elapsed)
	}
	// Same for a context with a (distant) deadline.
	waiting, cancelLater = context.WithTimeout(context.Background(), time.Hour)
	time.AfterFunc(200*time.Millisecond, cancelLater)
	if err := m.Wait(waiting); err != context.Canceled {
		t.Fatalf("Wait cancelled during the wait: %v", err)
	}
	if !m.IsRunning() {
		t.Fatal("a cancelled Wait stopped QEMU")
	}

	// The STOP event is still there.
	events, err := m.EventsTake()
	if err != nil || len(events) != 1 || eventName(t, events[0]) != "STOP" {
		t.Fatalf("EventsTake = %s, %v; want the STOP event", events, err)
	}
	if events, err := m.EventsTake(); err != nil || events == nil || len(events) != 0 {
		t.Fatalf("second EventsTake = %#v, %v; want an empty list", events, err)
	}
}

func TestLaunchFailure(t *testing.T) {
	m := noneMachine(t)
	if err := m.AddArgs("-bogus"); err != nil {
		t.Fatalf("AddArgs: %v", err)
	}
	err := m.Launch()
	qerr := qmError(t, err, qemumachine.StatusLaunch, qemumachine.ErrLaunch)
	contains(t, "the launch error", qerr.Message, "-bogus: invalid option")
	contains(t, "Error()", err.Error(), "-bogus: invalid option")
	if m.IsRunning() || m.Pid() != -1 {
		t.Fatal("running after a failed launch")
	}
	if code, err := m.ExitCode(); err != nil || code != 1 {
		t.Fatalf("ExitCode after the failed launch = %d, %v; want 1", code, err)
	}
	if log, err := m.Log(); err != nil || !strings.Contains(log, "-bogus: invalid option") {
		t.Fatalf("Log = %q, %v", log, err)
	}

	missing, err := qemumachine.New("/nonexistent/qemu-system-x86_64")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer missing.Close()
	qmError(t, missing.Launch(), qemumachine.StatusLaunch, qemumachine.ErrLaunch)

	// No greeting within the launch timeout.
	slow := noneMachine(t)
	if err := slow.AddWrapperArgs("sh", "-c", "exec sleep 10"); err != nil {
		t.Fatalf("AddWrapperArgs: %v", err)
	}
	if err := slow.SetLaunchTimeout(300 * time.Millisecond); err != nil {
		t.Fatalf("SetLaunchTimeout: %v", err)
	}
	start := time.Now()
	qmError(t, slow.Launch(), qemumachine.StatusLaunch, qemumachine.ErrLaunch)
	if elapsed := time.Since(start); elapsed < 300*time.Millisecond || elapsed > 5*time.Second {
		t.Fatalf("the launch timeout of 300 ms took %v", elapsed)
	}
	if slow.IsRunning() {
		t.Fatal("running after a launch timeout")
	}
}

func TestConfiguration(t *testing.T) {
	base := t.TempDir()
	logDir := t.TempDir()
	m := noneMachine(t)
	for _, err := range []error{
		m.SetName("go-config"),
		m.SetBaseTempDir(base),
		m.SetLogDir(logDir),
		m.SetLaunchTimeout(-1),
		m.SetLaunchTimeout(20 * time.Second),
		m.AddMonitorNull(),
		m.SetQMPEnabled(true),
	} {
		if err != nil {
			t.Fatalf("configuration: %v", err)
		}
	}
	if err := m.Launch(); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	dir, err := m.TempDir()
	if err != nil || filepath.Dir(dir) != base {
		t.Fatalf("TempDir = %q, %v; want a directory in %q", dir, err, base)
	}
	argv, _ := m.CommandLine()
	contains(t, "the command line", strings.Join(argv, " "), "-monitor null")
	if err := m.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := os.Stat(filepath.Join(logDir, "go-config.log")); err != nil {
		t.Fatalf("the log was not kept in the log directory: %v", err)
	}
}

func TestQMPDisabledAndWrapper(t *testing.T) {
	m := noneMachine(t)
	for _, err := range []error{
		m.SetQMPEnabled(false),
		m.AddMonitorNull(),
		m.AddWrapperArgs("env", "QM_GO_WRAPPED=1"),
	} {
		if err != nil {
			t.Fatalf("configuration: %v", err)
		}
	}
	if err := m.Launch(); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	if m.Pid() <= 0 {
		t.Fatal("no pid")
	}
	_, err := m.Command(timeout(t, time.Second), "query-status", nil)
	qerr := qmError(t, err, qemumachine.StatusAddDevice, qemumachine.ErrAddDevice)
	contains(t, "the message", qerr.Message, "QMP is disabled")
	_, err = m.EventWait(timeout(t, time.Second), "STOP", nil)
	qmError(t, err, qemumachine.StatusAddDevice, qemumachine.ErrAddDevice)
	argv, err := m.CommandLine()
	if err != nil || len(argv) < 3 || argv[0] != "env" || argv[1] != "QM_GO_WRAPPED=1" {
		t.Fatalf("CommandLine = %q, %v", argv, err)
	}
	time.Sleep(200 * time.Millisecond) // let QEMU install its SIGTERM handler
	if err := m.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if code, err := m.ExitCode(); err != nil || code != 0 {
		t.Fatalf("ExitCode = %d, %v", code, err)
	}
}

func TestFDsMonitorsTrace(t *testing.T) {
	scratch := t.TempDir()
	ctx := timeout(t, 20*time.Second)

	// -add-fd at launch and a QMP trace.
	f, err := os.Create(filepath.Join(scratch, "data"))
	if err != nil {
		t.Fatal(err)
	}
	m := noneMachine(t)
	if err := m.AddFD(int(f.Fd()), 1, "go-test,file", ""); err != nil {
		t.Fatalf("AddFD: %v", err)
	}
	// opts are appended as they are; QEMU 7.2's -add-fd knows no option
	// beyond fd, set and opaque (not even the header's "read-only=on").
	withOpts := noneMachine(t)
	if err := withOpts.AddFD(int(f.Fd()), 2, "o", "read-only=on"); err != nil {
		t.Fatalf("AddFD: %v", err)
	}
	f.Close() // the library has its own duplicates
	qerr := qmError(t, withOpts.Launch(), qemumachine.StatusLaunch, qemumachine.ErrLaunch)
	contains(t, "the launch error", qerr.Message, "fd=")
	contains(t, "the launch error", qerr.Message, ",set=2,opaque=o,read-only=on")
	trace := filepath.Join(scratch, "qmp.trace")
	if err := m.SetQMPTrace(trace); err != nil {
		t.Fatalf("SetQMPTrace: %v", err)
	}
	if err := m.Launch(); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	ret, err := m.Command(ctx, "query-fdsets", nil)
	if err != nil {
		t.Fatalf("query-fdsets: %v", err)
	}
	contains(t, "query-fdsets", string(ret), `"go-test,file"`)

	// getfd over the default socketpair.
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	if err := m.SendFD(int(devnull.Fd()), "devnull"); err != nil {
		t.Fatalf("SendFD: %v", err)
	}
	if _, err := m.Command(ctx, "closefd", map[string]string{"fdname": "devnull"}); err != nil {
		t.Fatalf("closefd: %v", err)
	}
	qmError(t, m.SendFD(-1, "x"), qemumachine.StatusInvalidArgument, qemumachine.ErrInvalidArgument)
	if err := m.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	text, err := os.ReadFile(trace)
	if err != nil {
		t.Fatalf("the trace: %v", err)
	}
	contains(t, "the QMP trace", string(text), ` >> {"execute":"query-fdsets"`)
	contains(t, "the QMP trace", string(text), ` << {"QMP"`)

	// A Unix-socket monitor.
	sock := filepath.Join(scratch, "qmp.sock")
	u := noneMachine(t)
	if err := u.SetMonitorUnix(sock); err != nil {
		t.Fatalf("SetMonitorUnix: %v", err)
	}
	if err := u.Launch(); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	if st, err := os.Stat(sock); err != nil || st.Mode()&os.ModeSocket == 0 {
		t.Fatalf("the monitor socket: %v", err)
	}
	if err := u.SendFD(int(devnull.Fd()), "devnull"); err != nil {
		t.Fatalf("SendFD over a Unix monitor: %v", err)
	}
	if _, err := u.MonitorPort(); err == nil {
		t.Fatal("MonitorPort of a Unix monitor succeeded")
	}
	if err := u.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("the monitor socket survived the shutdown: %v", err)
	}

	// A TCP monitor on a port the system picks.
	tcp := noneMachine(t)
	if err := tcp.SetMonitorTCP("127.0.0.1", 0); err != nil {
		t.Fatalf("SetMonitorTCP: %v", err)
	}
	if err := tcp.Launch(); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	port, err := tcp.MonitorPort()
	if err != nil || port <= 0 {
		t.Fatalf("MonitorPort = %d, %v", port, err)
	}
	if _, err := tcp.Command(ctx, "query-status", nil); err != nil {
		t.Fatalf("query-status over TCP: %v", err)
	}
	qerr = qmError(t, tcp.SendFD(int(devnull.Fd()), "x"), qemumachine.StatusAddDevice, qemumachine.ErrAddDevice)
	contains(t, "the message", qerr.Message, "Unix")
	if err := tcp.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestEventMatch(t *testing.T) {
	event := json.RawMessage(`{"event": "X", "data": {"a": 1, "b": {"c": [1, 2]}}}`)
	for _, c := range []struct {
		match any
		want  bool
	}{
		{map[string]any{}, true},
		{map[string]any{"event": "X"}, true},
		{map[string]any{"event": "Y"}, false},
		{map[string]any{"data": map[string]any{"b": nil}}, true},
		{map[string]any{"data": map[string]any{"z": nil}}, false},
		{map[string]any{"data": map[string]any{"b": map[string]any{"c": []int{1, 2}}}}, true},
		{json.RawMessage(`{"data": {"a": 2}}`), false},
	} {
		got, err := qemumachine.EventMatch(event, c.match)
		if err != nil || got != c.want {
			t.Errorf("EventMatch(%s, %v) = %v, %v; want %v", event, c.match, got, err, c.want)
		}
	}
	_, err := qemumachine.EventMatch(json.RawMessage(`{`), nil)
	qmError(t, err, qemumachine.StatusInvalidArgument, qemumachine.ErrInvalidArgument)
}
