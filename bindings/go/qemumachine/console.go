package qemumachine

/*
#include <stdlib.h>
#include <qemu_machine.h>
*/
import "C"

import (
	"context"
	"unsafe"
)

// SetConsole gives the machine a serial console: deviceType "" adds
// "-serial chardev:console" (the machine's default serial device),
// otherwise "-device DEVICE_TYPE,chardev=console" (e.g. "isa-serial").
// index N adds N "-serial null" first, so that the console is the N-th
// serial port (at most 64). A library thread drains the console at all
// times; up to 64 MiB of output is kept (see ConsoleDropped).
func (m *Machine) SetConsole(deviceType string, index int) error {
	if index < 0 || index > 1<<31-1 {
		return invalid(nil, "`console_index` must not be negative, got %d", index)
	}
	cdev, err := cStringOpt("device_type", deviceType)
	if err != nil {
		return err
	}
	defer freeC(cdev)
	return m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_set_console(c, cdev, C.uint(index), e)
	})
}

// SetConsoleLog also appends the console output to the file at path
// (enabling the default console if SetConsole was not called).
func (m *Machine) SetConsoleLog(path string) error {
	return m.doString("path", path, func(c *C.qm_machine, s *C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_set_console_log(c, s, e)
	})
}

// ConsoleWait waits until success appears in the console output after the
// read cursor and returns the output up to and including it (the cursor
// moves past it). Matching is byte-wise, so a prompt without a newline
// matches; invalid UTF-8 in the output is replaced by U+FFFD. failure ""
// means none; if failure appears first the error is ErrConsoleFailure
// (its message holds the output up to it; the cursor moves past it). On
// ErrTimeout the message holds the output seen so far and the cursor
// stays. Output stays readable after QEMU has exited, until the next
// launch; when QEMU is gone and the rest does not match, ErrDisconnected.
func (m *Machine) ConsoleWait(ctx context.Context, success, failure string) (string, error) {
	csuccess, err := cString("success", success)
	if err != nil {
		return "", err
	}
	defer freeC(csuccess)
	cfailure, err := cStringOpt("failure", failure)
	if err != nil {
		return "", err
	}
	defer freeC(cfailure)
	var out *C.char
	err = m.sliced(ctx, func(c *C.qm_machine, ms C.int64_t, e **C.qm_error) C.enum_qm_status {
		return C.qm_console_wait(c, csuccess, cfailure, ms, &out, e)
	})
	if err != nil {
		return "", err
	}
	return takeString(out), nil
}

// ConsoleExec types command followed by a carriage return on the console,
// then waits as ConsoleWait does; ctx's deadline covers both. The output
// includes the echo of the command. It is a single C call: cancelling ctx
// cannot interrupt it, only the deadline bounds it (use ConsoleWrite and
// ConsoleWait for a cancellable wait).
func (m *Machine) ConsoleExec(ctx context.Context, command, success, failure string) (string, error) {
	ccommand, err := cString("command", command)
	if err != nil {
		return "", err
	}
	defer freeC(ccommand)
	csuccess, err := cString("success", success)
	if err != nil {
		return "", err
	}
	defer freeC(csuccess)
	cfailure, err := cStringOpt("failure", failure)
	if err != nil {
		return "", err
	}
	defer freeC(cfailure)
	ms, err := timeoutOf(ctx)
	if err != nil {
		return "", err
	}
	return m.stringResult(func(c *C.qm_machine, out **C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_console_exec(c, ccommand, csuccess, cfailure, ms, out, e)
	})
}

// consoleEmpty is what an empty write passes as data (C wants non-NULL).
var consoleEmpty = [1]byte{}

// ConsoleWrite sends data (any bytes) to the console. It blocks only while
// QEMU does not read its console and the socket buffer is full; QEMU
// exiting or Kill ends the wait.
func (m *Machine) ConsoleWrite(data []byte) error {
	p := &consoleEmpty[0]
	if len(data) > 0 {
		p = &data[0]
	}
	return m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		// data holds no Go pointers, so it may be passed for the call.
		return C.qm_console_write(c, (*C.char)(unsafe.Pointer(p)), C.size_t(len(data)), e)
	})
}

// ConsoleRead returns the console output after the read cursor without
// waiting (possibly "") and moves the cursor to the end.
func (m *Machine) ConsoleRead() (string, error) {
	return m.stringResult(func(c *C.qm_machine, out **C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_console_read(c, out, e)
	})
}

// ConsoleReadBytes is ConsoleRead, byte-exact: the console output after
// the read cursor (NUL bytes and invalid UTF-8 included) without waiting,
// possibly none; the cursor moves to the end.
func (m *Machine) ConsoleReadBytes() ([]byte, error) {
	var out C.qm_bytes
	err := m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_console_read_bytes(c, &out, e)
	})
	if err != nil {
		return nil, err
	}
	return takeBytes(&out), nil
}

// ConsoleDropped returns how many console bytes this run dropped because
// more than 64 MiB of output was waiting to be read.
func (m *Machine) ConsoleDropped() (uint64, error) {
	var n C.uint64_t
	err := m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_console_dropped(c, &n, e)
	})
	return uint64(n), err
}
