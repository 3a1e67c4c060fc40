package qemumachine_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"qemu-machine/bindings/go/qemumachine"
)

var (
	accelOnce sync.Once
	accelDir  string
	accelErr  error
)

// qtestAccel returns the directory holding QEMU's qtest accelerator
// module, which scripts/build-qtest-accel.sh builds once from Debian's
// source package (Debian deletes the module) and then caches. A module
// that cannot be had fails the test: qtest tests never skip.
func qtestAccel(t testing.TB) string {
	t.Helper()
	accelOnce.Do(func() {
		script := filepath.Join(repoRoot(t), "scripts", "build-qtest-accel.sh")
		var stderr strings.Builder
		cmd := exec.Command(script)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			accelErr = errors.New("scripts/build-qtest-accel.sh failed (" + err.Error() + "); `make qtest-accel` runs it:\n" + stderr.String())
			return
		}
		accelDir = strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(accelDir, "accel-qtest-x86_64.so")); err != nil {
			accelErr = errors.New("the qtest accelerator is missing from " + accelDir + ": " + err.Error())
		}
	})
	if accelErr != nil {
		t.Fatalf("cannot get the qtest accelerator: %v", accelErr)
	}
	return accelDir
}

// qtestMachine is a configured, not launched "-machine pc" QEMU under
// qtest with the accelerator module, its RTC on the virtual clock (as
// QEMU's own rtc-test).
func qtestMachine(t testing.TB) *qemumachine.Machine {
	t.Helper()
	dir := qtestAccel(t)
	m, err := qemumachine.New(qemuBinary())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	for _, err := range []error{
		m.SetMachineType("pc"),
		m.AddArgs("-nodefaults", "-rtc", "clock=vm"),
		m.SetQtest(),
		m.SetEnv("QEMU_MODULE_DIR", dir),
	} {
		if err != nil {
			t.Fatalf("configuration: %v", err)
		}
	}
	return m
}

func launchedQtest(t testing.TB) (*qemumachine.Machine, *qemumachine.Qtest) {
	t.Helper()
	m := qtestMachine(t)
	if err := m.Launch(); err != nil {
		t.Fatalf("Launch under qtest: %v", err)
	}
	return m, m.Qtest()
}

const (
	rtcSeconds = 0x00
	rtcRegA    = 0x0a
	rtcRegB    = 0x0b
	rtcRegC    = 0x0c
)

// cmos reads and writes CMOS registers through ports 0x70/0x71.
type cmos struct {
	t testing.TB
	q *qemumachine.Qtest
}

func (c cmos) read(reg uint8) uint8 {
	c.t.Helper()
	if err := c.q.Outb(0x70, reg); err != nil {
		c.t.Fatalf("Outb: %v", err)
	}
	v, err := c.q.Inb(0x71)
	if err != nil {
		c.t.Fatalf("Inb: %v", err)
	}
	return v
}

func (c cmos) write(reg, value uint8) {
	c.t.Helper()
	if err := c.q.Outb(0x70, reg); err != nil {
		c.t.Fatalf("Outb: %v", err)
	}
	if err := c.q.Outb(0x71, value); err != nil {
		c.t.Fatalf("Outb: %v", err)
	}
}

// The CMOS RTC (the checks of QEMU's rtc-test) and the virtual clock.
func TestQtestRTCAndClock(t *testing.T) {
	t.Parallel()
	m, q := launchedQtest(t)
	rtc := cmos{t, q}
	// Binary mode, 24 hours.
	rtc.write(rtcRegB, rtc.read(rtcRegB)|0x06)
	if month, day := rtc.read(0x08), rtc.read(0x07); month < 1 || month > 12 || day < 1 || day > 31 {
		t.Fatalf("month %d, day %d", month, day)
	}
	before := rtc.read(rtcSeconds)
	now, err := q.ClockStep(3_000_000_000)
	if err != nil || now < 3_000_000_000 {
		t.Fatalf("ClockStep = %d, %v", now, err)
	}
	after := rtc.read(rtcSeconds)
	if advanced := (int(after) + 60 - int(before)) % 60; advanced < 2 || advanced > 4 {
		t.Fatalf("the seconds went from %d to %d over 3 virtual seconds", before, after)
	}
	later, err := q.ClockSet(now + 10_000_000_000)
	if err != nil || later != now+10_000_000_000 {
		t.Fatalf("ClockSet = %d, %v", later, err)
	}
	if again := rtc.read(rtcSeconds); (int(again)+60-int(after))%60 < 9 {
		t.Fatalf("the seconds went from %d to %d over 10 virtual seconds", after, again)
	}
	// The clock never goes back.
	if back, err := q.ClockSet(0); err != nil || back != later {
		t.Fatalf("ClockSet(0) = %d, %v; want %d", back, err, later)
	}
	next, err := q.ClockStepNext()
	if err != nil || next <= later {
		t.Fatalf("ClockStepNext = %d, %v (from %d)", next, err, later)
	}
	// BCD mode.
	rtc.write(rtcRegB, rtc.read(rtcRegB)&^0x04)
	if bcd := rtc.read(rtcSeconds); bcd>>4 > 5 || bcd&0xf > 9 {
		t.Fatalf("seconds in BCD: %#x", bcd)
	}
	if err := m.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// The RTC's periodic interrupt raises IRQ 8 of the IOAPIC; reading
// register C lowers it. SetIRQIn drives an intercepted input line.
func TestQtestIRQ(t *testing.T) {
	t.Parallel()
	m, q := launchedQtest(t)
	rtc := cmos{t, q}
	if err := q.IRQInterceptIn("ioapic"); err != nil {
		t.Fatalf("IRQInterceptIn: %v", err)
	}
	if raised, err := q.GetIRQ(8); err != nil || raised {
		t.Fatalf("GetIRQ(8) before = %v, %v", raised, err)
	}
	rtc.write(rtcRegA, 0x26) // 1024 Hz
	rtc.write(rtcRegB, rtc.read(rtcRegB)|0x40)
	if _, err := q.ClockStep(2_000_000); err != nil {
		t.Fatalf("ClockStep: %v", err)
	}
	if raised, err := q.GetIRQ(8); err != nil || !raised {
		t.Fatalf("GetIRQ(8) after 2 ms = %v, %v", raised, err)
	}
	if c := rtc.read(rtcRegC); c&0x40 == 0 {
		t.Fatalf("PF not set in register C: %#x", c)
	}
	if raised, err := q.GetIRQ(8); err != nil || raised {
		t.Fatalf("GetIRQ(8) after the acknowledgement = %v, %v", raised, err)
	}
	// An intercepted input line set by hand is reported too.
	if err := q.SetIRQIn("ioapic", "unnamed-gpio-in", 10, 1); err != nil {
		t.Fatalf("SetIRQIn: %v", err)
	}
	if raised, err := q.GetIRQ(10); err != nil || !raised {
		t.Fatalf("GetIRQ(10) after SetIRQIn = %v, %v", raised, err)
	}
	if err := q.SetIRQIn("ioapic", "unnamed-gpio-in", 10, 0); err != nil {
		t.Fatalf("SetIRQIn: %v", err)
	}
	if raised, err := q.GetIRQ(10); err != nil || raised {
		t.Fatalf("GetIRQ(10) after lowering = %v, %v", raised, err)
	}
	// One device per run.
	err := q.IRQInterceptOut("/machine/i440fx")
	if qerr := qmError(t, err, qemumachine.StatusCommand, qemumachine.ErrCommand); !strings.Contains(qerr.QMPDesc, "already") {
		t.Fatalf("intercepting a second device: %v", err)
	}
	if err := m.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// Ports of every width (the PCI host bridge's ids through 0xcf8/0xcfc),
// guest RAM in bulk and by size, memset, raw lines, and goroutines on
// disjoint ranges.
func TestQtestMemoryAndPorts(t *testing.T) {
	t.Parallel()
	m, q := launchedQtest(t)
	if err := q.Outl(0xcf8, 0x8000_0000); err != nil {
		t.Fatalf("Outl: %v", err)
	}
	id, err := q.Inl(0xcfc)
	if err != nil || id&0xffff != 0x8086 || id>>16 != 0x1237 {
		t.Fatalf("the host bridge's ids: %#x, %v", id, err)
	}
	if vendor, err := q.Inw(0xcfc); err != nil || vendor != 0x8086 {
		t.Fatalf("Inw: %#x, %v", vendor, err)
	}
	if err := q.Outw(0x70, 0x0b); err != nil {
		t.Fatalf("Outw: %v", err)
	}
	if v, err := q.In(0xcfc, 4); err != nil || v != id {
		t.Fatalf("In(4) = %#x, %v", v, err)
	}
	if err := q.Out(0xcf8, 4, 0x8000_0000); err != nil {
		t.Fatalf("Out(4): %v", err)
	}

	const base = 0x10_0000
	data := noise(1<<20, 7)
	if err := q.MemWrite(base, data); err != nil {
		t.Fatalf("MemWrite: %v", err)
	}
	back, err := q.MemRead(base, len(data))
	if err != nil || !bytes.Equal(back, data) {
		t.Fatalf("MemRead of 1 MiB: equal %v, %v", bytes.Equal(back, data), err)
	}
	le := func(b []byte) uint64 {
		var v uint64
		for i := len(b) - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		return v
	}
	if v, err := q.Readb(base + 3); err != nil || uint64(v) != le(data[3:4]) {
		t.Fatalf("Readb = %#x, %v", v, err)
	}
	if v, err := q.Readw(base + 8); err != nil || uint64(v) != le(data[8:10]) {
		t.Fatalf("Readw = %#x, %v", v, err)
	}
	if v, err := q.Readl(base + 16); err != nil || uint64(v) != le(data[16:20]) {
		t.Fatalf("Readl = %#x, %v", v, err)
	}
	if v, err := q.Readq(base + 4097); err != nil || v != le(data[4097:4105]) {
		t.Fatalf("Readq = %#x, %v", v, err)
	}
	if err := q.Writeq(base, 0x1122_3344_5566_7788); err != nil {
		t.Fatalf("Writeq: %v", err)
	}
	if v, err := q.Readl(base); err != nil || v != 0x5566_7788 {
		t.Fatalf("Readl after Writeq = %#x, %v", v, err)
	}
	for _, err := range []error{q.Writeb(base, 0xab), q.Writew(base+2, 0xcdef), q.Writel(base+4, 0x0102_0304)} {
		if err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	if v, err := q.Read(base, 8); err != nil || v != 0x0102_0304_cdef_77ab {
		t.Fatalf("Read(8) = %#x, %v", v, err)
	}
	if err := q.Write(base, 2, 0xffff); err != nil {
		t.Fatalf("Write(2): %v", err)
	}
	if err := q.MemSet(base, 0x5a, 4096); err != nil {
		t.Fatalf("MemSet: %v", err)
	}
	page, err := q.MemRead(base, 4096)
	if err != nil || !bytes.Equal(page, bytes.Repeat([]byte{0x5a}, 4096)) {
		t.Fatalf("MemRead after MemSet: %v", err)
	}
	if empty, err := q.MemRead(base, 0); err != nil || empty == nil || len(empty) != 0 {
		t.Fatalf("MemRead of nothing = %v, %v", empty, err)
	}
	if err := q.MemWrite(base, nil); err != nil {
		t.Fatalf("MemWrite of nothing: %v", err)
	}
	if reply, err := q.Raw("endianness"); err != nil || reply != "OK little" {
		t.Fatalf(`Raw("endianness") = %q, %v`, reply, err)
	}
	_, err = q.Raw("no_such_command")
	if qerr := qmError(t, err, qemumachine.StatusCommand, qemumachine.ErrCommand); qerr.QMPClass != "FAIL" && qerr.QMPClass != "ERR" {
		t.Fatalf("an unknown qtest command: %v (class %q)", err, qerr.QMPClass)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := uint64(0); g < 4; g++ {
		wg.Add(1)
		go func(g uint64) {
			defer wg.Done()
			addr := 0x20_0000 + g*0x10_0000
			for round := uint64(0); round < 20; round++ {
				data := noise(8192, g*100+round)
				if err := q.MemWrite(addr, data); err != nil {
					errs <- err
					return
				}
				back, err := q.MemRead(addr, len(data))
				if err != nil || !bytes.Equal(back, data) {
					errs <- errors.New("a concurrent round trip differs")
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
	// QMP works beside qtest.
	if _, err := m.Command(timeout(t, 10*time.Second), "query-status", nil); err != nil {
		t.Fatalf("query-status: %v", err)
	}
	if err := m.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// A stopped QEMU: calls end within the qtest timeout. A killed one: a
// call waiting in another goroutine ends at once.
func TestQtestStoppedAndKilled(t *testing.T) {
	t.Parallel()
	m := qtestMachine(t)
	if err := m.SetQtestTimeout(300 * time.Millisecond); err != nil {
		t.Fatalf("SetQtestTimeout: %v", err)
	}
	if err := m.Launch(); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	q := m.Qtest()
	pid := m.Pid()
	syscall.Kill(pid, syscall.SIGSTOP)
	start := time.Now()
	_, err := q.Readl(0)
	qmError(t, err, qemumachine.StatusTimeout, qemumachine.ErrTimeout)
	if elapsed := time.Since(start); elapsed < 300*time.Millisecond || elapsed > 2*time.Second {
		t.Fatalf("a 300 ms qtest timeout took %v", elapsed)
	}
	done := make(chan error, 1)
	go func() {
		_, err := q.ClockStep(1000)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	syscall.Kill(pid, syscall.SIGKILL)
	select {
	case err := <-done:
		// Killed while waiting, or the wait had already timed out.
		if !errors.Is(err, qemumachine.ErrDisconnected) && !errors.Is(err, qemumachine.ErrTimeout) {
			t.Fatalf("ClockStep during the kill: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a qtest call outlived QEMU")
	}
	_, err = q.Readl(0)
	if !errors.Is(err, qemumachine.ErrDisconnected) && !errors.Is(err, qemumachine.ErrState) {
		t.Fatalf("Readl after the kill: %v", err)
	}
}

// Without the accelerator module the launch says why; under "-accel tcg
// -S" ports work and the clock says why not.
func TestQtestWithoutTheAccelerator(t *testing.T) {
	t.Parallel()
	m := qtestMachine(t)
	if err := m.UnsetEnv("QEMU_MODULE_DIR"); err != nil {
		t.Fatal(err)
	}
	qerr := qmError(t, m.Launch(), qemumachine.StatusLaunch, qemumachine.ErrLaunch)
	contains(t, "the launch error", qerr.Message, "no qtest accelerator")
	contains(t, "the launch error", qerr.Message, "build-qtest-accel.sh")

	tcg, err := qemumachine.New(qemuBinary())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tcg.Close() })
	for _, err := range []error{tcg.SetMachineType("pc"), tcg.AddArgs("-nodefaults", "-accel", "tcg", "-S"), tcg.SetQtest()} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := tcg.Launch(); err != nil {
		t.Fatalf("Launch: %v", err)
	}
	q := tcg.Qtest()
	if err := q.Outl(0xcf8, 0x8000_0000); err != nil {
		t.Fatalf("Outl: %v", err)
	}
	if id, err := q.Inl(0xcfc); err != nil || id&0xffff != 0x8086 {
		t.Fatalf("Inl = %#x, %v", id, err)
	}
	_, err = q.ClockStep(1000)
	qerr = qmError(t, err, qemumachine.StatusCommand, qemumachine.ErrCommand)
	if qerr.QMPClass != "FAIL" || !strings.Contains(qerr.QMPDesc, "needs the qtest accelerator") {
		t.Fatalf("ClockStep under TCG: %v (class %q, desc %q)", err, qerr.QMPClass, qerr.QMPDesc)
	}
	if err := tcg.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
