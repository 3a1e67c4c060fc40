"""Several Python threads on one machine, and machines in parallel.

ctypes releases the GIL during each call into the library, so these
threads really run at once inside it.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from qemu_machine import Disconnected


def test_commands_from_threads_while_another_waits(vm):
    waiter_result = {}
    waiting = threading.Event()

    def wait_for_stop():
        waiting.set()
        waiter_result["event"] = vm.event_wait("STOP", timeout=30)

    def hammer(index):
        statuses = set()
        for i in range(100):
            statuses.add(vm.command("query-status")["status"])
            if index == 0 and i == 50:
                vm.command("stop")
        return statuses

    waiter = threading.Thread(target=wait_for_stop)
    waiter.start()
    assert waiting.wait(5)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(hammer, range(4)))
    waiter.join(30)
    assert not waiter.is_alive()
    assert waiter_result["event"]["event"] == "STOP"
    assert set().union(*results) <= {"running", "paused"}
    assert vm.command("query-status")["status"] == "paused"


def test_machines_in_parallel(new_machine):
    def run(index):
        vm = new_machine(name=f"parallel-{index}")
        vm.launch()
        vm.command("stop")
        event = vm.event_wait("STOP", timeout=10)
        vm.shutdown()
        return event["event"], vm.exit_code

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(8)))
    assert results == [("STOP", 0)] * 8


@pytest.mark.parametrize("stop", ["kill", "close"])
def test_kill_or_close_wakes_a_waiting_thread(vm, stop):
    errors = []

    def wait_forever():
        try:
            vm.event_wait("NEVER", timeout=None)
        except Disconnected as exc:
            errors.append(exc)

    thread = threading.Thread(target=wait_forever)
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    getattr(vm, stop)()
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 2
    assert len(errors) == 1
    assert "signal 9" in errors[0].message
