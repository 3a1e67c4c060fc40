// Package qemumachinetest runs QEMU machines inside Go tests: New gives a
// launched qemumachine.Machine that is shut down and freed when the test
// ends, and whose artifacts (QEMU's log, the console output, the events,
// the command line, how QEMU ended) are saved and logged when the test
// has failed. SkipUnless and its variants skip a test that needs what the
// QEMU binary lacks.
//
//	func TestRTC(t *testing.T) {
//		qemumachinetest.SkipUnlessMachine(t, "qemu-system-x86_64", "pc")
//		m := qemumachinetest.New(t, "qemu-system-x86_64",
//			qemumachinetest.MachineType("pc"),
//			qemumachinetest.Args("-nodefaults"),
//			qemumachinetest.Qtest())
//		seconds, err := m.Qtest().Inb(0x71)
//		...
//	}
//
// Artifacts go to $QM_ARTIFACTS_DIR/TEST_NAME/MACHINE (TEST_NAME as
// t.Name() gives it, subtests as subdirectories; MACHINE the Name option,
// else machine-1, machine-2... in the order of New within the test) when
// QM_ARTIFACTS_DIR is set, as in CI jobs that keep a directory, and
// otherwise to a new directory under os.TempDir() that is kept after the
// test. The test's log lists the files.
package qemumachinetest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"qemu-machine/bindings/go/qemumachine"
)

// ArtifactsEnv names the environment variable that chooses where the
// artifacts of failed tests go.
const ArtifactsEnv = "QM_ARTIFACTS_DIR"

// DefaultShutdownTimeout is how long the cleanup waits for QEMU to exit
// after quit before killing it.
const DefaultShutdownTimeout = 10 * time.Second

// Option configures a machine made by New.
type Option func(*config)

type config struct {
	name            string
	setup           []func(m *qemumachine.Machine) error
	noLaunch        bool
	shutdownTimeout time.Duration
	allowAbnormal   bool
}

func (c *config) add(what string, f func(m *qemumachine.Machine) error) {
	c.setup = append(c.setup, func(m *qemumachine.Machine) error {
		if err := f(m); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}

// Args appends arguments to QEMU's command line (Machine.AddArgs).
func Args(args ...string) Option {
	return func(c *config) {
		c.add("Args", func(m *qemumachine.Machine) error { return m.AddArgs(args...) })
	}
}

// MachineType adds "-machine TYPE" (Machine.SetMachineType).
func MachineType(machineType string) Option {
	return func(c *config) {
		c.add("MachineType", func(m *qemumachine.Machine) error { return m.SetMachineType(machineType) })
	}
}

// Console gives the machine a serial console (Machine.SetConsole):
// deviceType "" for the machine's default serial device, index N for the
// N-th serial port. Its output is among the artifacts.
func Console(deviceType string, index int) Option {
	return func(c *config) {
		c.add("Console", func(m *qemumachine.Machine) error { return m.SetConsole(deviceType, index) })
	}
}

// Agent gives the machine a guest agent channel (Machine.SetAgent):
// deviceType "" for a virtio-serial port, else e.g. "isa-serial".
func Agent(deviceType string) Option {
	return func(c *config) {
		c.add("Agent", func(m *qemumachine.Machine) error { return m.SetAgent(deviceType) })
	}
}

// Qtest runs QEMU under qtest (Machine.SetQtest).
func Qtest() Option {
	return func(c *config) {
		c.add("Qtest", func(m *qemumachine.Machine) error { return m.SetQtest() })
	}
}

// Env sets an environment variable for QEMU only (Machine.SetEnv), e.g.
// QEMU_MODULE_DIR.
func Env(name, value string) Option {
	return func(c *config) {
		c.add("Env", func(m *qemumachine.Machine) error { return m.SetEnv(name, value) })
	}
}

// Name names the machine (Machine.SetName) and its artifacts directory.
func Name(name string) Option {
	return func(c *config) {
		c.name = name
		c.add("Name", func(m *qemumachine.Machine) error { return m.SetName(name) })
	}
}

// Configure runs f on the machine before the launch, for settings the
// other options do not cover (SetConsoleLog, AddFD, SetQMPTrace...).
func Configure(f func(m *qemumachine.Machine) error) Option {
	return func(c *config) { c.add("Configure", f) }
}

// NoLaunch leaves the machine configured but not launched: the test
// launches it (the cleanup still applies).
func NoLaunch() Option {
	return func(c *config) { c.noLaunch = true }
}

// ShutdownTimeout sets how long the cleanup waits for QEMU to exit after
// quit before killing it (DefaultShutdownTimeout otherwise).
func ShutdownTimeout(d time.Duration) Option {
	return func(c *config) { c.shutdownTimeout = d }
}

// AllowAbnormalShutdown keeps an abnormal end of QEMU at the cleanup
// (killed after the timeout, a signal, a non-zero exit status) from
// failing the test; it is logged instead.
func AllowAbnormalShutdown() Option {
	return func(c *config) { c.allowAbnormal = true }
}

// New creates a machine that runs binary, applies opts in order and
// launches it (unless NoLaunch), failing the test (t.Fatal) if any of
// that fails. When the test ends, a cleanup shuts QEMU down (an abnormal
// shutdown fails the test, unless AllowAbnormalShutdown), saves the
// machine's artifacts if the test has failed and logs where, and frees
// the machine.
func New(t testing.TB, binary string, opts ...Option) *qemumachine.Machine {
	t.Helper()
	c := config{shutdownTimeout: DefaultShutdownTimeout}
	for _, opt := range opts {
		opt(&c)
	}
	m, err := qemumachine.New(binary)
	if err != nil {
		t.Fatalf("qemumachinetest: %v", err)
	}
	label := c.name
	if label == "" {
		label = fmt.Sprintf("machine-%d", nextIndex(t))
	}
	t.Cleanup(func() { finish(t, m, &c, label) })
	for _, f := range c.setup {
		if err := f(m); err != nil {
			t.Fatalf("qemumachinetest: configuring %s: %v", label, err)
		}
	}
	if !c.noLaunch {
		if err := m.Launch(); err != nil {
			t.Fatalf("qemumachinetest: launching %s: %v", label, err)
		}
	}
	return m
}

// finish is the cleanup of New.
func finish(t testing.TB, m *qemumachine.Machine, c *config, label string) {
	t.Helper()
	defer m.Close()
	if err := m.Shutdown(c.shutdownTimeout); err != nil {
		if c.allowAbnormal {
			t.Logf("qemumachinetest: shutdown of %s: %v", label, err)
		} else {
			t.Errorf("qemumachinetest: shutdown of %s: %v", label, err)
		}
	}
	if t.Failed() {
		saveArtifacts(t, m, label)
	}
}

// saveArtifacts writes the machine's artifacts and logs their paths.
func saveArtifacts(t testing.TB, m *qemumachine.Machine, label string) {
	t.Helper()
	dir, err := artifactsDir(t, label)
	if err != nil {
		t.Logf("qemumachinetest: no artifacts for %s: %v", label, err)
		return
	}
	if err := m.SaveArtifacts(dir); err != nil {
		t.Logf("qemumachinetest: no artifacts for %s: %v", label, err)
		return
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Logf("qemumachinetest: artifacts of %s in %s (cannot list them: %v)", label, dir, err)
		return
	}
	var list strings.Builder
	for _, e := range entries {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			fmt.Fprintf(&list, "\n\t%s (%d bytes)", filepath.Join(dir, e.Name()), info.Size())
		}
	}
	t.Logf("qemumachinetest: artifacts of %s in %s:%s", label, dir, list.String())
}

// artifactsDir is where the artifacts of the machine labelled label go.
func artifactsDir(t testing.TB, label string) (string, error) {
	if base := os.Getenv(ArtifactsEnv); base != "" {
		parts := []string{base}
		for _, part := range strings.Split(t.Name(), "/") {
			parts = append(parts, safeName(part))
		}
		return filepath.Join(append(parts, safeName(label))...), nil
	}
	// Kept after the test, unlike t.TempDir().
	return os.MkdirTemp("", "qm-artifacts-"+safeName(strings.ReplaceAll(t.Name(), "/", "-"))+"-"+safeName(label)+"-")
}

// safeName keeps letters, digits, '.', '-' and '_' of s (others become
// '_'), so that it is one path component; "" and dot names become "_".
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) > 100 {
		b = b[:100]
	}
	if s := string(b); s != "" && s != "." && s != ".." {
		return s
	}
	return "_"
}

// The machines made by New so far in each running test, for their labels.
var (
	indexMu sync.Mutex
	indexes = map[testing.TB]int{}
)

func nextIndex(t testing.TB) int {
	indexMu.Lock()
	defer indexMu.Unlock()
	n, seen := indexes[t]
	if !seen {
		t.Cleanup(func() {
			indexMu.Lock()
			delete(indexes, t)
			indexMu.Unlock()
		})
	}
	indexes[t] = n + 1
	return n + 1
}

// ProbeTimeout bounds the QEMU that Probe starts the first time it asks a
// binary.
const ProbeTimeout = 30 * time.Second

// Probe reports whether the QEMU binary has name of kind what
// (qemumachine.ProbeMachine, ProbeDevice, ProbeAccel, ProbeCPU or
// ProbeCommand; see qemumachine.Probe: the answers are kept for the
// process). A binary that cannot be asked fails the test.
func Probe(t testing.TB, binary, what, name string) bool {
	t.Helper()
	ok, err := qemumachine.Probe(binary, what, name, ProbeTimeout)
	if err != nil {
		t.Fatalf("qemumachinetest: cannot ask %s about %s %q: %v", binary, what, name, err)
	}
	return ok
}

// SkipUnless skips the test unless the QEMU binary has name of kind what
// (see Probe).
func SkipUnless(t testing.TB, binary, what, name string) {
	t.Helper()
	if !Probe(t, binary, what, name) {
		t.Skipf("%s has no %s %q", binary, what, name)
	}
}

// SkipUnlessMachine skips the test unless binary has the machine type.
func SkipUnlessMachine(t testing.TB, binary, machineType string) {
	t.Helper()
	SkipUnless(t, binary, qemumachine.ProbeMachine, machineType)
}

// SkipUnlessDevice skips the test unless binary has the device type.
func SkipUnlessDevice(t testing.TB, binary, device string) {
	t.Helper()
	SkipUnless(t, binary, qemumachine.ProbeDevice, device)
}

// SkipUnlessAccel skips the test unless binary has the accelerator (for
// "qtest", QEMU_MODULE_DIR in this process's environment counts).
func SkipUnlessAccel(t testing.TB, binary, accel string) {
	t.Helper()
	SkipUnless(t, binary, qemumachine.ProbeAccel, accel)
}
