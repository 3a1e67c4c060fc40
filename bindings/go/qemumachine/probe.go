package qemumachine

/*
#include <stdlib.h>
#include <qemu_machine.h>
*/
import "C"

import (
	"context"
	"time"
)

// The kinds of things Probe asks a QEMU binary about.
const (
	ProbeMachine = "machine" // a machine type, by name or alias ("pc")
	ProbeDevice  = "device"  // a device type ("virtio-serial-pci")
	ProbeAccel   = "accel"   // an accelerator ("tcg", "kvm", "qtest")
	ProbeCPU     = "cpu"     // a CPU model ("qemu64")
	ProbeCommand = "command" // a QMP command ("query-status")
)

// Probe reports whether the QEMU binary has name of kind what (ProbeMachine,
// ProbeDevice, ProbeAccel, ProbeCPU or ProbeCommand). The first question
// about a binary starts one short-lived "-machine none" QEMU (within
// timeout; negative waits forever) that answers every question; the
// answers are kept for the process, so later calls start nothing. QEMU
// inherits this process's environment (e.g. QEMU_MODULE_DIR for the
// qtest accelerator). ErrLaunch if the binary does not start (not
// cached: a later call tries again); ErrInvalidArgument for an unknown
// what.
func Probe(binary, what, name string, timeout time.Duration) (bool, error) {
	cb, err := cString("binary", binary)
	if err != nil {
		return false, err
	}
	defer freeC(cb)
	cw, err := cString("what", what)
	if err != nil {
		return false, err
	}
	defer freeC(cw)
	cn, err := cString("name", name)
	if err != nil {
		return false, err
	}
	defer freeC(cn)
	var present C.bool
	var e *C.qm_error
	if err := takeError(C.qm_probe(cb, cw, cn, timeoutArg(timeout), &present, &e), e); err != nil {
		return false, err
	}
	return bool(present), nil
}

// Migrate live-migrates src into dst, which was launched with
// "-incoming defer": migration events are enabled on both, the two ends
// of a socketpair are passed to them, and the call waits until both sides
// report the migration completed (and src has settled in postmigrate),
// within ctx's deadline. ErrCommand if a side failed or refused (the
// message holds both sides' migration status); ErrDisconnected at once if
// QEMU died on either side; ErrTimeout leaves the migration running
// (migrate_cancel on src stops it); ErrAddDevice for a monitor that is not
// a Unix socket. It is a single C call: cancelling ctx cannot interrupt it, only
// the deadline bounds it.
func Migrate(ctx context.Context, src, dst *Machine) error {
	if src == nil || dst == nil {
		return invalid(nil, "`src` and `dst` must not be nil")
	}
	ms, err := timeoutOf(ctx)
	if err != nil {
		return err
	}
	cs, err := src.acquire()
	if err != nil {
		return err
	}
	defer src.release()
	cd, err := dst.acquire()
	if err != nil {
		return err
	}
	defer dst.release()
	var e *C.qm_error
	return takeError(C.qm_migrate(cs, cd, ms, &e), e)
}
