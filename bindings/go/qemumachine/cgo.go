package qemumachine

/*
#cgo CFLAGS: -I${SRCDIR}/../../../include
#cgo LDFLAGS: -lqemu_machine
#include <stdlib.h>
#include <qemu_machine.h>
*/
import "C"

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"time"
	"unsafe"
)

// Version returns the C library's version ("MAJOR.MINOR.PATCH").
func Version() string { return C.GoString(C.qm_version()) }

// cString copies s into C memory; the caller frees it with C.free. A NUL
// byte cannot cross into C, so it is rejected.
func cString(what, s string) (*C.char, error) {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return nil, invalid(nil, "`%s` contains a NUL byte at offset %d", what, i)
	}
	return C.CString(s), nil
}

// cStringOpt is cString with "" meaning NULL.
func cStringOpt(what, s string) (*C.char, error) {
	if s == "" {
		return nil, nil
	}
	return cString(what, s)
}

// freeC frees C memory from cString (nil is fine).
func freeC(p *C.char) {
	if p != nil {
		C.free(unsafe.Pointer(p))
	}
}

// takeString copies a library string into Go and frees it.
func takeString(s *C.char) string {
	if s == nil {
		return ""
	}
	defer C.qm_string_free(s)
	return C.GoString(s)
}

// goBytes copies n bytes of C memory into Go (never nil).
func goBytes(p *C.uint8_t, n C.size_t) []byte {
	out := make([]byte, int(n))
	if p != nil && n > 0 {
		copy(out, unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n)))
	}
	return out
}

// takeBytes copies library bytes into Go (never nil) and frees them.
func takeBytes(b *C.qm_bytes) []byte {
	defer C.qm_bytes_free(b)
	return goBytes(b.data, b.len)
}

// bytesArg is what C gets for data: NULL for none, else the first byte.
// The bytes hold no Go pointers, so they may be passed for a call.
func bytesArg(data []byte) *C.uint8_t {
	if len(data) == 0 {
		return nil
	}
	return (*C.uint8_t)(unsafe.Pointer(&data[0]))
}

// timeoutArg converts a configured timeout: negative waits forever (-1),
// else it is rounded up to whole milliseconds and capped.
func timeoutArg(d time.Duration) C.int64_t {
	if d < 0 {
		return C.QM_TIMEOUT_FOREVER
	}
	return millis(d)
}

// maxTimeout is QM_TIMEOUT_MAX_MS as a Duration.
const maxTimeout = time.Duration(int64(1)<<31-1) * time.Millisecond

// millis converts a positive duration into timeout_ms, rounding up so that
// a short positive duration is not a poll, and capping at
// QM_TIMEOUT_MAX_MS. A duration <= 0 gives 0.
func millis(d time.Duration) C.int64_t {
	if d <= 0 {
		return 0
	}
	if d >= maxTimeout {
		return C.int64_t(maxTimeout / time.Millisecond)
	}
	return C.int64_t((d + time.Millisecond - 1) / time.Millisecond)
}

// contextDone is the error for a context that is done before a call:
// ctx.Err() when cancelled, a timeout wrapping it when past its deadline.
func contextDone(err error) error {
	if err == context.DeadlineExceeded {
		return &Error{
			Status:  StatusTimeout,
			Message: "the context deadline had passed before the call",
			cause:   err,
		}
	}
	return err
}

// timeoutOf derives a single call's timeout_ms from ctx: -1 without a
// deadline, else the remaining time rounded up (0 if it has just passed).
func timeoutOf(ctx context.Context) (C.int64_t, error) {
	if err := ctx.Err(); err != nil {
		return 0, contextDone(err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		return C.QM_TIMEOUT_FOREVER, nil
	}
	return millis(time.Until(deadline)), nil
}

// jsonObject marshals v, which must give a JSON object, into C memory; nil
// (or anything that marshals to null) gives NULL. The caller frees the
// result with freeC.
func jsonObject(what string, v any) (*C.char, error) {
	if v == nil {
		return nil, nil
	}
	text, err := json.Marshal(v)
	if err != nil {
		return nil, invalid(err, "`%s` cannot be marshalled to JSON: %v", what, err)
	}
	text = bytes.TrimSpace(text)
	if string(text) == "null" {
		return nil, nil
	}
	if len(text) == 0 || text[0] != '{' {
		return nil, invalid(nil, "`%s` must marshal to a JSON object (or be nil), got %s", what, abbreviate(text))
	}
	return cString(what, string(text))
}

// abbreviate shortens JSON text for a message.
func abbreviate(text []byte) string {
	const max = 80
	if len(text) > max {
		return string(text[:max]) + "..."
	}
	return string(text)
}
