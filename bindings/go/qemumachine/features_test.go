package qemumachine_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"qemu-machine/bindings/go/qemumachine"
)

// environOf is the environment of process pid.
func environOf(t testing.TB, pid int) []string {
	t.Helper()
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		t.Fatalf("the environment of QEMU: %v", err)
	}
	return strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
}

func hasEnv(environ []string, entry string) bool {
	for _, e := range environ {
		if e == entry || (!strings.Contains(entry, "=") && strings.HasPrefix(e, entry+"=")) {
			return true
		}
	}
	return false
}

func TestSetEnv(t *testing.T) {
	t.Setenv("QM_GO_INHERITED", "1")
	t.Setenv("QM_GO_REMOVED", "1")
	m := noneMachine(t)
	for _, err := range []error{
		m.SetEnv("QM_GO_SET", "first"),
		m.SetEnv("QM_GO_SET", "a value with = and spaces"), // replaces
		m.SetEnv("QM_GO_EMPTY", ""),
		m.UnsetEnv("QM_GO_REMOVED"),
		m.SetEnv("QM_GO_UNSET_LATER", "x"),
		m.UnsetEnv("QM_GO_UNSET_LATER"),
	} {
		if err != nil {
			t.Fatalf("SetEnv: %v", err)
		}
	}
	if err := m.Launch(); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	env := environOf(t, m.Pid())
	for entry, want := range map[string]bool{
		"QM_GO_SET=a value with = and spaces": true,
		"QM_GO_SET=first":                     false,
		"QM_GO_EMPTY=":                        true,
		"QM_GO_INHERITED=1":                   true,
		"QM_GO_REMOVED":                       false,
		"QM_GO_UNSET_LATER":                   false,
	} {
		if hasEnv(env, entry) != want {
			t.Errorf("QEMU's environment has %q: %v, want %v", entry, !want, want)
		}
	}
	qmError(t, m.SetEnv("QM_GO_LATE", "x"), qemumachine.StatusState, qemumachine.ErrState)
	if err := m.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestGreeting(t *testing.T) {
	m := noneMachine(t)
	_, err := m.Greeting()
	qmError(t, err, qemumachine.StatusState, qemumachine.ErrState)
	if err := m.Launch(); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	text, err := m.Greeting()
	if err != nil {
		t.Fatalf("Greeting: %v", err)
	}
	var greeting struct {
		QMP struct {
			Version struct {
				QEMU struct{ Major, Minor, Micro int } `json:"qemu"`
			} `json:"version"`
			Capabilities []string `json:"capabilities"`
		} `json:"QMP"`
	}
	if err := json.Unmarshal(text, &greeting); err != nil || greeting.QMP.Version.QEMU.Major < 2 {
		t.Fatalf("Greeting = %s (%v)", text, err)
	}
	if err := m.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// Still there after the run, until the next launch.
	if again, err := m.Greeting(); err != nil || !bytes.Equal(again, text) {
		t.Fatalf("Greeting after the shutdown = %s, %v", again, err)
	}
}

// hasEvent requires an event named name among JSON lines.
func hasEvent(t testing.TB, jsonl, name string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(jsonl), "\n") {
		if eventName(t, []byte(line)) == name {
			return
		}
	}
	t.Fatalf("no %s event in:\n%s", name, jsonl)
}

func TestSaveArtifacts(t *testing.T) {
	m := noneMachine(t)
	dir := filepath.Join(t.TempDir(), "artifacts", "nested")
	qmError(t, m.SaveArtifacts(dir), qemumachine.StatusState, qemumachine.ErrState)
	if err := m.SetName("go-artifacts"); err != nil {
		t.Fatal(err)
	}
	if err := m.Launch(); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	ctx := timeout(t, 10*time.Second)
	if _, err := m.Command(ctx, "stop", nil); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := m.EventWait(ctx, "STOP", nil); err != nil { // taken, still saved
		t.Fatalf("STOP: %v", err)
	}
	if err := m.SaveArtifacts(dir); err != nil {
		t.Fatalf("SaveArtifacts while running: %v", err)
	}
	read := func(name string) string {
		t.Helper()
		text, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("artifact %s: %v", name, err)
		}
		return string(text)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("the artifacts directory: %v, %v", st, err)
	}
	hasEvent(t, read("events.jsonl"), "STOP")
	contains(t, "command-line.txt", read("command-line.txt"), "-machine")
	contains(t, "status.txt", read("status.txt"), "running")
	read("qemu.log")
	if err := m.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := m.SaveArtifacts(dir); err != nil {
		t.Fatalf("SaveArtifacts after the shutdown: %v", err)
	}
	contains(t, "status.txt", read("status.txt"), "exited with status 0")
	hasEvent(t, read("events.jsonl"), "SHUTDOWN")

	// A directory that cannot be created.
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	qmError(t, m.SaveArtifacts(filepath.Join(blocker, "sub")), qemumachine.StatusIO, qemumachine.ErrIO)
}

func TestProbe(t *testing.T) {
	for _, c := range []struct {
		what, name string
		want       bool
	}{
		{qemumachine.ProbeMachine, "pc", true},
		{qemumachine.ProbeMachine, "none", true},
		{qemumachine.ProbeMachine, "no-such-machine", false},
		{qemumachine.ProbeDevice, "isa-serial", true},
		{qemumachine.ProbeDevice, "virtio-serial-pci", true},
		{qemumachine.ProbeDevice, "no-such-device", false},
		{qemumachine.ProbeAccel, "tcg", true},
		{qemumachine.ProbeCPU, "qemu64", true},
		{qemumachine.ProbeCommand, "query-status", true},
		{qemumachine.ProbeCommand, "no-such-command", false},
	} {
		got, err := qemumachine.Probe(qemuBinary(), c.what, c.name, 30*time.Second)
		if err != nil || got != c.want {
			t.Errorf("Probe(%s, %s) = %v, %v; want %v", c.what, c.name, got, err, c.want)
		}
	}
	// Answers are kept: no QEMU is started again.
	start := time.Now()
	if ok, err := qemumachine.Probe(qemuBinary(), qemumachine.ProbeDevice, "isa-serial", 0); err != nil || !ok {
		t.Fatalf("a cached probe: %v, %v", ok, err)
	}
	if elapsed := time.Since(start); elapsed > 500*time.Millisecond {
		t.Fatalf("a cached probe took %v", elapsed)
	}
	_, err := qemumachine.Probe("/nonexistent/qemu", qemumachine.ProbeDevice, "x", 10*time.Second)
	qmError(t, err, qemumachine.StatusLaunch, qemumachine.ErrLaunch)
}

// migrationPair is a launched source and a destination waiting for an
// incoming migration, with mem of RAM; the source sends at most bandwidth
// bytes per second (0: QEMU's default).
func migrationPair(t *testing.T, mem string, bandwidth int) (*qemumachine.Machine, *qemumachine.Machine) {
	t.Helper()
	src := noneMachine(t)
	dst := noneMachine(t)
	for _, m := range []*qemumachine.Machine{src, dst} {
		if err := m.AddArgs("-m", mem); err != nil {
			t.Fatal(err)
		}
	}
	if err := dst.AddArgs("-incoming", "defer"); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*qemumachine.Machine{src, dst} {
		if err := m.Launch(); err != nil {
			t.Fatalf("Launch: %v", err)
		}
	}
	if bandwidth > 0 {
		_, err := src.Command(timeout(t, 10*time.Second), "migrate-set-parameters", map[string]int{"max-bandwidth": bandwidth})
		if err != nil {
			t.Fatalf("migrate-set-parameters: %v", err)
		}
	}
	return src, dst
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	src, dst := migrationPair(t, "32", 0)
	ctx := timeout(t, 30*time.Second)
	start := time.Now()
	if err := qemumachine.Migrate(ctx, src, dst); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	t.Logf("migrated in %v", time.Since(start))
	for m, want := range map[*qemumachine.Machine]string{src: "postmigrate", dst: "running"} {
		ret, err := m.Command(ctx, "query-status", nil)
		if err != nil || decode(t, ret)["status"] != want {
			t.Fatalf("query-status after the migration: %s, %v; want %s", ret, err, want)
		}
	}
	// Nothing to migrate into any more: the destination refuses.
	err := qemumachine.Migrate(ctx, src, dst)
	if err == nil {
		t.Fatal("a second migration into a running machine succeeded")
	}
	t.Logf("second migration: %v", err)
	for _, m := range []*qemumachine.Machine{src, dst} {
		if err := m.Shutdown(10 * time.Second); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	}
	// Not running: a state error; a closed machine: ErrClosed.
	qmError(t, qemumachine.Migrate(ctx, src, dst), qemumachine.StatusState, qemumachine.ErrState)
	dst.Close()
	if err := qemumachine.Migrate(ctx, src, dst); err != qemumachine.ErrClosed {
		t.Fatalf("Migrate into a closed machine: %v", err)
	}
	qmError(t, qemumachine.Migrate(ctx, nil, src), qemumachine.StatusInvalidArgument, qemumachine.ErrInvalidArgument)
}

// A migration that cannot complete in time, and one whose destination
// dies (512 MiB at 1 MiB/s: seconds).
func TestMigrateFailures(t *testing.T) {
	t.Parallel()
	src, dst := migrationPair(t, "512", 1<<20)
	start := time.Now()
	err := qemumachine.Migrate(timeout(t, 400*time.Millisecond), src, dst)
	qerr := qmError(t, err, qemumachine.StatusTimeout, qemumachine.ErrTimeout)
	contains(t, "the timeout message", qerr.Message, "source: active")
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("a 400 ms migration took %v", elapsed)
	}
	// A timeout leaves the migration running.
	ctx := timeout(t, 10*time.Second)
	if _, err := src.Command(ctx, "migrate_cancel", nil); err != nil {
		t.Fatalf("migrate_cancel: %v", err)
	}

	src, dst = migrationPair(t, "512", 1<<20)
	pid := dst.Pid()
	time.AfterFunc(200*time.Millisecond, func() { syscall.Kill(pid, syscall.SIGKILL) })
	start = time.Now()
	err = qemumachine.Migrate(timeout(t, 30*time.Second), src, dst)
	qerr = qmError(t, err, qemumachine.StatusDisconnected, qemumachine.ErrDisconnected)
	contains(t, "the message", qerr.Message, "destination: QEMU killed by signal 9")
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("the migration noticed the dead destination after %v", elapsed)
	}
}
