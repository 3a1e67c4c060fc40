package qemumachine

/*
#include <stdlib.h>
#include <qemu_machine.h>
*/
import "C"

import (
	"math"
	"time"
)

// SetQtest runs QEMU under qtest, QEMU's device-test protocol: no guest
// code runs, and the test reads and writes guest memory and I/O ports,
// steps the virtual clock and watches interrupt lines (see Qtest). The
// protocol runs on a socketpair the library owns; "-accel qtest" is added
// unless the arguments or the machine type choose an accelerator. QMP
// stays available beside it.
//
// QEMU needs its qtest accelerator module for "-accel qtest"; Debian and
// Ubuntu delete it (Launch then fails with ErrLaunch saying so and how to
// get it: scripts/build-qtest-accel.sh builds it, and
// SetEnv("QEMU_MODULE_DIR", dir) points QEMU at it). With "-accel tcg -S"
// instead, memory, port and IRQ calls work, and the clock calls fail with
// ErrCommand saying why.
func (m *Machine) SetQtest() error {
	return m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_set_qtest(c, e)
	})
}

// SetQtestTimeout sets the bound of every qtest call (default 30 s). A
// negative duration waits forever.
func (m *Machine) SetQtestTimeout(d time.Duration) error {
	ms := timeoutArg(d)
	return m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_set_qtest_timeout(c, ms, e)
	})
}

// Qtest is the qtest protocol of a machine configured with SetQtest; get
// it with Machine.Qtest. The method names follow libqtest's. Every call is
// bounded by the qtest timeout (SetQtestTimeout) and may be made from
// several goroutines at once.
//
// Errors: ErrCommand when QEMU answers FAIL or ERR (QMPClass "FAIL" or
// "ERR", QMPDesc QEMU's text); ErrTimeout; ErrDisconnected (QEMU gone);
// ErrProtocol; ErrAddDevice (no SetQtest); ErrState (not running);
// ErrInvalidArgument (checked before anything is sent: a size other than
// 1, 2, 4 or 8, a value that does not fit, text with spaces or newlines).
type Qtest struct {
	m *Machine
}

// Qtest returns the machine's qtest protocol (see SetQtest).
func (m *Machine) Qtest() *Qtest { return &Qtest{m: m} }

// Raw sends one qtest protocol line (words separated by single spaces, no
// newline) and returns QEMU's reply, "OK" or "OK ...": for commands the
// other methods do not cover.
func (q *Qtest) Raw(line string) (string, error) {
	cline, err := cString("line", line)
	if err != nil {
		return "", err
	}
	defer freeC(cline)
	return q.m.stringResult(func(c *C.qm_machine, out **C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_qtest_raw(c, cline, out, e)
	})
}

// sizeArg checks a width in bytes for C (which checks its value).
func sizeArg(n int) (C.uint, error) {
	if n < 0 || n > math.MaxInt32 {
		return 0, invalid(nil, "`size` must be 1, 2, 4 or 8, got %d", n)
	}
	return C.uint(n), nil
}

// Read reads size bytes (1, 2, 4 or 8) of guest memory at addr, in guest
// byte order.
func (q *Qtest) Read(addr uint64, size int) (uint64, error) {
	cs, err := sizeArg(size)
	if err != nil {
		return 0, err
	}
	var v C.uint64_t
	err = q.m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_qtest_read(c, C.uint64_t(addr), cs, &v, e)
	})
	return uint64(v), err
}

// Write writes size bytes (1, 2, 4 or 8) of guest memory at addr; value
// must fit.
func (q *Qtest) Write(addr uint64, size int, value uint64) error {
	cs, err := sizeArg(size)
	if err != nil {
		return err
	}
	return q.m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_qtest_write(c, C.uint64_t(addr), cs, C.uint64_t(value), e)
	})
}

// Readb reads a byte of guest memory.
func (q *Qtest) Readb(addr uint64) (uint8, error) {
	v, err := q.Read(addr, 1)
	return uint8(v), err
}

// Readw reads 2 bytes of guest memory.
func (q *Qtest) Readw(addr uint64) (uint16, error) {
	v, err := q.Read(addr, 2)
	return uint16(v), err
}

// Readl reads 4 bytes of guest memory.
func (q *Qtest) Readl(addr uint64) (uint32, error) {
	v, err := q.Read(addr, 4)
	return uint32(v), err
}

// Readq reads 8 bytes of guest memory.
func (q *Qtest) Readq(addr uint64) (uint64, error) { return q.Read(addr, 8) }

// Writeb writes a byte of guest memory.
func (q *Qtest) Writeb(addr uint64, v uint8) error { return q.Write(addr, 1, uint64(v)) }

// Writew writes 2 bytes of guest memory.
func (q *Qtest) Writew(addr uint64, v uint16) error { return q.Write(addr, 2, uint64(v)) }

// Writel writes 4 bytes of guest memory.
func (q *Qtest) Writel(addr uint64, v uint32) error { return q.Write(addr, 4, uint64(v)) }

// Writeq writes 8 bytes of guest memory.
func (q *Qtest) Writeq(addr uint64, v uint64) error { return q.Write(addr, 8, v) }

// In reads I/O port port, size bytes (1, 2 or 4) wide.
func (q *Qtest) In(port uint16, size int) (uint32, error) {
	cs, err := sizeArg(size)
	if err != nil {
		return 0, err
	}
	var v C.uint32_t
	err = q.m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_qtest_in(c, C.uint16_t(port), cs, &v, e)
	})
	return uint32(v), err
}

// Out writes I/O port port, size bytes (1, 2 or 4) wide; value must fit.
func (q *Qtest) Out(port uint16, size int, value uint32) error {
	cs, err := sizeArg(size)
	if err != nil {
		return err
	}
	return q.m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_qtest_out(c, C.uint16_t(port), cs, C.uint32_t(value), e)
	})
}

// Inb reads a byte from an I/O port.
func (q *Qtest) Inb(port uint16) (uint8, error) {
	v, err := q.In(port, 1)
	return uint8(v), err
}

// Inw reads 2 bytes from an I/O port.
func (q *Qtest) Inw(port uint16) (uint16, error) {
	v, err := q.In(port, 2)
	return uint16(v), err
}

// Inl reads 4 bytes from an I/O port.
func (q *Qtest) Inl(port uint16) (uint32, error) { return q.In(port, 4) }

// Outb writes a byte to an I/O port.
func (q *Qtest) Outb(port uint16, v uint8) error { return q.Out(port, 1, uint32(v)) }

// Outw writes 2 bytes to an I/O port.
func (q *Qtest) Outw(port uint16, v uint16) error { return q.Out(port, 2, uint32(v)) }

// Outl writes 4 bytes to an I/O port.
func (q *Qtest) Outl(port uint16, v uint32) error { return q.Out(port, 4, v) }

// MemRead reads n bytes of guest memory at addr (any length).
func (q *Qtest) MemRead(addr uint64, n int) ([]byte, error) {
	if n < 0 {
		return nil, invalid(nil, "`len` must not be negative, got %d", n)
	}
	buf := make([]byte, n)
	err := q.m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_qtest_memread(c, C.uint64_t(addr), bytesArg(buf), C.size_t(n), e)
	})
	if err != nil {
		return nil, err
	}
	return buf, nil
}

// MemWrite writes data to guest memory at addr (any length).
func (q *Qtest) MemWrite(addr uint64, data []byte) error {
	return q.m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_qtest_memwrite(c, C.uint64_t(addr), bytesArg(data), C.size_t(len(data)), e)
	})
}

// MemSet fills n bytes of guest memory at addr with b.
func (q *Qtest) MemSet(addr uint64, b byte, n int) error {
	if n < 0 {
		return invalid(nil, "`len` must not be negative, got %d", n)
	}
	return q.m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_qtest_memset(c, C.uint64_t(addr), C.uint8_t(b), C.size_t(n), e)
	})
}

// clock runs a clock call and returns the new virtual time.
func (q *Qtest) clock(f func(c *C.qm_machine, now *C.int64_t, e **C.qm_error) C.enum_qm_status) (int64, error) {
	var now C.int64_t
	err := q.m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return f(c, &now, e)
	})
	if err != nil {
		return 0, err
	}
	return int64(now), nil
}

// ClockStep advances the virtual clock by ns nanoseconds (>= 0), running
// the timers that fall due, and returns the new virtual time in
// nanoseconds. Needs "-accel qtest" (else ErrCommand saying so).
func (q *Qtest) ClockStep(ns int64) (int64, error) {
	if ns < 0 {
		return 0, invalid(nil, "`ns` must not be negative, got %d (ClockStepNext steps to the next deadline)", ns)
	}
	return q.clock(func(c *C.qm_machine, now *C.int64_t, e **C.qm_error) C.enum_qm_status {
		return C.qm_qtest_clock_step(c, C.int64_t(ns), now, e)
	})
}

// ClockStepNext advances the virtual clock to the next timer deadline and
// returns the new virtual time in nanoseconds.
func (q *Qtest) ClockStepNext() (int64, error) {
	return q.clock(func(c *C.qm_machine, now *C.int64_t, e **C.qm_error) C.enum_qm_status {
		return C.qm_qtest_clock_step(c, -1, now, e)
	})
}

// ClockSet moves the virtual clock to ns nanoseconds (if that is later; it
// never goes back) and returns the new virtual time.
func (q *Qtest) ClockSet(ns int64) (int64, error) {
	return q.clock(func(c *C.qm_machine, now *C.int64_t, e **C.qm_error) C.enum_qm_status {
		return C.qm_qtest_clock_set(c, C.int64_t(ns), now, e)
	})
}

// IRQInterceptIn intercepts the GPIO input lines of the device at QOM
// path path (e.g. "ioapic"): QEMU then reports their changes, which GetIRQ
// reads. One device can be intercepted per run.
func (q *Qtest) IRQInterceptIn(path string) error {
	return q.m.doString("qom_path", path, func(c *C.qm_machine, s *C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_qtest_irq_intercept_in(c, s, e)
	})
}

// IRQInterceptOut intercepts the GPIO output lines of the device at path.
func (q *Qtest) IRQInterceptOut(path string) error {
	return q.m.doString("qom_path", path, func(c *C.qm_machine, s *C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_qtest_irq_intercept_out(c, s, e)
	})
}

// intArg checks an int for a C int parameter.
func intArg(what string, n int) (C.int, error) {
	if n < math.MinInt32 || n > math.MaxInt32 {
		return 0, invalid(nil, "`%s` (%d) is out of range", what, n)
	}
	return C.int(n), nil
}

// GetIRQ reports whether intercepted line is raised, as QEMU last
// reported it (reports that have arrived are read first; it never waits).
func (q *Qtest) GetIRQ(line int) (bool, error) {
	cl, err := intArg("line", line)
	if err != nil {
		return false, err
	}
	var raised C.bool
	err = q.m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_qtest_get_irq(c, cl, &raised, e)
	})
	return bool(raised), err
}

// SetIRQIn sets input line line of the GPIO list name of the device at
// path to level.
func (q *Qtest) SetIRQIn(path, name string, line, level int) error {
	cl, err := intArg("line", line)
	if err != nil {
		return err
	}
	clevel, err := intArg("level", level)
	if err != nil {
		return err
	}
	cname, err := cString("name", name)
	if err != nil {
		return err
	}
	defer freeC(cname)
	return q.m.doString("qom_path", path, func(c *C.qm_machine, s *C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_qtest_set_irq_in(c, s, cname, cl, clevel, e)
	})
}
