// Read the CMOS real-time clock through I/O ports 0x70/0x71 under qtest,
// stepping the virtual clock. Usage: go run ./examples/qtest MODULE_DIR
// (the directory scripts/build-qtest-accel.sh prints, with QEMU's qtest
// accelerator module).
package main

import (
	"fmt"
	"log"
	"os"
	"time"

	"qemu-machine/bindings/go/qemumachine"
)

func main() {
	m := must(qemumachine.New("qemu-system-x86_64"))
	defer m.Close()
	must(0, m.SetMachineType("pc"))
	must(0, m.AddArgs("-nodefaults", "-rtc", "clock=vm"))
	must(0, m.SetQtest()) // -accel qtest: no guest code runs
	must(0, m.SetEnv("QEMU_MODULE_DIR", os.Args[1]))
	must(0, m.Launch())

	q := m.Qtest()
	cmos := func(reg uint8) uint8 {
		must(0, q.Outb(0x70, reg))
		return must(q.Inb(0x71))
	}
	must(0, q.Outb(0x70, 0x0b))
	must(0, q.Outb(0x71, cmos(0x0b)|0x04)) // binary, not BCD
	before := cmos(0x00)
	now := must(q.ClockStep(int64(5 * time.Second)))
	fmt.Printf("virtual time %v: seconds %d -> %d\n", time.Duration(now), before, cmos(0x00))
	must(0, m.Shutdown(10*time.Second))
}

func must[T any](v T, err error) T {
	if err != nil {
		log.Fatal(err)
	}
	return v
}
