package qemumachine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"time"

	"qemu-machine/bindings/go/qemumachine"
)

// Launch a QEMU without a guest, ask for its status over QMP, pause it and
// wait for the STOP event, then shut it down.
func Example() {
	m, err := qemumachine.New("qemu-system-x86_64")
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close() // kills QEMU if it still runs
	if err := m.SetMachineType("none"); err != nil {
		log.Fatal(err)
	}
	if err := m.AddArgs("-accel", "tcg", "-nodefaults"); err != nil {
		log.Fatal(err)
	}
	if err := m.Launch(); err != nil {
		log.Fatal(err) // the message holds QEMU's exit status, command line and output
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ret, err := m.Command(ctx, "query-status", nil)
	if err != nil {
		log.Fatal(err)
	}
	var status struct {
		Running bool   `json:"running"`
		Status  string `json:"status"`
	}
	if err := json.Unmarshal(ret, &status); err != nil {
		log.Fatal(err)
	}
	fmt.Println("running:", status.Running, status.Status)

	// A QMP error is an *Error carrying QEMU's error class.
	_, err = m.Command(ctx, "no-such-command", nil)
	var qerr *qemumachine.Error
	if errors.As(err, &qerr) && errors.Is(err, qemumachine.ErrCommand) {
		fmt.Println("error class:", qerr.QMPClass)
	}

	if _, err := m.Command(ctx, "stop", nil); err != nil {
		log.Fatal(err)
	}
	event, err := m.EventWait(ctx, "STOP", nil)
	if err != nil {
		log.Fatal(err)
	}
	var stop struct {
		Event string `json:"event"`
	}
	if err := json.Unmarshal(event, &stop); err != nil {
		log.Fatal(err)
	}
	fmt.Println("event:", stop.Event)

	if err := m.Shutdown(10 * time.Second); err != nil {
		log.Fatal(err) // ErrAbnormalShutdown: QEMU had to be killed, or exited non-zero
	}
	code, err := m.ExitCode()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("exit code:", code)
	// Output:
	// running: true running
	// error class: CommandNotFound
	// event: STOP
	// exit code: 0
}
