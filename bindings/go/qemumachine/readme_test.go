package qemumachine_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// The README's program (examples/readme) runs and exits 0.
func TestReadmeExample(t *testing.T) {
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	cmd := exec.Command(goTool, "run", "./examples/readme")
	cmd.Dir = filepath.Join(repoRoot(t), "bindings", "go")
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go run ./examples/readme: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	contains(t, "the output", stdout.String(), `query-status: {`)
	contains(t, "the output", stdout.String(), `"running": true`)
	contains(t, "the output", stdout.String(), `event: {"event":"STOP"`)
}
