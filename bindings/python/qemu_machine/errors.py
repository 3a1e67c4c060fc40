"""Status codes and the exceptions raised for them."""

from __future__ import annotations

import enum
from typing import Dict, Optional, Type, Union

from ._native import lib

__all__ = [
    "AbnormalShutdown",
    "AddDeviceError",
    "CommandError",
    "ConsoleFailure",
    "Disconnected",
    "InternalError",
    "InvalidArgument",
    "IoError",
    "LaunchError",
    "ProtocolError",
    "QemuMachineError",
    "StateError",
    "Status",
    "Timeout",
]


class Status(enum.IntEnum):
    """The C library's ``qm_status`` codes, with the same values."""

    OK = 0
    INVALID_ARGUMENT = 1
    STATE = 2
    LAUNCH = 3
    TIMEOUT = 4
    DISCONNECTED = 5
    PROTOCOL = 6
    COMMAND = 7
    ABNORMAL_SHUTDOWN = 8
    IO = 9
    ADD_DEVICE = 10
    PANIC = 11
    CONSOLE_FAILURE = 12

    @property
    def description(self) -> str:
        """The library's description of the status (``qm_status_str``)."""
        text: bytes = lib.qm_status_str(self.value)
        return text.decode("utf-8")


class QemuMachineError(Exception):
    """A failed call.

    ``status`` is the :class:`Status` of the failure (a plain ``int`` only
    for a code newer than this binding), ``message`` the library's
    explanation, which is also ``str(exc)``. Each status has its own
    subclass; this class itself is raised only for unknown codes.
    """

    status: Union[Status, int]

    def __init__(
        self, message: str, status: Optional[Union[Status, int]] = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        elif not hasattr(self, "status"):
            raise TypeError("QemuMachineError needs a status")

    def __str__(self) -> str:
        return self.message


class InvalidArgument(QemuMachineError, ValueError):
    """A bad argument: NULL, not UTF-8, bad JSON, a value out of range."""

    status = Status.INVALID_ARGUMENT


class StateError(QemuMachineError):
    """The machine is in the wrong lifecycle state for the call."""

    status = Status.STATE


class LaunchError(QemuMachineError):
    """QEMU did not start; the message holds its exit status and output."""

    status = Status.LAUNCH


class Timeout(QemuMachineError, TimeoutError):
    """The timeout passed first."""

    status = Status.TIMEOUT


class Disconnected(QemuMachineError, ConnectionError):
    """The QMP or console connection is gone, usually as QEMU exited."""

    status = Status.DISCONNECTED


class ProtocolError(QemuMachineError):
    """The peer broke the QMP protocol."""

    status = Status.PROTOCOL


class CommandError(QemuMachineError):
    """QMP answered with an error.

    ``qmp_class`` is its class (e.g. ``"CommandNotFound"``), ``desc`` its
    description.
    """

    status = Status.COMMAND

    def __init__(
        self,
        message: str,
        qmp_class: Optional[str] = None,
        desc: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.qmp_class = qmp_class
        self.desc = desc


class AbnormalShutdown(QemuMachineError):
    """A graceful shutdown failed; QEMU was killed and reaped anyway."""

    status = Status.ABNORMAL_SHUTDOWN


class IoError(QemuMachineError):
    """An operating-system call failed."""

    status = Status.IO


class AddDeviceError(QemuMachineError):
    """A request the machine's configuration cannot fulfil."""

    status = Status.ADD_DEVICE


class InternalError(QemuMachineError):
    """A bug inside the library, caught at the API boundary."""

    status = Status.PANIC


class ConsoleFailure(QemuMachineError):
    """The console showed the failure pattern before the success one."""

    status = Status.CONSOLE_FAILURE


_CLASSES: Dict[int, Type[QemuMachineError]] = {
    cls.status: cls
    for cls in (
        InvalidArgument,
        StateError,
        LaunchError,
        Timeout,
        Disconnected,
        ProtocolError,
        CommandError,
        AbnormalShutdown,
        IoError,
        AddDeviceError,
        InternalError,
        ConsoleFailure,
    )
}


def _text(raw: Optional[bytes]) -> Optional[str]:
    return None if raw is None else raw.decode("utf-8", "replace")


def take_error(status: int, err: Optional[int]) -> QemuMachineError:
    """Build the exception for a failed call and free ``err``."""
    try:
        if err:
            status = lib.qm_error_status(err)
            message = _text(lib.qm_error_message(err)) or ""
            qmp_class = _text(lib.qm_error_qmp_class(err))
            desc = _text(lib.qm_error_qmp_desc(err))
        else:
            message, qmp_class, desc = "", None, None
    finally:
        lib.qm_error_free(err)
    if not message:
        message = lib.qm_status_str(status).decode("utf-8", "replace")
    cls = _CLASSES.get(status)
    if cls is None:
        return QemuMachineError(message, status)
    if cls is CommandError:
        return CommandError(message, qmp_class, desc)
    return cls(message)
