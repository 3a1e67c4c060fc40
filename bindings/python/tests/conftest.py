"""Fixtures: QEMU machines with ``-machine none`` and the Linux test guest."""

import subprocess
from pathlib import Path

import pytest
from support import NONE_ARGS, QEMU, REPO

from qemu_machine import Machine


@pytest.fixture
def new_machine():
    """A factory of ``-machine none`` QEMUs under TCG (they start in about
    20 ms), all closed at teardown. Usable from several threads."""
    made = []

    def make(**kwargs):
        machine = Machine(QEMU, NONE_ARGS, machine_type="none", **kwargs)
        made.append(machine)
        return machine

    yield make
    for machine in made:
        machine.close()


@pytest.fixture
def vm(new_machine):
    """A launched ``-machine none`` machine."""
    machine = new_machine()
    machine.launch()
    return machine


@pytest.fixture(scope="session")
def guest_dir():
    """The test guest (vmlinux, initramfs.cpio.gz), built once and cached
    by scripts/build-guest.sh. Never skipped: failing to build it fails."""
    script = REPO / "scripts" / "build-guest.sh"
    result = subprocess.run(
        [str(script)], capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        pytest.fail(
            f"cannot build the test guest with {script} "
            f"(exit status {result.returncode}); run it by hand "
            f"(scripts/install-deps.sh installs its tools):\n{result.stderr}",
            pytrace=False,
        )
    path = Path(result.stdout.strip().splitlines()[-1])
    for name in ("vmlinux", "initramfs.cpio.gz"):
        if not (path / name).is_file():
            pytest.fail(
                f"{script} did not produce {path / name}", pytrace=False
            )
    return path


@pytest.fixture
def guest(guest_dir):
    """A factory of Linux guests with a serial console, all closed at
    teardown."""
    made = []

    def make(console_log=None):
        machine = Machine(
            QEMU,
            [
                "-accel", "tcg", "-m", "256", "-nodefaults", "-no-reboot",
                "-kernel", str(guest_dir / "vmlinux"),
                "-initrd", str(guest_dir / "initramfs.cpio.gz"),
                "-append", "console=ttyS0 panic=-1",
            ],
        )
        made.append(machine)
        machine.set_console()
        if console_log is not None:
            machine.set_console_log(console_log)
        return machine

    yield make
    for machine in made:
        machine.close()
