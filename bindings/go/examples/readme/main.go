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
	defer m.Close() // kills QEMU if it still runs, removes its temporary directory
	must(0, m.AddArgs("-machine", "none", "-accel", "tcg", "-nodefaults"))
	must(0, m.Launch()) // on failure: QEMU's exit status, command line and output
	fmt.Printf("query-status: %s\n", must(m.Command(ctx, "query-status", nil)))
	must(m.Command(ctx, "stop", nil))
	fmt.Printf("event: %s\n", must(m.EventWait(ctx, "STOP", nil)))
	must(0, m.Shutdown(10*time.Second)) // nil only if QEMU exited with status 0
}

func must[T any](v T, err error) T {
	if err != nil {
		log.Fatal(err)
	}
	return v
}
