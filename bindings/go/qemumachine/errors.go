package qemumachine

/*
#include <qemu_machine.h>
*/
import "C"

import (
	"context"
	"fmt"
	"math"
	"strings"
)

// Status is the result code of a C call (qm_status). The values are those
// of the C enum; new codes are only ever added at the end.
type Status int

// The statuses of the C API, with the same values as qm_status.
const (
	StatusOK               Status = C.QM_OK
	StatusInvalidArgument  Status = C.QM_ERR_INVALID_ARGUMENT
	StatusState            Status = C.QM_ERR_STATE
	StatusLaunch           Status = C.QM_ERR_LAUNCH
	StatusTimeout          Status = C.QM_ERR_TIMEOUT
	StatusDisconnected     Status = C.QM_ERR_DISCONNECTED
	StatusProtocol         Status = C.QM_ERR_PROTOCOL
	StatusCommand          Status = C.QM_ERR_COMMAND
	StatusAbnormalShutdown Status = C.QM_ERR_ABNORMAL_SHUTDOWN
	StatusIO               Status = C.QM_ERR_IO
	StatusAddDevice        Status = C.QM_ERR_ADD_DEVICE
	StatusPanic            Status = C.QM_ERR_PANIC
	StatusConsoleFailure   Status = C.QM_ERR_CONSOLE_FAILURE
)

// String describes the status with qm_status_str ("timed out", ...);
// unknown values give "unknown status".
func (s Status) String() string {
	if s < math.MinInt32 || s > math.MaxInt32 {
		return "unknown status"
	}
	return C.GoString(C.qm_status_str(C.int(s)))
}

// Error makes a Status usable as an error value: the sentinels (ErrTimeout,
// ...) are Status values, and errors.Is(err, ErrTimeout) holds for every
// *Error whose Status is StatusTimeout.
func (s Status) Error() string { return "qemumachine: " + s.String() }

// Sentinels for errors.Is, one per failure status.
var (
	ErrInvalidArgument  error = StatusInvalidArgument
	ErrState            error = StatusState
	ErrLaunch           error = StatusLaunch
	ErrTimeout          error = StatusTimeout
	ErrDisconnected     error = StatusDisconnected
	ErrProtocol         error = StatusProtocol
	ErrCommand          error = StatusCommand
	ErrAbnormalShutdown error = StatusAbnormalShutdown
	ErrIO               error = StatusIO
	ErrAddDevice        error = StatusAddDevice
	ErrPanic            error = StatusPanic
	ErrConsoleFailure   error = StatusConsoleFailure
)

// ErrClosed is returned by every call on a Machine after Close has begun.
// It is a StatusState error: errors.Is(ErrClosed, ErrState) holds.
var ErrClosed = &Error{Status: StatusState, Message: "the machine is closed"}

// Error is a failed call: the library's status and message (copied from
// the C error object, which is freed), and for QMP command errors
// (StatusCommand) the QMP error class and description.
type Error struct {
	Status   Status
	Message  string
	QMPClass string // e.g. "CommandNotFound"; "" unless Status is StatusCommand
	QMPDesc  string // QEMU's description; "" unless Status is StatusCommand

	cause error // what a check in the binding failed on (JSON, context), if any
}

// Error returns "qemumachine: MESSAGE" (the library's messages say what
// failed), or "qemumachine: STATUS" for an error without a message. The
// QMP class is added for a QMP command error whose message lacks it.
func (e *Error) Error() string {
	if e.Message == "" {
		s := "qemumachine: " + e.Status.String()
		if e.QMPClass != "" {
			s += " (" + e.QMPClass + ")"
		}
		return s
	}
	s := "qemumachine: " + e.Message
	if e.QMPClass != "" && !strings.Contains(e.Message, e.QMPClass) {
		s += " (" + e.QMPClass + ")"
	}
	return s
}

// Is reports whether target is e's status (ErrTimeout, StatusTimeout, ...).
// A timeout also matches context.DeadlineExceeded, since the timeouts of
// the calls come from their contexts' deadlines.
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case Status:
		return t == e.Status
	}
	return target == context.DeadlineExceeded && e.Status == StatusTimeout
}

// Unwrap returns the error a check in the binding failed on, if any: the
// encoding/json error for arguments that cannot be marshalled, or
// context.DeadlineExceeded for a context that was past its deadline
// before the call.
func (e *Error) Unwrap() error { return e.cause }

// invalid is a StatusInvalidArgument error raised by the binding itself.
func invalid(cause error, format string, args ...any) *Error {
	return &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf(format, args...), cause: cause}
}

// takeError converts a C status and error object into a Go error and
// frees the object.
func takeError(st C.enum_qm_status, e *C.qm_error) error {
	if e == nil {
		if st == C.QM_OK {
			return nil
		}
		return &Error{Status: Status(st)}
	}
	defer C.qm_error_free(e)
	if st == C.QM_OK {
		return nil
	}
	out := &Error{Status: Status(C.qm_error_status(e))}
	if p := C.qm_error_message(e); p != nil {
		out.Message = C.GoString(p)
	}
	if p := C.qm_error_qmp_class(e); p != nil {
		out.QMPClass = C.GoString(p)
	}
	if p := C.qm_error_qmp_desc(e); p != nil {
		out.QMPDesc = C.GoString(p)
	}
	return out
}
