"""Listeners: queues of their own, filters, the eventfd, iteration, their
life across launches and after the machine."""

import select
import threading
import time

import pytest

from qemu_machine import (
    Disconnected,
    InvalidArgument,
    Listener,
    StateError,
    Timeout,
)


def test_filters_and_the_machine_queue_are_independent(vm):
    everything = vm.listen()
    with vm.listen([("STOP", None)]) as stops:
        assert isinstance(stops, Listener)
        vm.command("stop")
        vm.command("cont")
        assert stops.wait(timeout=5)["event"] == "STOP"
        with pytest.raises(Timeout):
            stops.wait(timeout=0)
        assert [e["event"] for e in everything.take()] == ["STOP", "RESUME"]
        assert everything.take() == []
        # The machine's own queue still has both.
        assert [e["event"] for e in vm.events_take()] == ["STOP", "RESUME"]
        assert stops.dropped == 0
    assert stops.closed
    with pytest.raises(StateError, match="closed"):
        stops.wait(timeout=0)
    stops.close()  # idempotent
    everything.close()


def test_match_filters(vm):
    pattern = [("SHUTDOWN", {"data": {"guest": False}}), (None, {"event": "RESUME"})]
    with vm.listen(pattern) as events:
        vm.command("stop")
        vm.command("cont")
        assert events.wait(timeout=5)["event"] == "RESUME"
        vm.shutdown()
        event = events.wait(timeout=5)
        assert event["event"] == "SHUTDOWN"
        assert event["data"]["reason"] == "host-qmp-quit"


def test_fileno_is_readable_exactly_while_events_are_queued(vm):
    with vm.listen() as events:
        fd = events.fileno()
        assert fd >= 0
        assert select.select([fd], [], [], 0)[0] == []
        vm.command("stop")
        # The routing happens in whatever call reads QMP: here, the
        # command's own wait for its reply.
        assert select.select([events], [], [], 5)[0] == [events]
        assert events.wait(timeout=0)["event"] == "STOP"
        assert select.select([fd], [], [], 0)[0] == []


def test_iteration_ends_with_the_run(vm):
    with vm.listen() as events:
        vm.command("stop")
        vm.command("cont")
        vm.shutdown()
        names = [event["event"] for event in events]
    assert names == ["STOP", "RESUME", "SHUTDOWN"]


def test_a_waiting_thread_is_woken_by_an_event_and_by_kill(vm):
    results = []

    with vm.listen([("STOP", None)]) as events:

        def wait_all():
            for event in events:
                results.append(event["event"])

        thread = threading.Thread(target=wait_all)
        thread.start()
        time.sleep(0.1)
        vm.command("stop")
        deadline = time.monotonic() + 5
        while not results and time.monotonic() < deadline:
            time.sleep(0.01)
        assert results == ["STOP"]
        started = time.monotonic()
        vm.kill()
        thread.join(5)
        assert not thread.is_alive()
        assert time.monotonic() - started < 2
    assert results == ["STOP"]


def test_listeners_live_through_launches_and_outlive_the_machine(new_machine):
    vm = new_machine()
    events = vm.listen([("STOP", None)])
    # Never launched: a state error, as for the machine's own queue.
    with pytest.raises(StateError, match="not been launched"):
        events.wait(timeout=None)
    with pytest.raises(StateError, match="not been launched"):
        list(events)
    for _ in range(2):
        vm.launch()
        vm.command("stop")
        assert events.wait(timeout=5)["event"] == "STOP"
        vm.shutdown()
    vm.launch()
    vm.command("stop")
    vm.close()
    # Queued events stay readable; then the machine is gone.
    assert events.wait(timeout=0)["event"] == "STOP"
    with pytest.raises(Disconnected, match="freed"):
        events.wait(timeout=None)
    events.close()


def test_close_wakes_a_waiting_thread(vm):
    events = vm.listen()
    errors = []

    def wait():
        try:
            events.wait(timeout=None)
        except StateError as exc:
            errors.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.2)
    events.close()
    thread.join(5)
    assert not thread.is_alive()
    assert len(errors) == 1


def test_bad_filters(vm):
    with pytest.raises(InvalidArgument, match="at least one filter"):
        vm.listen([])
    with pytest.raises(TypeError, match="filters"):
        vm.listen("STOP")
    with pytest.raises(TypeError, match="pair"):
        vm.listen(["STOP"])
    with pytest.raises(TypeError, match="name"):
        vm.listen([(1, None)])
    with pytest.raises(TypeError, match="match"):
        vm.listen([("STOP", "data")])
    with pytest.raises(TypeError, match="timeout"):
        vm.listen().wait(timeout="1")
    # Values only the library judges: its InvalidArgument.
    with pytest.raises(InvalidArgument, match="non-empty"):
        vm.listen([("", None)])
