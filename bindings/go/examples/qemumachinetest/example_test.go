// Tests with package qemumachinetest: a machine per test, shut down and
// freed when the test ends; its artifacts saved and logged when it fails
// (under $QM_ARTIFACTS_DIR if set).
package example_test

import (
	"context"
	"testing"
	"time"

	"qemu-machine/bindings/go/qemumachinetest"
)

const qemu = "qemu-system-x86_64"

func TestStopEmitsSTOP(t *testing.T) {
	qemumachinetest.SkipUnlessMachine(t, qemu, "none")
	m := qemumachinetest.New(t, qemu,
		qemumachinetest.MachineType("none"),
		qemumachinetest.Args("-accel", "tcg", "-nodefaults"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	events, err := m.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Command(ctx, "stop", nil); err != nil {
		t.Fatal(err)
	}
	if ev := <-events; ev.Name != "STOP" {
		t.Fatalf("got %s, want STOP", ev)
	}
}
