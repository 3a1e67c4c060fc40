package qemumachine_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"qemu-machine/bindings/go/qemumachine"
)

// qemuBinary is $QEMU, else qemu-system-x86_64.
func qemuBinary() string {
	if q := os.Getenv("QEMU"); q != "" {
		return q
	}
	return "qemu-system-x86_64"
}

// repoRoot is the qemu-machine repository (three levels above this package).
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// noneMachine is a configured, not launched "-machine none" QEMU, closed
// when the test ends.
func noneMachine(t testing.TB) *qemumachine.Machine {
	t.Helper()
	m, err := qemumachine.New(qemuBinary())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := m.SetMachineType("none"); err != nil {
		t.Fatalf("SetMachineType: %v", err)
	}
	if err := m.AddArgs("-accel", "tcg", "-nodefaults"); err != nil {
		t.Fatalf("AddArgs: %v", err)
	}
	return m
}

// launchedNone is a launched "-machine none" QEMU.
func launchedNone(t testing.TB) *qemumachine.Machine {
	t.Helper()
	m := noneMachine(t)
	if err := m.Launch(); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	return m
}

// timeout is a context that ends after d (or when the test ends).
func timeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// decode unmarshals JSON text into a generic value.
func decode(t testing.TB, text []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(text, &v); err != nil {
		t.Fatalf("invalid JSON %q: %v", text, err)
	}
	return v
}

// eventName is the "event" member of an event.
func eventName(t testing.TB, event []byte) string {
	t.Helper()
	name, _ := decode(t, event)["event"].(string)
	return name
}

// qmError requires err to be an *Error with the given status (also
// checked through errors.Is and the sentinel) and returns it.
func qmError(t testing.TB, err error, want qemumachine.Status, sentinel error) *qemumachine.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", want)
	}
	var qerr *qemumachine.Error
	if !errors.As(err, &qerr) {
		t.Fatalf("error %v (%T) is not a *qemumachine.Error", err, err)
	}
	if qerr.Status != want {
		t.Fatalf("status %d (%v), want %d (%v); error: %v", qerr.Status, qerr.Status, want, want, err)
	}
	if !errors.Is(err, sentinel) || !errors.Is(err, want) {
		t.Fatalf("errors.Is(%v, %v) is false", err, sentinel)
	}
	return qerr
}

// contains requires s to contain sub.
func contains(t testing.TB, what, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("%s lacks %q:\n%s", what, sub, s)
	}
}

var (
	guestOnce sync.Once
	guestDir  string
	guestErr  error
)

// guest returns the directory with the test guest (vmlinux,
// initramfs.cpio.gz): $QM_TEST_GUEST_DIR, else what
// scripts/build-guest.sh prints (it builds the guest once, then caches
// it). A guest that cannot be had fails the test: guest tests never skip.
func guest(t testing.TB) string {
	t.Helper()
	guestOnce.Do(func() {
		if dir := os.Getenv("QM_TEST_GUEST_DIR"); dir != "" {
			guestDir = dir
		} else {
			script := filepath.Join(repoRoot(t), "scripts", "build-guest.sh")
			var stderr strings.Builder
			cmd := exec.Command(script)
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				guestErr = errors.New("scripts/build-guest.sh failed (" + err.Error() + "); run it by hand, or set QM_TEST_GUEST_DIR to a directory with vmlinux and initramfs.cpio.gz:\n" + stderr.String())
				return
			}
			guestDir = strings.TrimSpace(string(out))
		}
		for _, f := range []string{"vmlinux", "initramfs.cpio.gz"} {
			if st, err := os.Stat(filepath.Join(guestDir, f)); err != nil || st.Size() == 0 {
				guestErr = errors.New("the test guest in " + guestDir + " lacks " + f + " (build it with scripts/build-guest.sh)")
				return
			}
		}
	})
	if guestErr != nil {
		t.Fatalf("cannot get the test guest: %v", guestErr)
	}
	return guestDir
}

const prompt = "guest# "

// guestMachine is a configured, not launched Linux guest with a console.
func guestMachine(t testing.TB) *qemumachine.Machine {
	t.Helper()
	dir := guest(t)
	m, err := qemumachine.New(qemuBinary())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	err = m.AddArgs("-accel", "tcg", "-m", "256", "-nodefaults", "-no-reboot",
		"-kernel", filepath.Join(dir, "vmlinux"), "-initrd", filepath.Join(dir, "initramfs.cpio.gz"),
		"-append", "console=ttyS0 panic=-1")
	if err != nil {
		t.Fatalf("AddArgs: %v", err)
	}
	if err := m.SetConsole("", 0); err != nil {
		t.Fatalf("SetConsole: %v", err)
	}
	return m
}

// boot launches a guest machine and waits for its shell prompt.
func boot(t testing.TB, m *qemumachine.Machine) {
	t.Helper()
	if err := m.Launch(); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	out, err := m.ConsoleWait(timeout(t, 60*time.Second), "QM-GUEST-READY", "Kernel panic")
	if err != nil {
		t.Fatalf("waiting for the guest: %v", err)
	}
	contains(t, "the boot output", out, "Linux version")
	if _, err := m.ConsoleWait(timeout(t, 30*time.Second), prompt, ""); err != nil {
		t.Fatalf("waiting for the prompt: %v", err)
	}
}

// withinBudget requires a timeout message to give a budget ("within N
// ms") of at most want and not much less (the wait starts a little after
// its context).
func withinBudget(t testing.TB, message string, want time.Duration) {
	t.Helper()
	match := regexp.MustCompile(`within (\d+) ms`).FindStringSubmatch(message)
	if match == nil {
		t.Fatalf("the timeout message gives no budget: %s", message)
	}
	ms, _ := strconv.Atoi(match[1])
	if got := time.Duration(ms) * time.Millisecond; got > want || got < want-50*time.Millisecond {
		t.Fatalf("the timeout message gives a budget of %v, want %v: %s", got, want, message)
	}
}
