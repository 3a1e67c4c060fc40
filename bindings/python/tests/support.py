"""Constants and helpers shared by the tests."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PACKAGE_ROOT = REPO / "bindings" / "python"
#: The QEMU binary (``QM_TEST_QEMU`` overrides, as in the Rust and C tests).
QEMU = os.environ.get("QM_TEST_QEMU", "qemu-system-x86_64")
#: ``-machine none`` under TCG without default devices starts in ~20 ms.
NONE_ARGS = ("-accel", "tcg", "-nodefaults")
PROMPT = "guest# "


def boot(machine):
    """Launch a guest and wait for its shell; return the boot output."""
    machine.launch()
    output = machine.console_wait("QM-GUEST-READY", "Kernel panic", timeout=60)
    machine.console_wait(PROMPT, timeout=30)
    return output


def guest_args(guest_dir):
    """QEMU's arguments for the test guest, its console on ttyS0."""
    return [
        "-accel", "tcg", "-m", "256", "-nodefaults", "-no-reboot",
        "-kernel", str(guest_dir / "vmlinux"),
        "-initrd", str(guest_dir / "initramfs.cpio.gz"),
        "-append", "console=ttyS0 panic=-1",
    ]


def kernel_release(guest_dir):
    """The kernel release the test guest runs (from its package name)."""
    package = (guest_dir / "kernel-package").read_text().strip()
    return package[len("linux-image-"):]


def open_fds():
    """This process's open descriptors and what they are."""
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[int(fd)] = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            pass  # the directory's own descriptor
    return fds
