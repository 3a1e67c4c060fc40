"""The QEMU guest agent of a machine: :class:`Agent` and :class:`ExecResult`."""

from __future__ import annotations

import ctypes
from ctypes import byref, c_char_p, c_size_t, c_void_p
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Optional, Union

from ._convert import (
    JsonArgs,
    Seconds,
    StrPath,
    _arguments,
    _call,
    _call_bytes,
    _call_json,
    _data,
    _path,
    _strings,
    _text,
    _timeout_ms,
)
from ._native import lib
from .errors import InvalidArgument

if TYPE_CHECKING:
    from .machine import Machine

__all__ = ["Agent", "ExecResult"]

Data = Union[bytes, bytearray, memoryview, str]


@dataclass(frozen=True)
class ExecResult:
    """How a program run by :meth:`Agent.exec` ended, and its output."""

    #: The exit status (>= 0), or minus the signal that ended the program
    #: (e.g. -9).
    exit_code: int
    #: Its standard output, byte-exact.
    stdout: bytes
    #: Its standard error, byte-exact.
    stderr: bytes
    #: Whether the agent cut the output (it keeps at most 16 MiB per
    #: stream).
    truncated: bool


def _result_bytes(func: Any, result: int) -> bytes:
    length = c_size_t()
    pointer = func(result, byref(length))
    if not pointer or not length.value:
        return b""
    return ctypes.string_at(pointer, length.value)


def _take_result(result: int) -> ExecResult:
    try:
        return ExecResult(
            exit_code=lib.qm_exec_result_exit_code(result),
            stdout=_result_bytes(lib.qm_exec_result_stdout, result),
            stderr=_result_bytes(lib.qm_exec_result_stderr, result),
            truncated=bool(lib.qm_exec_result_truncated(result)),
        )
    finally:
        lib.qm_exec_result_free(result)


class Agent:
    """The QEMU guest agent (``qemu-ga``) of a machine: ``vm.agent``.

    Needs an agent channel (the ``agent`` argument of :class:`Machine`, or
    :meth:`Machine.set_agent`) and an agent running in the guest; without a
    channel every call raises :class:`AddDeviceError`. Every call first
    synchronizes the channel when its state is unknown (first use, after a
    timeout or garbage), so a late reply is never taken for another call's.
    Calls from several threads take turns, each one's timeout covering its
    wait for its turn.

    Errors as for QMP: :class:`CommandError` (the agent's error class and
    description), :class:`Timeout`, :class:`Disconnected` (QEMU gone),
    :class:`ProtocolError` (garbage from the agent; the next call
    resynchronizes), :class:`StateError` (the machine is not running).
    """

    def __init__(self, machine: Machine) -> None:
        self._machine = machine

    def __repr__(self) -> str:
        return f"<Agent of {self._machine!r}>"

    def wait_ready(self, timeout: Seconds = 60.0) -> None:
        """Wait until the agent answers (it starts late in the guest's
        boot); :class:`Timeout` says that no agent answered."""
        _call(lib.qm_agent_wait_ready, self._machine._m, _timeout_ms(timeout))

    def command(
        self,
        cmd: str,
        args: Optional[JsonArgs] = None,
        *,
        timeout: Seconds = 30.0,
        **kwargs: Any,
    ) -> Any:
        """Run agent command ``cmd`` (arguments as :meth:`Machine.command`:
        the ``args`` dict merged with keyword arguments) and return its
        ``return`` value, e.g. ``vm.agent.command("guest-info")``. Commands
        that never reply (``guest-shutdown``, ``guest-suspend-*``) return
        ``{}`` once QEMU reports their effect or exits."""
        return _call_json(
            lib.qm_agent_cmd,
            self._machine._m,
            _text(cmd, "cmd"),
            _arguments(args, kwargs),
            _timeout_ms(timeout),
        )

    def exec(
        self,
        argv: Iterable[str],
        input: Optional[Data] = None,
        timeout: Seconds = 60.0,
    ) -> ExecResult:
        """Run a program in the guest and wait for it to exit:
        ``vm.agent.exec(["uname", "-r"])``. ``argv[0]`` is a path or a name
        the guest's ``PATH`` finds; ``input`` (bytes, or a ``str`` sent as
        UTF-8) is fed to its standard input. Returns whatever its exit
        status (see :class:`ExecResult`); raises :class:`CommandError` when
        the agent cannot start it (no such program), :class:`Timeout` when
        it does not exit in time (it is left running; the message gives its
        pid in the guest)."""
        words = [_text(word, "argv") for word in _strings(argv, "argv")]
        if not words:
            raise InvalidArgument("argv must name a program")
        c_argv = (c_char_p * (len(words) + 1))(*words, None)
        raw = None if input is None else _data(input, "input")
        result = c_void_p()
        _call(
            lib.qm_agent_exec,
            self._machine._m,
            c_argv,
            raw,
            0 if raw is None else len(raw),
            _timeout_ms(timeout),
            byref(result),
        )
        assert result.value is not None
        return _take_result(result.value)

    def read_file(self, path: StrPath, timeout: Seconds = 60.0) -> bytes:
        """The whole guest file ``path``, byte-exact (any size). A missing
        file raises :class:`CommandError` with the agent's message."""
        return _call_bytes(
            lib.qm_agent_file_read,
            self._machine._m,
            _path(path, "path"),
            _timeout_ms(timeout),
        )

    def write_file(
        self, path: StrPath, data: Data, timeout: Seconds = 60.0
    ) -> None:
        """Write ``data`` (bytes, or a ``str`` as UTF-8) to the guest file
        ``path``, created or truncated."""
        raw = _data(data, "data")
        _call(
            lib.qm_agent_file_write,
            self._machine._m,
            _path(path, "path"),
            raw,
            len(raw),
            _timeout_ms(timeout),
        )
