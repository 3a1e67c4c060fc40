"""Boot the test guest and run a program in it through the guest agent."""
import sys

from qemu_machine import Machine

guest = sys.argv[1]  # scripts/build-guest.sh prints it
with Machine(
    args=["-accel", "tcg", "-m", "256", "-nodefaults",
          "-kernel", f"{guest}/vmlinux", "-initrd", f"{guest}/initramfs.cpio.gz",
          "-append", "console=ttyS0"],
    agent=True,  # a virtio-serial port named org.qemu.guest_agent.0
) as vm:
    vm.set_console()  # the guest's shell runs on ttyS0
    vm.launch()
    vm.agent.wait_ready(timeout=60)  # qemu-ga starts late in the boot
    result = vm.agent.exec(["uname", "-r"])
    print("exit code:", result.exit_code)
    print("output:", result.stdout.decode().strip())
