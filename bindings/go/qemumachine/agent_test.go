package qemumachine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"qemu-machine/bindings/go/qemumachine"
)

// kernelRelease is the release of the test guest's kernel (from the name
// of its package).
func kernelRelease(t testing.TB) string {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(guest(t), "kernel-package"))
	if err != nil {
		t.Fatalf("the guest's kernel package: %v", err)
	}
	return strings.TrimPrefix(strings.TrimSpace(string(text)), "linux-image-")
}

// noise is deterministic "random" bytes, every value included.
func noise(n int, seed uint64) []byte {
	x := seed | 1
	out := make([]byte, n)
	for i := range out {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		out[i] = byte(x)
	}
	return out
}

// agentGuest boots the test guest with an agent channel of deviceType and
// waits for the agent.
func agentGuest(t *testing.T, deviceType string) *qemumachine.Machine {
	t.Helper()
	m := guestMachine(t)
	if err := m.SetAgent(deviceType); err != nil {
		t.Fatalf("SetAgent(%q): %v", deviceType, err)
	}
	boot(t, m)
	start := time.Now()
	if err := m.Agent().WaitReady(timeout(t, 60*time.Second)); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	t.Logf("the agent answered %v after the prompt", time.Since(start))
	return m
}

// The guest agent of a real guest, on both channel types: one boot each,
// every check on it.
func TestAgent(t *testing.T) {
	for _, device := range []string{"", "isa-serial"} {
		device := device
		name := device
		if name == "" {
			name = "virtio-serial"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m := agentGuest(t, device)
			a := m.Agent()
			ctx := timeout(t, 60*time.Second)

			// A second handshake on a ready agent: one round trip.
			start := time.Now()
			if err := a.WaitReady(ctx); err != nil {
				t.Fatalf("WaitReady again: %v", err)
			}
			t.Logf("a handshake took %v", time.Since(start))

			r, err := a.Exec(ctx, []string{"uname", "-r"}, nil)
			if err != nil {
				t.Fatalf("Exec uname: %v", err)
			}
			if r.ExitCode != 0 || strings.TrimSpace(string(r.Stdout)) != kernelRelease(t) || len(r.Stderr) != 0 {
				t.Fatalf("uname -r: %+v", r)
			}
			r, err = a.Exec(ctx, []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, nil)
			if err != nil || r.ExitCode != 3 || string(r.Stdout) != "out\n" || string(r.Stderr) != "err\n" || r.Truncated {
				t.Fatalf("Exec with exit 3: %+v, %v", r, err)
			}
			r, err = a.Exec(ctx, []string{"sh", "-c", "kill -9 $$"}, nil)
			if err != nil || r.ExitCode != -9 {
				t.Fatalf("Exec killed by SIGKILL: %+v, %v", r, err)
			}
			input := []byte("any\x00bytes\xff\n")
			r, err = a.Exec(ctx, []string{"cat"}, input)
			if err != nil || !bytes.Equal(r.Stdout, input) {
				t.Fatalf("Exec cat with input: %+v, %v", r, err)
			}
			_, err = a.Exec(ctx, []string{"/no/such/program"}, nil)
			qmError(t, err, qemumachine.StatusCommand, qemumachine.ErrCommand)

			info, err := a.Command(ctx, "guest-info", nil)
			if err != nil {
				t.Fatalf("guest-info: %v", err)
			}
			var guestInfo struct {
				Version  string `json:"version"`
				Commands []struct {
					Name string `json:"name"`
				} `json:"supported_commands"`
			}
			if err := json.Unmarshal(info, &guestInfo); err != nil || guestInfo.Version == "" {
				t.Fatalf("guest-info returned %s (%v)", info, err)
			}
			found := false
			for _, c := range guestInfo.Commands {
				found = found || c.Name == "guest-exec"
			}
			if !found {
				t.Fatalf("guest-info lacks guest-exec: %s", info)
			}
			if ret, err := a.Command(ctx, "guest-ping", map[string]any{}); err != nil || string(ret) != "{}" {
				t.Fatalf("guest-ping: %s, %v", ret, err)
			}
			_, err = a.Command(ctx, "no-such-command", nil)
			qerr := qmError(t, err, qemumachine.StatusCommand, qemumachine.ErrCommand)
			if qerr.QMPClass != "CommandNotFound" {
				t.Fatalf("an unknown agent command: %v (class %q)", err, qerr.QMPClass)
			}

			// Files: binary content both ways, an empty file, a missing one.
			// Host-to-guest through an emulated UART is slow (about 8 KiB/s
			// under TCG), so the ISA port gets a small file.
			size := 256 << 10
			if device == "isa-serial" {
				size = 4 << 10
			}
			data := noise(size, 42)
			start = time.Now()
			if err := a.WriteFile(ctx, "/tmp/blob", data); err != nil {
				t.Fatalf("WriteFile: %v", err)
			}
			if back, err := a.ReadFile(ctx, "/tmp/blob"); err != nil || !bytes.Equal(back, data) {
				t.Fatalf("ReadFile gave %d bytes (want %d), %v", len(back), len(data), err)
			}
			r, err = a.Exec(ctx, []string{"cat", "/tmp/blob"}, nil)
			if err != nil || !bytes.Equal(r.Stdout, data) {
				t.Fatalf("binary output of Exec: %d bytes, %v", len(r.Stdout), err)
			}
			t.Logf("%d KiB written, read and output: %v", size>>10, time.Since(start))
			if err := a.WriteFile(ctx, "/tmp/empty", nil); err != nil {
				t.Fatalf("WriteFile of nothing: %v", err)
			}
			if back, err := a.ReadFile(ctx, "/tmp/empty"); err != nil || back == nil || len(back) != 0 {
				t.Fatalf("ReadFile of an empty file: %q, %v", back, err)
			}
			_, err = a.ReadFile(ctx, "/no/such/file")
			if qerr := qmError(t, err, qemumachine.StatusCommand, qemumachine.ErrCommand); qerr.QMPClass != "GenericError" {
				t.Fatalf("ReadFile of a missing file: %v", err)
			}
			err = a.WriteFile(ctx, "/no/such/dir/file", []byte("x"))
			qmError(t, err, qemumachine.StatusCommand, qemumachine.ErrCommand)

			// Two goroutines at once: each gets its own output.
			var wg sync.WaitGroup
			errs := make(chan error, 2)
			for g := 0; g < 2; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					for i := 0; i < 3; i++ {
						word := fmt.Sprintf("goroutine%d-%d", g, i)
						r, err := a.Exec(ctx, []string{"sh", "-c", "sleep 0.05; echo " + word}, nil)
						if err != nil || strings.TrimSpace(string(r.Stdout)) != word {
							errs <- fmt.Errorf("%s: %+v, %v", word, r, err)
							return
						}
					}
				}(g)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}

			// Contexts: done before the call; a deadline during it (the
			// program is left running).
			cancelled, cancel := context.WithCancel(context.Background())
			cancel()
			if _, err := a.Exec(cancelled, []string{"true"}, nil); err != context.Canceled {
				t.Fatalf("Exec with a cancelled context: %v", err)
			}
			if err := a.WaitReady(cancelled); err != context.Canceled {
				t.Fatalf("WaitReady with a cancelled context: %v", err)
			}
			_, err = a.Exec(timeout(t, 300*time.Millisecond), []string{"sleep", "5"}, nil)
			contains(t, "the timeout message", qmError(t, err, qemumachine.StatusTimeout, qemumachine.ErrTimeout).Message, "pid")
			if r, err := a.Exec(ctx, []string{"echo", "after"}, nil); err != nil || string(r.Stdout) != "after\n" {
				t.Fatalf("Exec after a timeout: %+v, %v", r, err)
			}

			if device != "" {
				if err := m.Shutdown(10 * time.Second); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
				return
			}
			// guest-shutdown never replies: {} once the guest is down.
			if ret, err := a.Command(ctx, "guest-shutdown", nil); err != nil || string(ret) != "{}" {
				t.Fatalf("guest-shutdown: %s, %v", ret, err)
			}
			if err := m.Wait(timeout(t, 30*time.Second)); err != nil {
				t.Fatalf("Wait: %v", err)
			}
			if code, err := m.ExitCode(); err != nil || code != 0 {
				t.Fatalf("ExitCode = %d, %v", code, err)
			}
			_, err = a.Exec(ctx, []string{"true"}, nil)
			qmError(t, err, qemumachine.StatusState, qemumachine.ErrState)
		})
	}
}

// A guest that never runs (-S): no agent answers. WaitReady times out
// saying so, within its deadline, and a cancelled context ends it.
func TestAgentNotAnswering(t *testing.T) {
	t.Parallel()
	m, err := qemumachine.New(qemuBinary())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := m.SetMachineType("pc"); err != nil {
		t.Fatal(err)
	}
	if err := m.AddArgs("-accel", "tcg", "-nodefaults", "-S"); err != nil {
		t.Fatal(err)
	}
	if err := m.SetAgent(""); err != nil {
		t.Fatal(err)
	}
	if err := m.Launch(); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	a := m.Agent()
	start := time.Now()
	err = a.WaitReady(timeout(t, 700*time.Millisecond))
	qerr := qmError(t, err, qemumachine.StatusTimeout, qemumachine.ErrTimeout)
	contains(t, "the timeout message", qerr.Message, "no guest agent answered")
	// The message counts the attempts of the whole wait, not of its last
	// slice.
	counts := regexp.MustCompile(`\((\d+) sync attempt\(s\) over (\d+) ms\)`).FindStringSubmatch(qerr.Message)
	if counts == nil {
		t.Fatalf("the timeout message counts no attempts: %s", qerr.Message)
	}
	if attempts, _ := strconv.Atoi(counts[1]); attempts < 2 {
		t.Fatalf("the timeout message counts %d attempts: %s", attempts, qerr.Message)
	}
	if ms, _ := strconv.Atoi(counts[2]); ms < 650 {
		t.Fatalf("the timeout message counts %d ms: %s", ms, qerr.Message)
	}
	withinBudget(t, qerr.Message, 700*time.Millisecond)
	if elapsed := time.Since(start); elapsed < 700*time.Millisecond || elapsed > 2*time.Second {
		t.Fatalf("a 700 ms WaitReady took %v", elapsed)
	}
	waiting, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start = time.Now()
	if err := a.WaitReady(waiting); err != context.Canceled {
		t.Fatalf("a cancelled WaitReady returned %v", err)
	}
	if elapsed := time.Since(start); elapsed > 1500*time.Millisecond {
		t.Fatalf("the cancelled WaitReady returned after %v", elapsed)
	}
	_, err = a.Command(timeout(t, 300*time.Millisecond), "guest-ping", nil)
	qmError(t, err, qemumachine.StatusTimeout, qemumachine.ErrTimeout)
	if err := m.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
