"""The status codes and the exception classes."""

import pytest

import qemu_machine
from qemu_machine import QemuMachineError, Status
from qemu_machine.errors import take_error

CLASSES = {
    Status.INVALID_ARGUMENT: "InvalidArgument",
    Status.STATE: "StateError",
    Status.LAUNCH: "LaunchError",
    Status.TIMEOUT: "Timeout",
    Status.DISCONNECTED: "Disconnected",
    Status.PROTOCOL: "ProtocolError",
    Status.COMMAND: "CommandError",
    Status.ABNORMAL_SHUTDOWN: "AbnormalShutdown",
    Status.IO: "IoError",
    Status.ADD_DEVICE: "AddDeviceError",
    Status.PANIC: "InternalError",
    Status.CONSOLE_FAILURE: "ConsoleFailure",
}


def test_status_values_are_the_c_ones():
    assert [status.value for status in Status] == list(range(13))
    assert Status.OK == 0 and Status.CONSOLE_FAILURE == 12
    assert Status.TIMEOUT.description == "timed out"
    assert all(status.description for status in Status)


@pytest.mark.parametrize("status", sorted(CLASSES))
def test_one_class_per_status(status):
    cls = getattr(qemu_machine, CLASSES[status])
    assert issubclass(cls, QemuMachineError)
    assert cls.status is status
    error = take_error(status, None)  # no error object: the status text
    assert type(error) is cls
    assert error.status is status
    assert error.message == str(error) == status.description


def test_builtin_bases():
    assert issubclass(qemu_machine.Timeout, TimeoutError)
    assert issubclass(qemu_machine.InvalidArgument, ValueError)
    assert issubclass(qemu_machine.Disconnected, ConnectionError)
    assert issubclass(qemu_machine.LibraryNotFoundError, ImportError)


def test_unknown_status():
    error = take_error(99, None)
    assert type(error) is QemuMachineError
    assert error.status == 99
    assert error.message == "unknown status"
