"""Fixtures: QEMU machines with ``-machine none``, the Linux test guest and
QEMU's qtest accelerator module."""

import subprocess
from pathlib import Path

import pytest
from support import NONE_ARGS, QEMU, REPO, guest_args

from qemu_machine import Machine


@pytest.fixture
def new_machine():
    """A factory of ``-machine none`` QEMUs under TCG (they start in about
    20 ms), all closed at teardown. Usable from several threads."""
    made = []

    def make(**kwargs):
        kwargs.setdefault("machine_type", "none")
        machine = Machine(QEMU, NONE_ARGS, **kwargs)
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


def _built(script_name, what, files, timeout):
    """Run a build script of the repository that prints its (cached)
    output directory; fail loudly, never skip, if it cannot."""
    script = REPO / "scripts" / script_name
    result = subprocess.run(
        [str(script)], capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        pytest.fail(
            f"cannot build {what} with {script} "
            f"(exit status {result.returncode}); run it by hand "
            f"(scripts/install-deps.sh installs its tools):\n{result.stderr}",
            pytrace=False,
        )
    path = Path(result.stdout.strip().splitlines()[-1])
    for name in files:
        if not (path / name).is_file():
            pytest.fail(
                f"{script} did not produce {path / name}", pytrace=False
            )
    return path


@pytest.fixture(scope="session")
def guest_dir():
    """The test guest (vmlinux, initramfs.cpio.gz), built once and cached
    by scripts/build-guest.sh. Never skipped: failing to build it fails."""
    return _built(
        "build-guest.sh",
        "the test guest",
        ("vmlinux", "initramfs.cpio.gz"),
        600,
    )


@pytest.fixture(scope="session")
def qtest_accel_dir():
    """The directory of QEMU's qtest accelerator module (Debian deletes
    it), built once and cached by scripts/build-qtest-accel.sh. Never
    skipped: failing to build it fails."""
    return _built(
        "build-qtest-accel.sh",
        "the qtest accelerator",
        ("accel-qtest-x86_64.so",),
        3600,
    )


@pytest.fixture
def new_qtest(qtest_accel_dir):
    """A factory of ``-machine pc`` QEMUs under qtest with the accelerator
    module, the RTC on the virtual clock (as QEMU's own rtc-test), all
    closed at teardown."""
    made = []

    def make(**kwargs):
        kwargs.setdefault("env", {"QEMU_MODULE_DIR": qtest_accel_dir})
        machine = Machine(
            QEMU,
            ["-nodefaults", "-rtc", "clock=vm"],
            machine_type="pc",
            qtest=True,
            **kwargs,
        )
        made.append(machine)
        return machine

    yield make
    for machine in made:
        machine.close()


@pytest.fixture
def guest(guest_dir):
    """A factory of Linux guests with a serial console, all closed at
    teardown."""
    made = []

    def make(console_log=None):
        machine = Machine(QEMU, guest_args(guest_dir))
        made.append(machine)
        machine.set_console()
        if console_log is not None:
            machine.set_console_log(console_log)
        return machine

    yield make
    for machine in made:
        machine.close()
