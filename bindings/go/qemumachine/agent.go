package qemumachine

/*
#include <stdlib.h>
#include <qemu_machine.h>
*/
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// SetAgent gives the machine a channel for the QEMU guest agent (qemu-ga),
// on a socketpair the library owns. deviceType "": a virtio-serial bus with
// a port named org.qemu.guest_agent.0 (the guest runs "qemu-ga -m
// virtio-serial"); otherwise "-device DEVICE_TYPE,chardev=...", e.g.
// "isa-serial" for one more ISA serial port (the guest runs "qemu-ga -m
// isa-serial -p /dev/ttySN"). Use the channel through Agent.
func (m *Machine) SetAgent(deviceType string) error {
	cdev, err := cStringOpt("device_type", deviceType)
	if err != nil {
		return err
	}
	defer freeC(cdev)
	return m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_set_agent(c, cdev, e)
	})
}

// Agent is the guest agent of a machine configured with SetAgent; get it
// with Machine.Agent. Its calls return ErrAddDevice on a machine without
// an agent channel, and may be made from several goroutines at once (they
// take turns: one agent command is on the wire at a time, and each
// caller's deadline covers its wait for its turn).
//
// WaitReady is a sliced wait that cancelling its context interrupts. The
// other calls are single C calls whose timeout is the context's deadline:
// cancelling the context cannot interrupt them once they are blocked in C
// (a timeout leaves the guest side running: a command may still run, a
// program started by Exec keeps running).
type Agent struct {
	m *Machine
}

// Agent returns the machine's guest agent (see SetAgent).
func (m *Machine) Agent() *Agent { return &Agent{m: m} }

// WaitReady waits until the guest agent answers (a guest-sync-delimited
// handshake, retried, since the agent starts late in the guest's boot),
// or ctx is done. Its timeout error says that no agent answered.
func (a *Agent) WaitReady(ctx context.Context) error {
	start := time.Now()
	attempts := 0
	err := a.m.sliced(ctx, func(c *C.qm_machine, ms C.int64_t, e **C.qm_error) C.enum_qm_status {
		st := C.qm_agent_wait_ready(c, ms, e)
		if st == C.QM_ERR_TIMEOUT && *e != nil {
			if m := syncAttempts.FindStringSubmatch(C.GoString(C.qm_error_message(*e))); m != nil {
				n, _ := strconv.Atoi(m[1])
				attempts += n
			}
		}
		return st
	})
	// Each slice's message counts its own attempts: give the whole wait's.
	var qerr *Error
	if errors.As(err, &qerr) && qerr.Status == StatusTimeout {
		qerr.Message = syncAttempts.ReplaceAllLiteralString(qerr.Message,
			fmt.Sprintf("(%d sync attempt(s) over %d ms)", attempts, time.Since(start).Milliseconds()))
	}
	return err
}

// syncAttempts is how the library's timeout message of a wait for the
// agent counts its handshakes.
var syncAttempts = regexp.MustCompile(`\((\d+) sync attempt\(s\) over \d+ ms\)`)

// Command runs guest agent command name with arguments args (marshalled
// as Machine.Command does: nil for none, else it must give a JSON object)
// and returns its "return" value. An agent error is an *Error with
// StatusCommand carrying the agent's class and description. Commands that
// never reply (guest-shutdown, guest-suspend-*) return {} once QEMU
// reports their effect or exits.
func (a *Agent) Command(ctx context.Context, name string, args any) (json.RawMessage, error) {
	cname, err := cString("cmd", name)
	if err != nil {
		return nil, err
	}
	defer freeC(cname)
	cargs, err := jsonObject("args", args)
	if err != nil {
		return nil, err
	}
	defer freeC(cargs)
	ms, err := timeoutOf(ctx)
	if err != nil {
		return nil, err
	}
	text, err := a.m.stringResult(func(c *C.qm_machine, out **C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_agent_cmd(c, cname, cargs, ms, out, e)
	})
	if err != nil {
		return nil, err
	}
	return json.RawMessage(text), nil
}

// ExecResult is how a program run with Agent.Exec ended, and its output.
type ExecResult struct {
	// ExitCode is the exit status (>= 0), or minus the signal that ended
	// the program (e.g. -9).
	ExitCode int
	Stdout   []byte
	Stderr   []byte
	// Truncated reports that the agent cut the output (it keeps at most
	// 16 MiB per stream).
	Truncated bool
}

// Exec runs a program in the guest: argv[0] is the program (a path, or a
// name the guest's PATH finds), input (nil for none) is fed to its
// standard input, and the call waits until the program exits. It
// succeeds whatever the program's exit status (see ExecResult.ExitCode).
// ErrCommand if the agent could not start the program; ErrTimeout leaves
// it running (the message gives its pid in the guest).
func (a *Agent) Exec(ctx context.Context, argv []string, input []byte) (*ExecResult, error) {
	if len(argv) == 0 {
		return nil, invalid(nil, "`argv` is empty: it needs at least the program")
	}
	for i, arg := range argv {
		if j := strings.IndexByte(arg, 0); j >= 0 {
			return nil, invalid(nil, "argv[%d] contains a NUL byte at offset %d", i, j)
		}
	}
	ms, err := timeoutOf(ctx)
	if err != nil {
		return nil, err
	}
	// A NULL-terminated array of C strings, all in C memory.
	ptrSize := unsafe.Sizeof((*C.char)(nil))
	cargv := unsafe.Slice((**C.char)(C.calloc(C.size_t(len(argv)+1), C.size_t(ptrSize))), len(argv)+1)
	defer func() {
		for _, p := range cargv {
			freeC(p)
		}
		C.free(unsafe.Pointer(&cargv[0]))
	}()
	for i, arg := range argv {
		cargv[i] = C.CString(arg)
	}
	var r *C.qm_exec_result
	err = a.m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_agent_exec(c, &cargv[0], bytesArg(input), C.size_t(len(input)), ms, &r, e)
	})
	if err != nil {
		return nil, err
	}
	defer C.qm_exec_result_free(r)
	var outLen, errLen C.size_t
	outPtr := C.qm_exec_result_stdout(r, &outLen)
	errPtr := C.qm_exec_result_stderr(r, &errLen)
	return &ExecResult{
		ExitCode:  int(C.qm_exec_result_exit_code(r)),
		Stdout:    goBytes(outPtr, outLen),
		Stderr:    goBytes(errPtr, errLen),
		Truncated: bool(C.qm_exec_result_truncated(r)),
	}, nil
}

// ReadFile reads the whole guest file path through the agent (any size,
// any bytes). ErrCommand if the agent refuses, e.g. no such file. The
// guest file is closed whatever happens.
func (a *Agent) ReadFile(ctx context.Context, path string) ([]byte, error) {
	cpath, err := cString("guest_path", path)
	if err != nil {
		return nil, err
	}
	defer freeC(cpath)
	ms, err := timeoutOf(ctx)
	if err != nil {
		return nil, err
	}
	var out C.qm_bytes
	err = a.m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_agent_file_read(c, cpath, ms, &out, e)
	})
	if err != nil {
		return nil, err
	}
	return takeBytes(&out), nil
}

// WriteFile writes data to the guest file path (created, or truncated)
// through the agent. The guest file is closed whatever happens.
func (a *Agent) WriteFile(ctx context.Context, path string, data []byte) error {
	cpath, err := cString("guest_path", path)
	if err != nil {
		return err
	}
	defer freeC(cpath)
	ms, err := timeoutOf(ctx)
	if err != nil {
		return err
	}
	return a.m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_agent_file_write(c, cpath, bytesArg(data), C.size_t(len(data)), ms, e)
	})
}
