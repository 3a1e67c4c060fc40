"""The serial console, against the real Linux guest."""

import time

import pytest

from qemu_machine.errors import AddDeviceError
from support import PROMPT, boot

from qemu_machine import ConsoleFailure, Disconnected, StateError, Timeout


def test_console_exec_and_poweroff(guest, tmp_path):
    console_log = tmp_path / "console.log"
    vm = guest(console_log=console_log)
    output = boot(vm)
    assert "Linux version" in output
    assert output.endswith("QM-GUEST-READY")

    output = vm.console_exec("echo $((6*7))", "42", timeout=10)
    assert "echo $((6*7))" in output
    assert vm.console_wait(PROMPT, timeout=10).endswith(PROMPT)

    vm.console_exec("echo partial-$((1+1))", "partial-2", timeout=10)
    started = time.monotonic()
    with pytest.raises(Timeout) as info:
        vm.console_wait("NEVER-SEEN", timeout=0.5)
    assert PROMPT in info.value.message  # the output seen so far
    assert 0.49 <= time.monotonic() - started < 2

    with pytest.raises(ConsoleFailure, match="FAIL-2"):
        vm.console_exec(
            "echo FAIL-$((1+1)); sleep 1; echo OK-$((1+2))",
            "OK-3",
            "FAIL-2",
            timeout=10,
        )
    vm.console_wait("OK-3", timeout=10)

    vm.console_write("echo w-$((3*3))\r")
    vm.console_wait("w-9", timeout=10)
    vm.console_wait(PROMPT, timeout=10)
    vm.console_write(b"echo bytes-$((2+2))\r")
    vm.console_wait("bytes-4", timeout=10)
    vm.console_wait(PROMPT, timeout=10)
    assert "bytes-4" not in vm.console_read()
    assert vm.console_dropped == 0

    vm.console_write("poweroff -f\r")
    assert vm.wait(timeout=60) == 0
    assert vm.exit_code == 0
    event = vm.event_wait("SHUTDOWN", {"data": {"guest": True}}, timeout=0)
    assert event["data"]["reason"] == "guest-shutdown"
    with pytest.raises(StateError):
        vm.console_write("x")
    # Output stays readable after QEMU has exited.
    assert isinstance(vm.console_read(), str)

    text = console_log.read_text(errors="replace")
    assert "Linux version" in text and "QM-GUEST-READY" in text


def test_console_wait_sees_qemu_die(guest):
    vm = guest()
    boot(vm)
    vm.command("quit")
    with pytest.raises(Disconnected):
        vm.console_wait("NEVER-SEEN", timeout=30)
    vm.shutdown()
    assert vm.exit_code == 0


def test_console_needs_one(vm):
    with pytest.raises(AddDeviceError):
        vm.console_read()
