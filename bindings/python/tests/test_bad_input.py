"""Bad input is refused before any call into the library: wrong Python
types raise TypeError, bad values InvalidArgument (a ValueError). Values
only the library can judge raise its InvalidArgument."""

import math

import pytest

from qemu_machine import InvalidArgument, Machine, QemuMachineError, Status
from qemu_machine.machine import _timeout_ms


def test_timeout_conversion():
    assert _timeout_ms(None) == -1
    assert _timeout_ms(math.inf) == -1
    assert _timeout_ms(0) == 0
    assert _timeout_ms(0.0) == 0
    assert _timeout_ms(0.0001) == 1  # never rounded down to a poll
    assert _timeout_ms(0.3) == 300
    assert _timeout_ms(1.5) == 1500
    assert _timeout_ms(2147483.647) == 2147483647


@pytest.mark.parametrize("timeout", [-1, -0.001, math.nan, 2147483.648, 1e300])
def test_bad_timeout_values(vm, timeout):
    with pytest.raises(InvalidArgument) as info:
        vm.command("query-status", timeout=timeout)
    assert isinstance(info.value, ValueError)
    assert info.value.status == Status.INVALID_ARGUMENT
    assert "timeout" in info.value.message


@pytest.mark.parametrize("timeout", ["1", True, [1]])
def test_bad_timeout_types(vm, timeout):
    with pytest.raises(TypeError, match="timeout"):
        vm.event_get(timeout=timeout)


def test_bad_arguments(vm):
    for args in ([1, 2], "path=/machine", 42):
        with pytest.raises(TypeError, match="args must be a dict"):
            vm.command("qom-get", args)
    with pytest.raises(TypeError, match="match must be a dict"):
        vm.event_wait("STOP", ["data"], timeout=0)
    with pytest.raises(TypeError, match="filter"):
        vm.events_wait(["STOP"], timeout=0)
    # The library would wait the whole timeout for nothing.
    with pytest.raises(InvalidArgument, match="at least one filter"):
        vm.events_wait([], timeout=None)
    with pytest.raises(TypeError, match="str"):
        vm.command(b"query-status")
    with pytest.raises(TypeError, match="bytes or str"):
        vm.console_write(42)
    with pytest.raises(TypeError):
        vm.command("qom-get", {"path": object()})  # not JSON
    # The machine still works.
    assert vm.command("query-status")["status"] == "running"


def test_nul_and_bad_unicode_in_strings(vm):
    with pytest.raises(InvalidArgument, match="NUL"):
        vm.command("query-status\0ignored")
    with pytest.raises(InvalidArgument, match="Unicode"):
        vm.command("query-\udc80")
    # A NUL inside JSON is escaped, hence fine.
    vm.command("qom-set", path="/machine", property="append", value="a\0b")


def test_out_of_range_integers(new_machine):
    vm = new_machine()
    with pytest.raises(InvalidArgument, match="port"):
        vm.set_monitor_tcp("127.0.0.1", 65536)
    with pytest.raises(InvalidArgument, match="fd"):
        vm.add_fd(-1, 1, "opaque")
    with pytest.raises(InvalidArgument, match="fdset"):
        vm.add_fd(0, -1, "opaque")
    with pytest.raises(InvalidArgument, match="console_index"):
        vm.set_console(None, -1)
    with pytest.raises(TypeError):
        vm.set_monitor_tcp("127.0.0.1", "4444")


def test_library_checks(new_machine):
    vm = new_machine()
    # Values only the library judges: its InvalidArgument, with its message.
    with pytest.raises(InvalidArgument, match="console index"):
        vm.set_console(None, 65)
    with pytest.raises(InvalidArgument, match="plain file name"):
        vm.set_name("a/b")
    with pytest.raises(InvalidArgument, match="107"):
        vm.set_monitor_unix("/tmp/" + "x" * 200)
    with pytest.raises(InvalidArgument, match="non-empty"):
        vm.set_monitor_tcp("", 1)
    with pytest.raises(InvalidArgument, match="must not be empty"):
        vm.console_wait("", timeout=0)


def test_constructor_checks():
    with pytest.raises(TypeError, match="single string"):
        Machine(args="-accel tcg")
    with pytest.raises(TypeError, match="binary"):
        Machine(None)
    with pytest.raises(QemuMachineError):
        Machine(name="bad/name")
