// Events as a Go channel: Listen, pause and resume QEMU, print the events.
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"qemu-machine/bindings/go/qemumachine"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := must(qemumachine.New("qemu-system-x86_64"))
	defer m.Close()
	must(0, m.AddArgs("-machine", "none", "-accel", "tcg", "-nodefaults"))
	must(0, m.Launch())

	// Every event from now on; closed when ctx ends, on Close, or once
	// the run has ended and its last event is delivered.
	events := must(m.Listen(ctx))
	must(m.Command(ctx, "stop", nil))
	must(m.Command(ctx, "cont", nil))
	must(0, m.Shutdown(10*time.Second))
	for ev := range events {
		fmt.Printf("%s %s\n", ev.Name, ev.Data)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		log.Fatal(err)
	}
	return v
}
