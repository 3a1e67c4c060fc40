import pytest
from qemu_machine import probe

QEMU = "qemu-system-x86_64"


def test_pause_and_resume(qemu_machine):
    vm = qemu_machine(QEMU, args=["-accel", "tcg"], machine_type="none")
    vm.launch()
    vm.command("stop")
    assert vm.event_wait("STOP", timeout=5)["event"] == "STOP"
    assert vm.command("query-status")["status"] == "paused"
    # No shutdown: the fixture does it at teardown, and if the test failed
    # the report holds QEMU's log, console, QMP traffic and events.


@pytest.mark.skipif(not probe(QEMU, "machine", "q35"),
                    reason="this QEMU has no q35 machine")
def test_q35_starts(qemu_machine):
    vm = qemu_machine(QEMU, args=["-accel", "tcg", "-S"], machine_type="q35")
    vm.launch()
    assert vm.command("query-status")["status"] == "prelaunch"
