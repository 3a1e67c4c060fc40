package qemumachinetest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"qemu-machine/bindings/go/qemumachine"
	"qemu-machine/bindings/go/qemumachinetest"
)

func qemuBinary() string {
	if q := os.Getenv("QEMU"); q != "" {
		return q
	}
	return "qemu-system-x86_64"
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// New launches; the cleanup shuts QEMU down and frees the machine, and a
// passing test saves nothing.
func TestNewAndCleanup(t *testing.T) {
	var m *qemumachine.Machine
	var pid int
	t.Run("inner", func(t *testing.T) {
		m = qemumachinetest.New(t, qemuBinary(),
			qemumachinetest.MachineType("none"),
			qemumachinetest.Args("-accel", "tcg", "-nodefaults"),
			qemumachinetest.Env("QM_GO_TESTENV", "yes"),
			qemumachinetest.Name("go-testpkg"))
		if !m.IsRunning() {
			t.Fatal("New did not launch")
		}
		pid = m.Pid()
		environ, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		found := false
		for _, entry := range strings.Split(string(environ), "\x00") {
			found = found || entry == "QM_GO_TESTENV=yes"
		}
		if !found {
			t.Fatalf("QEMU's environment lacks the Env option (%v)", err)
		}
		if _, err := m.Command(ctx(t), "query-status", nil); err != nil {
			t.Fatalf("query-status: %v", err)
		}
	})
	if syscall.Kill(pid, 0) == nil {
		t.Fatalf("QEMU (pid %d) outlived its test", pid)
	}
	if _, err := m.Log(); err != qemumachine.ErrClosed {
		t.Fatalf("the machine was not freed: %v", err)
	}
	code := -100
	t.Run("no launch", func(t *testing.T) {
		m = qemumachinetest.New(t, qemuBinary(), qemumachinetest.NoLaunch(),
			qemumachinetest.Args("-machine", "none", "-accel", "tcg", "-nodefaults"))
		if m.IsRunning() {
			t.Fatal("NoLaunch launched")
		}
		if err := m.Launch(); err != nil {
			t.Fatalf("Launch: %v", err)
		}
		t.Cleanup(func() { code, _ = m.ExitCode() }) // runs after New's
	})
	if code != 0 {
		t.Fatalf("the cleanup's shutdown ended with exit code %d", code)
	}
}

// Console, Agent and Qtest set up their channels (on a pc that does not
// run: -S).
func TestChannelOptions(t *testing.T) {
	m := qemumachinetest.New(t, qemuBinary(),
		qemumachinetest.MachineType("pc"),
		qemumachinetest.Args("-accel", "tcg", "-nodefaults", "-S"),
		qemumachinetest.Console("", 0),
		qemumachinetest.Agent("isa-serial"),
		qemumachinetest.Configure(func(m *qemumachine.Machine) error { return m.AddMonitorNull() }))
	argv, err := m.CommandLine()
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(argv, " ")
	for _, want := range []string{"-serial chardev:console", "isa-serial,chardev=", "-monitor null"} {
		if !strings.Contains(line, want) {
			t.Errorf("the command line lacks %q: %s", want, line)
		}
	}
	if _, err := m.ConsoleRead(); err != nil {
		t.Errorf("ConsoleRead: %v", err)
	}
	// Not a machine under qtest.
	if _, err := m.Qtest().Raw("endianness"); !errors.Is(err, qemumachine.ErrAddDevice) {
		t.Errorf("qtest without the Qtest option: %v", err)
	}
}

// A configuration error fails the test at New, before any launch.
func TestNewFailures(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Run("bad option", func(t *testing.T) {
			qemumachinetest.New(t, qemuBinary(), qemumachinetest.Env("", "x"))
			t.Error("New returned")
		})
		t.Run("launch", func(t *testing.T) {
			qemumachinetest.New(t, qemuBinary(), qemumachinetest.Args("-no-such-option"))
			t.Error("New returned")
		})
		return
	}
	out, dir := runChild(t, "TestNewFailures", true)
	for _, want := range []string{
		"configuring machine-1: Env: qemumachine: ",
		"launching machine-1: qemumachine: ",
		"-no-such-option: invalid option",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "New returned") {
		t.Errorf("New returned after a failure:\n%s", out)
	}
	// The failed launch left artifacts: QEMU's complaint in its log.
	paths := artifactPaths(t, out)
	var log []byte
	for _, p := range paths {
		if filepath.Base(p) == "qemu.log" && strings.Contains(p, "launch") {
			log, _ = os.ReadFile(p)
		}
	}
	if !bytes.Contains(log, []byte("-no-such-option")) {
		t.Errorf("no qemu.log with the error among %v", paths)
	}
	if !strings.HasPrefix(paths[0], dir) {
		t.Errorf("artifacts outside %s: %v", dir, paths)
	}
}

// childEnv enables the deliberately failing tests in a child process.
const childEnv = "QM_GO_TEST_CHILD"

// runChild runs test of this test binary in a child process with childEnv
// set, with QM_ARTIFACTS_DIR (useEnv) or without it (TMPDIR then points
// into the parent's temporary directory, so the kept directories are
// removed with it), and expects it to fail. It returns the output and the
// directory the artifacts should be in.
func runChild(t *testing.T, test string, useEnv bool) (string, string) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	if useEnv {
		cmd.Env = append(cmd.Env, qemumachinetest.ArtifactsEnv+"="+dir)
	} else {
		cmd.Env = append(cmd.Env, qemumachinetest.ArtifactsEnv+"=", "TMPDIR="+dir)
	}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("the child test did not fail as it should (%v):\n%s", err, out)
	}
	return string(out), dir
}

// artifactPaths are the files the output lists as artifacts.
func artifactPaths(t *testing.T, out string) []string {
	t.Helper()
	var paths []string
	for _, m := range regexp.MustCompile(`(?m)^\s+(/\S+) \(\d+ bytes\)$`).FindAllStringSubmatch(out, -1) {
		paths = append(paths, m[1])
	}
	if len(paths) == 0 {
		t.Fatalf("the output lists no artifacts:\n%s", out)
	}
	return paths
}

// A failing test saves the artifacts of its machine and logs their paths;
// a passing one saves nothing. Run in a child process (the test binary
// itself) so that the failure is not this test's.
func TestArtifactsOfAFailedTest(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Run("fails", func(t *testing.T) {
			m := qemumachinetest.New(t, qemuBinary(),
				qemumachinetest.MachineType("none"),
				qemumachinetest.Args("-accel", "tcg", "-nodefaults"))
			if _, err := m.Command(ctx(t), "stop", nil); err != nil {
				t.Fatal(err)
			}
			m2 := qemumachinetest.New(t, qemuBinary(), qemumachinetest.Name("second"),
				qemumachinetest.Args("-machine", "none", "-accel", "tcg", "-nodefaults"))
			if _, err := m2.Command(ctx(t), "system_reset", nil); err != nil {
				t.Fatal(err)
			}
			t.Error("a deliberate failure")
		})
		t.Run("passes", func(t *testing.T) {
			qemumachinetest.New(t, qemuBinary(), qemumachinetest.MachineType("none"),
				qemumachinetest.Args("-accel", "tcg", "-nodefaults"))
		})
		return
	}
	for _, useEnv := range []bool{true, false} {
		out, dir := runChild(t, "TestArtifactsOfAFailedTest", useEnv)
		if !strings.Contains(out, "a deliberate failure") || !strings.Contains(out, "--- PASS: TestArtifactsOfAFailedTest/passes") {
			t.Fatalf("unexpected child output:\n%s", out)
		}
		paths := artifactPaths(t, out)
		byMachine := map[string]map[string]string{}
		for _, p := range paths {
			if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
				t.Fatalf("artifact %s is not under %s", p, dir)
			}
			text, err := os.ReadFile(p)
			if err != nil {
				t.Fatalf("artifact %s: %v", p, err)
			}
			machine := filepath.Base(filepath.Dir(p))
			if byMachine[machine] == nil {
				byMachine[machine] = map[string]string{}
			}
			byMachine[machine][filepath.Base(p)] = string(text)
		}
		if len(byMachine) != 2 {
			t.Fatalf("artifacts of %d machines (%v), want 2 (the passing test saves none):\n%s", len(byMachine), paths, out)
		}
		if useEnv {
			for _, machine := range []string{"machine-1", "second"} {
				want := filepath.Join(dir, "TestArtifactsOfAFailedTest", "fails", machine)
				if !strings.Contains(out, "in "+want+":") {
					t.Fatalf("no artifacts in %s:\n%s", want, out)
				}
			}
		}
		for machine, files := range byMachine {
			for _, name := range []string{"qemu.log", "events.jsonl", "command-line.txt", "status.txt"} {
				if _, ok := files[name]; !ok {
					t.Fatalf("machine %s lacks %s: %v", machine, name, paths)
				}
			}
			for _, name := range []string{"events.jsonl", "command-line.txt", "status.txt"} {
				if files[name] == "" {
					t.Fatalf("%s of %s is empty", name, machine)
				}
			}
			if !strings.Contains(files["status.txt"], "exited with status 0") {
				t.Fatalf("status.txt of %s: %s", machine, files["status.txt"])
			}
			var names []string
			for _, line := range strings.Split(strings.TrimSpace(files["events.jsonl"]), "\n") {
				var ev struct{ Event string }
				if err := json.Unmarshal([]byte(line), &ev); err != nil {
					t.Fatalf("events.jsonl of %s: %v", machine, err)
				}
				names = append(names, ev.Event)
			}
			want := "STOP SHUTDOWN"
			if strings.Contains(machine, "second") {
				want = "RESET SHUTDOWN"
			}
			if strings.Join(names, " ") != want {
				t.Fatalf("events of %s: %v, want %s", machine, names, want)
			}
		}
	}
}

// An abnormal end of QEMU fails the test, unless allowed.
func TestAbnormalShutdown(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Run("killed", func(t *testing.T) {
			m := qemumachinetest.New(t, qemuBinary(), qemumachinetest.MachineType("none"),
				qemumachinetest.Args("-accel", "tcg", "-nodefaults"))
			syscall.Kill(m.Pid(), syscall.SIGKILL)
		})
		t.Run("allowed", func(t *testing.T) {
			m := qemumachinetest.New(t, qemuBinary(), qemumachinetest.MachineType("none"),
				qemumachinetest.Args("-accel", "tcg", "-nodefaults"), qemumachinetest.AllowAbnormalShutdown())
			syscall.Kill(m.Pid(), syscall.SIGKILL)
		})
		return
	}
	out, _ := runChild(t, "TestAbnormalShutdown", true)
	if !strings.Contains(out, "--- FAIL: TestAbnormalShutdown/killed") || !strings.Contains(out, "--- PASS: TestAbnormalShutdown/allowed") {
		t.Fatalf("unexpected child output:\n%s", out)
	}
	if !strings.Contains(out, "shutdown of machine-1: qemumachine: ") || !strings.Contains(out, "signal 9") {
		t.Fatalf("the output does not say how QEMU ended:\n%s", out)
	}
	artifactPaths(t, out)
}

func TestProbeAndSkip(t *testing.T) {
	if !qemumachinetest.Probe(t, qemuBinary(), qemumachine.ProbeDevice, "isa-serial") {
		t.Fatal("no isa-serial")
	}
	for _, c := range []struct {
		skip    func(t *testing.T)
		skipped bool
	}{
		{func(t *testing.T) { qemumachinetest.SkipUnlessMachine(t, qemuBinary(), "pc") }, false},
		{func(t *testing.T) { qemumachinetest.SkipUnlessDevice(t, qemuBinary(), "isa-serial") }, false},
		{func(t *testing.T) { qemumachinetest.SkipUnlessAccel(t, qemuBinary(), "tcg") }, false},
		{func(t *testing.T) {
			qemumachinetest.SkipUnless(t, qemuBinary(), qemumachine.ProbeCommand, "query-status")
		}, false},
		{func(t *testing.T) { qemumachinetest.SkipUnlessDevice(t, qemuBinary(), "no-such-device") }, true},
		{func(t *testing.T) { qemumachinetest.SkipUnlessMachine(t, qemuBinary(), "no-such-machine") }, true},
	} {
		reached, skipped := false, false
		t.Run("probe", func(t *testing.T) {
			defer func() { skipped = t.Skipped() }()
			c.skip(t)
			reached = true
		})
		if skipped != c.skipped || reached == c.skipped {
			t.Errorf("skipped %v, reached %v; want skipped %v", skipped, reached, c.skipped)
		}
	}
}
