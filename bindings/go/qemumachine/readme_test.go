package qemumachine_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// runExample runs "go run ./examples/NAME ARGS..." and returns its
// standard output; the example must exit 0.
func runExample(t *testing.T, name string, args ...string) string {
	t.Helper()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	cmd := exec.Command(goTool, append([]string{"run", "./examples/" + name}, args...)...)
	cmd.Dir = filepath.Join(repoRoot(t), "bindings", "go")
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go run ./examples/%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// The README's program (examples/readme) runs and exits 0.
func TestReadmeExample(t *testing.T) {
	t.Parallel()
	out := runExample(t, "readme")
	contains(t, "the output", out, `query-status: {`)
	contains(t, "the output", out, `"running": true`)
	contains(t, "the output", out, `event: {"event":"STOP"`)
}

func TestListenExample(t *testing.T) {
	t.Parallel()
	out := runExample(t, "listen")
	if !regexp.MustCompile(`^STOP \nRESUME \nSHUTDOWN \{"guest":\s*false,\s*"reason":\s*"host-qmp-quit"\}\n$`).MatchString(out) {
		t.Fatalf("the output of examples/listen:\n%s", out)
	}
}

func TestAgentExample(t *testing.T) {
	t.Parallel()
	out := runExample(t, "agent", guest(t))
	if want := "exit 0: " + kernelRelease(t) + "\n"; out != want {
		t.Fatalf("the output of examples/agent is %q, want %q", out, want)
	}
}

func TestQtestExample(t *testing.T) {
	t.Parallel()
	out := runExample(t, "qtest", qtestAccel(t))
	m := regexp.MustCompile(`^virtual time 5s: seconds (\d+) -> (\d+)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the output of examples/qtest: %q", out)
	}
	before, _ := strconv.Atoi(m[1])
	after, _ := strconv.Atoi(m[2])
	if d := (after - before + 60) % 60; d < 4 || d > 6 {
		t.Fatalf("5 virtual seconds moved the RTC from %d to %d", before, after)
	}
}
