"""QMP events: waits by name and pattern, several filters, timeouts that
consume nothing, FIFO order, events after exit, event_match."""

import time

import pytest

from qemu_machine import Disconnected, Status, Timeout, event_match


def test_event_wait_with_wildcard_match(vm):
    vm.command("stop")
    event = vm.event_wait("STOP", {"timestamp": {"seconds": None}}, timeout=5)
    assert event["event"] == "STOP"
    assert isinstance(event["timestamp"]["seconds"], int)
    # None as a wildcard still needs the key: STOP has no "data".
    vm.command("cont")
    with pytest.raises(Timeout):
        vm.event_wait("RESUME", {"data": None}, timeout=0.2)
    # Any name, selected by the pattern.
    event = vm.event_wait(None, {"event": "RESUME"}, timeout=5)
    assert event["event"] == "RESUME"


def test_events_wait_several_filters(vm):
    vm.command("stop")
    vm.command("cont")
    filters = [
        ("RESUME", None),
        ("SHUTDOWN", {"data": {"guest": True}}),
    ]
    assert vm.events_wait(filters, timeout=5)["event"] == "RESUME"
    # STOP, which no filter passed, is still first in the queue.
    assert vm.event_get(timeout=0)["event"] == "STOP"
    vm.command("stop")
    event = vm.events_wait([(None, {"event": "STOP"}), ("RESUME", None)], 5)
    assert event["event"] == "STOP"


def test_timeouts_consume_nothing(vm):
    # QEMU sends each event before the reply of the command causing it.
    vm.command("stop")
    vm.command("cont")
    with pytest.raises(Timeout) as info:
        vm.event_wait("DEVICE_DELETED", timeout=0)
    assert info.value.status == Status.TIMEOUT
    assert isinstance(info.value, TimeoutError)
    assert "2 other events are queued" in info.value.message
    started = time.monotonic()
    with pytest.raises(Timeout):
        vm.event_wait("STOP", {"data": {"x": None}}, timeout=0.2)
    assert 0.19 <= time.monotonic() - started < 2
    with pytest.raises(Timeout):
        vm.events_wait([("DEVICE_DELETED", None), ("STOP", {"x": 1})], 0.1)
    names = [event["event"] for event in vm.events_take()]
    assert names == ["STOP", "RESUME"]
    assert vm.events_take() == []
    with pytest.raises(Timeout):
        vm.event_get(timeout=0)
    with pytest.raises(Timeout):
        vm.event_get(timeout=0.0001)  # rounded up to 1 ms, not a poll
    assert vm.events_dropped == 0


def test_fifo_order(vm):
    for _ in range(3):
        vm.command("stop")
        vm.command("cont")
    names = []
    while len(names) < 6:
        names.append(vm.event_get(timeout=5)["event"])
    assert names == ["STOP", "RESUME"] * 3


def test_events_after_exit(vm):
    vm.shutdown()
    event = vm.event_wait("SHUTDOWN", {"data": {"guest": False}}, timeout=0)
    assert event["data"]["reason"] == "host-qmp-quit"
    started = time.monotonic()
    with pytest.raises(Disconnected):
        vm.event_wait("STOP", timeout=None)
    assert time.monotonic() - started < 1
    # A new launch clears the previous run's events.
    vm.launch()
    assert vm.events_take() == []


def test_event_match():
    event = {
        "event": "SHUTDOWN",
        "data": {"guest": True, "reason": "guest-shutdown"},
        "timestamp": {"seconds": 1, "microseconds": 2},
    }
    assert event_match(event, None)
    assert event_match(event, {})
    assert event_match(event, {"data": {"guest": True}})
    assert event_match(event, {"data": {"reason": None}})
    assert event_match(event, {"event": "SHUTDOWN", "data": None})
    assert not event_match(event, {"data": {"guest": False}})
    assert not event_match(event, {"data": {"missing": None}})
    assert not event_match(event, {"event": "STOP"})
