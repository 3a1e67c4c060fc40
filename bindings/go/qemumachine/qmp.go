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
	"strings"
	"time"
)

// waitSlice is the longest single C call of a sliced wait: how soon a
// cancelled context or Close is noticed.
const waitSlice = 100 * time.Millisecond

// withinMS is how the library's timeout messages give the budget.
var withinMS = regexp.MustCompile(`within \d+ ms`)

// sliced runs a wait whose C function times out without side effects
// (nothing consumed, cursor unchanged, QEMU left running) in slices of at
// most waitSlice, until it succeeds, fails otherwise, ctx is cancelled,
// ctx's deadline passes or the machine is closed.
func (m *Machine) sliced(ctx context.Context, f func(c *C.qm_machine, ms C.int64_t, e **C.qm_error) C.enum_qm_status) error {
	if err := ctx.Err(); err != nil {
		return contextDone(err)
	}
	c, err := m.acquire()
	if err != nil {
		return err
	}
	defer m.release()
	return m.slicedOn(ctx, c, f, nil)
}

// slicedOn is sliced on a machine the caller has acquired. giveUp, if not
// nil, runs when the wait ends without an answer from f: a cancelled
// context, a passed deadline, a close.
func (m *Machine) slicedOn(ctx context.Context, c *C.qm_machine, f func(c *C.qm_machine, ms C.int64_t, e **C.qm_error) C.enum_qm_status, giveUp func()) error {
	deadline, hasDeadline := ctx.Deadline()
	start := time.Now()
	for {
		ms, final := millis(waitSlice), false
		if hasDeadline {
			if rest := time.Until(deadline); rest <= waitSlice {
				ms, final = millis(rest), true
			}
		}
		var e *C.qm_error
		err := takeError(f(c, ms, &e), e)
		var qerr *Error
		if !errors.As(err, &qerr) || qerr.Status != StatusTimeout {
			return err // success, or another error
		}
		if final {
			// The library's message gives the budget of the last slice;
			// give the whole wait's instead.
			total := fmt.Sprintf("within %d ms", int64(millis(deadline.Sub(start))))
			done := false
			qerr.Message = withinMS.ReplaceAllStringFunc(qerr.Message, func(s string) string {
				if done {
					return s
				}
				done = true
				return total
			})
			if giveUp != nil {
				giveUp()
			}
			return err
		}
		if err := ctx.Err(); err != nil && err != context.DeadlineExceeded {
			if giveUp != nil {
				giveUp()
			}
			return err // cancelled; a passed deadline gets its final poll
		}
		if m.isClosing() {
			return ErrClosed
		}
	}
}

// Command runs QMP command name with arguments args and returns QEMU's
// "return" value. args is marshalled with encoding/json and must give a
// JSON object; nil (or a value that marshals to null, like a nil map)
// sends no arguments. Anything else is rejected before calling C with an
// ErrInvalidArgument error. If QEMU answers with an error the result is an
// *Error with StatusCommand (errors.Is(err, ErrCommand)) whose QMPClass
// and QMPDesc hold QEMU's class and description.
//
// ctx's deadline bounds the wait for the reply, and cancelling ctx ends
// the wait within 100 ms (ctx.Err()). Neither cancels the command itself:
// QEMU may still run it, and its late reply is dropped.
func (m *Machine) Command(ctx context.Context, name string, args any) (json.RawMessage, error) {
	return m.qmp(ctx, name, args, false)
}

// QMP runs QMP command name like Command but returns QEMU's whole reply,
// {"return": ...} or {"error": {"class": ..., "desc": ...}} (without the
// id the library added): a QMP error is not a Go error here.
func (m *Machine) QMP(ctx context.Context, name string, args any) (json.RawMessage, error) {
	return m.qmp(ctx, name, args, true)
}

// qmp runs a command through the split API: qm_command_send, then
// qm_command_receive in slices (a timeout keeps the ticket), so that a
// cancelled context ends the wait. A ticket whose caller gave up is
// abandoned: the next command receives and drops its late reply.
func (m *Machine) qmp(ctx context.Context, name string, args any, whole bool) (json.RawMessage, error) {
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
	if err := ctx.Err(); err != nil {
		return nil, contextDone(err)
	}
	c, err := m.acquire()
	if err != nil {
		return nil, err
	}
	defer m.release()
	m.dropAbandoned(c)
	var ticket C.uint64_t
	var e *C.qm_error
	if err := takeError(C.qm_command_send(c, cname, cargs, &ticket, &e), e); err != nil {
		return nil, err
	}
	var out *C.char
	err = m.slicedOn(ctx, c, func(c *C.qm_machine, ms C.int64_t, e **C.qm_error) C.enum_qm_status {
		return C.qm_command_receive(c, ticket, ms, &out, e)
	}, func() { m.abandon(ticket) })
	if err != nil {
		var qerr *Error
		if errors.As(err, &qerr) && qerr.Status == StatusTimeout {
			// The library does not know the command's name here.
			qerr.Message = strings.Replace(qerr.Message, "'the command'", "'"+name+"'", 1)
		}
		return nil, err
	}
	reply := json.RawMessage(takeString(out))
	if whole {
		return reply, nil
	}
	return returned(name, reply)
}

// returned is the "return" member of a whole QMP reply, or its "error"
// member as an *Error with StatusCommand (with the message qm_command
// gives).
func returned(name string, reply json.RawMessage) (json.RawMessage, error) {
	var r struct {
		Return json.RawMessage `json:"return"`
		Error  *struct {
			Class string `json:"class"`
			Desc  string `json:"desc"`
		} `json:"error"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		return nil, &Error{Status: StatusProtocol, Message: "a QMP reply is not a JSON object: " + err.Error(), cause: err}
	}
	if r.Error != nil {
		return nil, &Error{
			Status:   StatusCommand,
			Message:  fmt.Sprintf("QMP command '%s' failed: %s: %s", name, r.Error.Class, r.Error.Desc),
			QMPClass: r.Error.Class,
			QMPDesc:  r.Error.Desc,
		}
	}
	if r.Return == nil {
		return nil, &Error{Status: StatusProtocol, Message: "a QMP reply has neither return nor error: " + abbreviate(reply)}
	}
	return r.Return, nil
}

// abandon keeps the ticket of a command whose caller gave up, so that its
// late reply, which the library keeps until it is received, is dropped.
func (m *Machine) abandon(ticket C.uint64_t) {
	m.abandonedMu.Lock()
	m.abandoned = append(m.abandoned, ticket)
	m.abandonedMu.Unlock()
}

// dropAbandoned receives, without waiting, the replies to abandoned
// tickets and drops them. A ticket still unanswered stays abandoned; any
// other outcome (a reply, the run's end, a ticket of an earlier run)
// consumes it.
func (m *Machine) dropAbandoned(c *C.qm_machine) {
	m.abandonedMu.Lock()
	tickets := m.abandoned
	m.abandoned = nil
	m.abandonedMu.Unlock()
	if len(tickets) == 0 {
		return
	}
	var pending []C.uint64_t
	for _, ticket := range tickets {
		if C.qm_command_receive(c, ticket, 0, nil, nil) == C.QM_ERR_TIMEOUT {
			pending = append(pending, ticket)
		}
	}
	if len(pending) > 0 {
		m.abandonedMu.Lock()
		m.abandoned = append(m.abandoned, pending...)
		m.abandonedMu.Unlock()
	}
}

// EventFilter selects events for EventsWait: Name "" matches any name;
// Match nil matches any event, else it must marshal to a JSON object
// matched as in EventWait.
type EventFilter struct {
	Name  string
	Match any
}

// EventWait removes and returns the first queued or future event named
// name ("" for any name) that matches match. match follows QEMU's
// QEMUMachine.event_match: it is marshalled with encoding/json into an
// object that must be a sub-object of the event, checked recursively,
// where a JSON null (a nil value) is a wildcard, e.g.
// map[string]any{"data": map[string]any{"reason": nil}}; nil matches any
// event. Events that do not match stay queued, in order. On ErrTimeout
// nothing is consumed. Events stay readable after QEMU has exited, until
// the next launch; when QEMU is gone and no queued event matches, the
// result is ErrDisconnected at once.
func (m *Machine) EventWait(ctx context.Context, name string, match any) (json.RawMessage, error) {
	cname, err := cStringOpt("name", name)
	if err != nil {
		return nil, err
	}
	defer freeC(cname)
	cmatch, err := jsonObject("match", match)
	if err != nil {
		return nil, err
	}
	defer freeC(cmatch)
	return m.eventResult(ctx, func(c *C.qm_machine, ms C.int64_t, out **C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_event_wait(c, cname, cmatch, ms, out, e)
	})
}

// EventsWait is EventWait for the first event passing any of filters.
// An empty list is rejected (ErrInvalidArgument): no event could pass it,
// so the wait could only time out. Use []EventFilter{{}} for any event.
func (m *Machine) EventsWait(ctx context.Context, filters []EventFilter) (json.RawMessage, error) {
	if len(filters) == 0 {
		return nil, invalid(nil, "`filters` is empty: no event could match")
	}
	cfilters, err := filtersJSON(filters)
	if err != nil {
		return nil, err
	}
	defer freeC(cfilters)
	return m.eventResult(ctx, func(c *C.qm_machine, ms C.int64_t, out **C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_events_wait(c, cfilters, ms, out, e)
	})
}

// filtersJSON gives filters as the C API takes them, a JSON array of
// [name, match] pairs, in C memory (the caller frees it with freeC).
func filtersJSON(filters []EventFilter) (*C.char, error) {
	pairs := make([][2]any, len(filters))
	for i, f := range filters {
		if f.Name != "" {
			pairs[i][0] = f.Name
		}
		if f.Match != nil {
			text, err := json.Marshal(f.Match)
			if err != nil {
				return nil, invalid(err, "filter %d: `Match` cannot be marshalled to JSON: %v", i, err)
			}
			if s := strings.TrimSpace(string(text)); s != "null" {
				if !strings.HasPrefix(s, "{") {
					return nil, invalid(nil, "filter %d: `Match` must marshal to a JSON object (or be nil), got %s", i, abbreviate(text))
				}
				pairs[i][1] = json.RawMessage(text)
			}
		}
	}
	text, err := json.Marshal(pairs)
	if err != nil {
		return nil, invalid(err, "`filters` cannot be marshalled to JSON: %v", err)
	}
	return cString("filters", string(text))
}

// EventGet removes and returns the oldest event, waiting for one until
// ctx is done.
func (m *Machine) EventGet(ctx context.Context) (json.RawMessage, error) {
	return m.eventResult(ctx, func(c *C.qm_machine, ms C.int64_t, out **C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_event_get(c, ms, out, e)
	})
}

func (m *Machine) eventResult(ctx context.Context, f func(c *C.qm_machine, ms C.int64_t, out **C.char, e **C.qm_error) C.enum_qm_status) (json.RawMessage, error) {
	var out *C.char
	err := m.sliced(ctx, func(c *C.qm_machine, ms C.int64_t, e **C.qm_error) C.enum_qm_status {
		return f(c, ms, &out, e)
	})
	if err != nil {
		return nil, err
	}
	return json.RawMessage(takeString(out)), nil
}

// EventsTake removes and returns every queued event, oldest first,
// without waiting (possibly none).
func (m *Machine) EventsTake() ([]json.RawMessage, error) {
	text, err := m.stringResult(func(c *C.qm_machine, out **C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_events_take(c, out, e)
	})
	if err != nil {
		return nil, err
	}
	events := []json.RawMessage{}
	if err := json.Unmarshal([]byte(text), &events); err != nil {
		return nil, &Error{Status: StatusProtocol, Message: "qm_events_take returned invalid JSON: " + err.Error(), cause: err}
	}
	return events, nil
}

// EventsDropped returns how many events this run dropped because the
// event queue was full (65536 events).
func (m *Machine) EventsDropped() (uint64, error) {
	var n C.uint64_t
	err := m.do(func(c *C.qm_machine, e **C.qm_error) C.enum_qm_status {
		return C.qm_events_dropped(c, &n, e)
	})
	return uint64(n), err
}

// SendFD passes descriptor fd to QEMU under name (QMP getfd with
// SCM_RIGHTS), waiting up to 30 s for the reply. fd stays the caller's.
// The monitor must be a Unix socket (ErrState over TCP).
func (m *Machine) SendFD(fd int, name string) error {
	if fd < -1<<31 || fd > 1<<31-1 {
		return invalid(nil, "`fd` (%d) is out of range", fd)
	}
	return m.doString("fdname", name, func(c *C.qm_machine, s *C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_send_fd(c, C.int(fd), s, e)
	})
}

// Greeting returns the greeting QEMU sent when the QMP connection opened,
// {"QMP": {"version": {...}, "capabilities": [...]}}, of the current or
// last run. ErrState if the machine never launched, or the launch failed
// before the greeting.
func (m *Machine) Greeting() (json.RawMessage, error) {
	text, err := m.stringResult(func(c *C.qm_machine, out **C.char, e **C.qm_error) C.enum_qm_status {
		return C.qm_qmp_greeting(c, out, e)
	})
	if err != nil {
		return nil, err
	}
	return json.RawMessage(text), nil
}

// EventMatch reports whether event matches match by the rules of
// EventWait. Both are marshalled with encoding/json (a json.RawMessage is
// used as is); it needs no machine.
func EventMatch(event, match any) (bool, error) {
	ev, err := json.Marshal(event)
	if err != nil {
		return false, invalid(err, "`event` cannot be marshalled to JSON: %v", err)
	}
	mt, err := json.Marshal(match)
	if err != nil {
		return false, invalid(err, "`match` cannot be marshalled to JSON: %v", err)
	}
	cev, err := cString("event", string(ev))
	if err != nil {
		return false, err
	}
	defer freeC(cev)
	cmt, err := cString("match", string(mt))
	if err != nil {
		return false, err
	}
	defer freeC(cmt)
	var matches C.bool
	var e *C.qm_error
	if err := takeError(C.qm_event_match(cev, cmt, &matches, &e), e); err != nil {
		return false, err
	}
	return bool(matches), nil
}

// abandonedTickets is how many abandoned tickets wait to be dropped (for
// the tests).
func (m *Machine) abandonedTickets() int {
	m.abandonedMu.Lock()
	defer m.abandonedMu.Unlock()
	return len(m.abandoned)
}
