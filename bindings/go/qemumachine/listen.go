package qemumachine

/*
#include <stdlib.h>
#include <qemu_machine.h>
*/
import "C"

import (
	"context"
	"encoding/json"
	"sync"
	"time"
)

// Event is a QMP event as Listen delivers it.
type Event struct {
	Name      string          // "STOP", "SHUTDOWN", ...
	Data      json.RawMessage // the "data" member; nil if the event has none
	Timestamp time.Time       // when QEMU sent it (its "timestamp", host time)
	JSON      json.RawMessage // the whole event as QEMU sent it
}

// String returns the whole event as JSON text.
func (e Event) String() string { return string(e.JSON) }

// parseEvent decodes an event from the library (valid JSON; a member of
// an unexpected type is left zero).
func parseEvent(text string) Event {
	ev := Event{JSON: json.RawMessage(text)}
	var raw struct {
		Event     json.RawMessage `json:"event"`
		Data      json.RawMessage `json:"data"`
		Timestamp struct {
			Seconds      int64 `json:"seconds"`
			Microseconds int64 `json:"microseconds"`
		} `json:"timestamp"`
	}
	if json.Unmarshal(ev.JSON, &raw) != nil {
		return ev
	}
	_ = json.Unmarshal(raw.Event, &ev.Name)
	ev.Data = raw.Data
	if raw.Timestamp.Seconds != 0 || raw.Timestamp.Microseconds != 0 {
		ev.Timestamp = time.Unix(raw.Timestamp.Seconds, raw.Timestamp.Microseconds*1000)
	}
	return ev
}

// listenBuffer is the capacity of Listen's channels. The library's
// listener queue (65536 events) is the real buffer: while the channel is
// full, events wait there.
const listenBuffer = 16

// Listen delivers, on a channel, a copy of every event QEMU sends from now
// on that passes one of filters (none: every event), as EventsWait
// matches them. The machine's own queue (EventWait and the rest) is
// unaffected, as are other listeners.
//
// The channel is closed when ctx is done, when the machine is closed (by
// the time Close returns), or when the run has ended (QEMU exited, Shutdown,
// Kill) and every event of it has been delivered. The machine must be
// running (ErrState otherwise) with QMP (ErrAddDevice otherwise). (The
// library's listener outlives runs: a relaunch within the 100 ms before
// the goroutine sees the end of the run carries the channel into the new
// run.)
//
// One goroutine per call serves the channel. It waits on a library
// listener (qm_listener_new) in C calls of at most 100 ms: the waits read
// QMP input themselves, so events arrive even when no other call is made
// on the machine, and a cancelled context or Close is noticed within one
// slice. While the channel is full the goroutine waits for the reader (or
// ctx, or Close) and events queue in the listener (up to 65536; beyond
// that the oldest are dropped). When it ends it frees the listener.
func (m *Machine) Listen(ctx context.Context, filters ...EventFilter) (<-chan Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, contextDone(err)
	}
	var cfilters *C.char
	if len(filters) > 0 {
		var err error
		if cfilters, err = filtersJSON(filters); err != nil {
			return nil, err
		}
		defer freeC(cfilters)
	}
	c, err := m.acquire()
	if err != nil {
		return nil, err
	}
	defer m.release()
	if !C.qm_is_running(c) {
		return nil, &Error{Status: StatusState, Message: "Listen needs a running machine: its channel serves the current run"}
	}
	var l *C.qm_listener
	var e *C.qm_error
	if err := takeError(C.qm_listener_new(c, cfilters, &l, &e), e); err != nil {
		return nil, err
	}
	// A first poll, so that a listener that can never get an event (QMP
	// disabled) is an error here rather than a closed channel.
	var out *C.char
	var first *Event
	switch st := C.qm_listener_wait(l, 0, &out, &e); st {
	case C.QM_OK:
		ev := parseEvent(takeString(out))
		first = &ev
	case C.QM_ERR_TIMEOUT:
		C.qm_error_free(e)
	default:
		C.qm_listener_free(l)
		return nil, takeError(st, e)
	}
	ch := make(chan Event, listenBuffer)
	if first != nil {
		ch <- *first
	}
	// Added while the call is registered: Close, which waits for the
	// registered calls first, then sees it.
	m.listeners.Add(1)
	go listen(ctx, l, ch, m.done, m.listeners)
	return ch, nil
}

// listen serves a Listen channel (see Listen). It holds the machine's
// done channel and listener count, not the Machine, so that the finalizer
// of a dropped Machine can still run (and close done).
func listen(ctx context.Context, l *C.qm_listener, ch chan<- Event, done <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	defer close(ch)
	defer C.qm_listener_free(l)
	deadline, hasDeadline := ctx.Deadline()
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		default:
		}
		slice := waitSlice
		if hasDeadline {
			if rest := time.Until(deadline); rest < slice {
				slice = rest
			}
		}
		var out *C.char
		var e *C.qm_error
		st := C.qm_listener_wait(l, millis(slice), &out, &e)
		if e != nil {
			C.qm_error_free(e)
		}
		switch st {
		case C.QM_OK:
			select {
			case ch <- parseEvent(takeString(out)):
			case <-ctx.Done():
				return
			case <-done:
				return
			}
		case C.QM_ERR_TIMEOUT:
		default:
			// QM_ERR_DISCONNECTED: the run has ended and nothing is
			// queued (or the machine was freed).
			return
		}
	}
}
