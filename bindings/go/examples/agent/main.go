// Boot a guest that runs qemu-ga and run a program in it through the
// agent. Usage: go run ./examples/agent GUEST_DIR (the directory
// scripts/build-guest.sh prints, with vmlinux and initramfs.cpio.gz).
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"qemu-machine/bindings/go/qemumachine"
)

func main() {
	dir := os.Args[1]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := must(qemumachine.New("qemu-system-x86_64"))
	defer m.Close()
	must(0, m.AddArgs("-accel", "tcg", "-m", "256", "-nodefaults",
		"-kernel", filepath.Join(dir, "vmlinux"), "-initrd", filepath.Join(dir, "initramfs.cpio.gz"),
		"-append", "console=ttyS0"))
	must(0, m.SetConsole("", 0)) // ttyS0: the guest's shell runs there
	must(0, m.SetAgent(""))      // virtio-serial port org.qemu.guest_agent.0
	must(0, m.Launch())

	agent := m.Agent()
	must(0, agent.WaitReady(ctx)) // the guest boots, then qemu-ga answers
	r := must(agent.Exec(ctx, []string{"uname", "-r"}, nil))
	fmt.Printf("exit %d: %s", r.ExitCode, r.Stdout)
	must(0, m.Shutdown(10*time.Second))
}

func must[T any](v T, err error) T {
	if err != nil {
		log.Fatal(err)
	}
	return v
}
