"""qtest, QEMU's device-test protocol: the :class:`QTest` class."""

from __future__ import annotations

import ctypes
from ctypes import c_bool, c_int64, c_uint32, c_uint64
from typing import TYPE_CHECKING, Optional, Union

from ._convert import (
    _call,
    _call_int,
    _call_string,
    _data,
    _integer,
    _text,
)
from ._native import lib

if TYPE_CHECKING:
    from .machine import Machine

__all__ = ["QTest"]

_U64_MAX = 2**64 - 1
_INT_MIN = -(2**31)
_INT_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_SIZE_MAX = ctypes.c_size_t(-1).value


def _address(addr: int) -> int:
    return _integer(addr, 0, _U64_MAX, "addr")


def _port(port: int) -> int:
    return _integer(port, 0, 65535, "port")


def _size(size: int) -> int:
    # The library checks the allowed sizes (1, 2, 4, 8; 1, 2, 4 for ports).
    return _integer(size, 0, 2**32 - 1, "size")


class QTest:
    """qtest, QEMU's device-test protocol, on a machine: ``vm.qtest``.

    Needs :meth:`Machine.set_qtest` (or ``Machine(qtest=True)``); without
    it every call raises :class:`AddDeviceError`. No guest code runs: the
    test reads and writes guest memory and I/O ports, steps the virtual
    clock and watches interrupt lines. Memory is in guest byte order.

    Every call is bounded by the qtest timeout (:meth:`Machine.set_qtest_timeout`,
    default 30 s) and raises :class:`CommandError` when QEMU answers
    ``FAIL`` or ``ERR`` (``qmp_class`` is ``"FAIL"`` or ``"ERR"``, ``desc``
    QEMU's text), :class:`Timeout`, :class:`Disconnected` (QEMU gone),
    :class:`ProtocolError`, :class:`StateError` (not running). Arguments
    are checked before anything is sent (QEMU aborts on malformed input):
    :class:`InvalidArgument` for a bad size, a value that does not fit, a
    space or newline in a path.
    """

    def __init__(self, machine: Machine) -> None:
        self._machine = machine

    def __repr__(self) -> str:
        return f"<QTest of {self._machine!r}>"

    def raw(self, line: str) -> str:
        """Send one protocol line (words separated by single spaces, no
        newline) and return QEMU's reply, ``"OK"`` or ``"OK ..."``: for
        commands the other methods do not cover, e.g. ``raw("endianness")``.
        """
        return _call_string(
            lib.qm_qtest_raw, self._machine._m, _text(line, "line")
        )

    # -- memory -------------------------------------------------------------

    def read(self, addr: int, size: int) -> int:
        """Read ``size`` bytes (1, 2, 4 or 8) of guest memory at ``addr``."""
        return _call_int(
            lib.qm_qtest_read,
            c_uint64,
            self._machine._m,
            _address(addr),
            _size(size),
        )

    def write(self, addr: int, size: int, value: int) -> None:
        """Write ``value`` as ``size`` bytes (1, 2, 4 or 8) of guest memory
        at ``addr``; ``value`` must fit."""
        _call(
            lib.qm_qtest_write,
            self._machine._m,
            _address(addr),
            _size(size),
            _integer(value, 0, _U64_MAX, "value"),
        )

    def readb(self, addr: int) -> int:
        """Read one byte of guest memory."""
        return self.read(addr, 1)

    def readw(self, addr: int) -> int:
        """Read 2 bytes of guest memory."""
        return self.read(addr, 2)

    def readl(self, addr: int) -> int:
        """Read 4 bytes of guest memory."""
        return self.read(addr, 4)

    def readq(self, addr: int) -> int:
        """Read 8 bytes of guest memory."""
        return self.read(addr, 8)

    def writeb(self, addr: int, value: int) -> None:
        """Write one byte of guest memory."""
        self.write(addr, 1, value)

    def writew(self, addr: int, value: int) -> None:
        """Write 2 bytes of guest memory."""
        self.write(addr, 2, value)

    def writel(self, addr: int, value: int) -> None:
        """Write 4 bytes of guest memory."""
        self.write(addr, 4, value)

    def writeq(self, addr: int, value: int) -> None:
        """Write 8 bytes of guest memory."""
        self.write(addr, 8, value)

    def memread(self, addr: int, length: int) -> bytes:
        """Read ``length`` bytes of guest memory at ``addr`` (any length)."""
        length = _integer(length, 0, _SIZE_MAX, "length")
        buffer = ctypes.create_string_buffer(length)
        _call(
            lib.qm_qtest_memread,
            self._machine._m,
            _address(addr),
            buffer,
            length,
        )
        return buffer.raw

    def memwrite(
        self, addr: int, data: Union[bytes, bytearray, memoryview]
    ) -> None:
        """Write ``data`` (any length) to guest memory at ``addr``."""
        if isinstance(data, str):
            raise TypeError("data must be bytes, not str")
        raw = _data(data, "data")
        _call(
            lib.qm_qtest_memwrite,
            self._machine._m,
            _address(addr),
            raw,
            len(raw),
        )

    def memset(self, addr: int, byte: int, length: int) -> None:
        """Fill ``length`` bytes of guest memory at ``addr`` with ``byte``."""
        _call(
            lib.qm_qtest_memset,
            self._machine._m,
            _address(addr),
            _integer(byte, 0, 255, "byte"),
            _integer(length, 0, _SIZE_MAX, "length"),
        )

    # -- I/O ports ----------------------------------------------------------

    def port_in(self, port: int, size: int) -> int:
        """Read I/O port ``port``, ``size`` bytes (1, 2 or 4) wide."""
        return _call_int(
            lib.qm_qtest_in,
            c_uint32,
            self._machine._m,
            _port(port),
            _size(size),
        )

    def port_out(self, port: int, size: int, value: int) -> None:
        """Write ``value`` to I/O port ``port``, ``size`` bytes (1, 2 or 4)
        wide; ``value`` must fit."""
        _call(
            lib.qm_qtest_out,
            self._machine._m,
            _port(port),
            _size(size),
            _integer(value, 0, 2**32 - 1, "value"),
        )

    def inb(self, port: int) -> int:
        """Read one byte from an I/O port."""
        return self.port_in(port, 1)

    def inw(self, port: int) -> int:
        """Read 2 bytes from an I/O port."""
        return self.port_in(port, 2)

    def inl(self, port: int) -> int:
        """Read 4 bytes from an I/O port."""
        return self.port_in(port, 4)

    def outb(self, port: int, value: int) -> None:
        """Write one byte to an I/O port."""
        self.port_out(port, 1, value)

    def outw(self, port: int, value: int) -> None:
        """Write 2 bytes to an I/O port."""
        self.port_out(port, 2, value)

    def outl(self, port: int, value: int) -> None:
        """Write 4 bytes to an I/O port."""
        self.port_out(port, 4, value)

    # -- the virtual clock (needs -accel qtest) -------------------------------

    def clock_step(self, ns: Optional[int] = None) -> int:
        """Advance the virtual clock by ``ns`` nanoseconds (``None``: to the
        next timer deadline), running the timers that fall due, and return
        the new virtual time in nanoseconds. Needs ``-accel qtest`` (the
        default under qtest): otherwise :class:`CommandError` says so."""
        step = -1 if ns is None else _integer(ns, 0, _INT64_MAX, "ns")
        return _call_int(
            lib.qm_qtest_clock_step, c_int64, self._machine._m, step
        )

    def clock_set(self, ns: int) -> int:
        """Move the virtual clock to ``ns`` nanoseconds if that is later (it
        never goes back) and return the new virtual time."""
        return _call_int(
            lib.qm_qtest_clock_set,
            c_int64,
            self._machine._m,
            _integer(ns, 0, _INT64_MAX, "ns"),
        )

    # -- interrupt lines ------------------------------------------------------

    def irq_intercept_in(self, qom_path: str) -> None:
        """Intercept the GPIO input lines of the device at ``qom_path``
        (e.g. ``"ioapic"``), so that :meth:`get_irq` reads them. One device
        can be intercepted per run."""
        _call(
            lib.qm_qtest_irq_intercept_in,
            self._machine._m,
            _text(qom_path, "qom_path"),
        )

    def irq_intercept_out(self, qom_path: str) -> None:
        """Intercept the GPIO output lines of the device at ``qom_path``."""
        _call(
            lib.qm_qtest_irq_intercept_out,
            self._machine._m,
            _text(qom_path, "qom_path"),
        )

    def get_irq(self, line: int) -> bool:
        """Whether intercepted line ``line`` is raised, as QEMU last
        reported it (never waits)."""
        raised = c_bool()
        _call(
            lib.qm_qtest_get_irq,
            self._machine._m,
            _integer(line, _INT_MIN, _INT_MAX, "line"),
            ctypes.byref(raised),
        )
        return raised.value

    def set_irq_in(
        self, qom_path: str, name: str, line: int, level: Union[int, bool]
    ) -> None:
        """Set input line ``line`` of the GPIO list ``name`` of the device
        at ``qom_path`` to ``level`` (an int, or a bool for 1 and 0)."""
        if isinstance(level, bool):
            level = int(level)
        _call(
            lib.qm_qtest_set_irq_in,
            self._machine._m,
            _text(qom_path, "qom_path"),
            _text(name, "name"),
            _integer(line, _INT_MIN, _INT_MAX, "line"),
            _integer(level, _INT_MIN, _INT_MAX, "level"),
        )
