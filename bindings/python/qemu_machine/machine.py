"""The :class:`Machine` class, :func:`event_match`, :func:`probe` and
:func:`migrate`."""

from __future__ import annotations

import collections.abc
import enum
import json
import weakref
from ctypes import byref, c_bool, c_int, c_uint16, c_uint64
from typing import Any, Iterable, List, Mapping, Optional, Union

from ._convert import (
    _INT_MAX,
    EventFilter,
    FileDescriptor,
    JsonArgs,
    JsonObject,
    Seconds,
    StrPath,
    _arguments,
    _call,
    _call_bytes,
    _call_int,
    _call_json,
    _call_string,
    _data,
    _fd,
    _filters_json,
    _integer,
    _json_object,
    _new_machine,
    _optional_text,
    _path,
    _strings,
    _text,
    _timeout_ms,
)
from ._native import lib
from .agent import Agent
from .errors import StateError
from .listener import Listener
from .qtest import QTest

__all__ = ["Machine", "event_match", "migrate", "probe"]


class _Default(enum.Enum):
    """The default of an argument that, left out, changes nothing."""

    DEFAULT = "default"


_DEFAULT = _Default.DEFAULT


def event_match(event: JsonArgs, match: Optional[JsonArgs]) -> bool:
    """Whether ``event`` matches ``match``, as :meth:`Machine.event_wait`
    matches: ``match`` is a sub-dict of the event, checked recursively, in
    which ``None`` is a wildcard (QEMU's ``QEMUMachine.event_match``).
    ``match`` ``None`` matches every event.
    """
    if not isinstance(event, collections.abc.Mapping):
        raise TypeError(f"event must be a dict, not {type(event).__name__}")
    event_json = json.dumps(dict(event)).encode("utf-8")
    match_json = _json_object(match, "match") or b"null"
    matches = c_bool(False)
    _call(lib.qm_event_match, event_json, match_json, byref(matches))
    return matches.value


class Machine:
    """A QEMU virtual machine driven through libqemu_machine.

    Configure it (constructor arguments and the ``set_*``/``add_*``
    methods), :meth:`launch` it, talk to it over QMP and its serial
    console, then :meth:`shutdown` it. ``binary`` is a path or a name looked
    up in ``PATH``; ``args`` are appended to QEMU's command line after the
    library's own (``-display none -vga none`` and the QMP monitor);
    ``machine_type`` adds ``-machine MACHINE_TYPE``; ``wrapper`` is a command
    QEMU runs under (e.g. ``("strace", "-f")``); ``name``, ``base_temp_dir``
    and ``log_dir`` are as :meth:`set_name`, :meth:`set_base_temp_dir` and
    :meth:`set_log_dir`. ``env`` maps names to values for QEMU's environment
    (``None`` removes a name), as :meth:`set_env`. ``agent`` gives the
    machine a guest agent channel (:meth:`set_agent`): ``True`` on a
    virtio-serial port, a device type such as ``"isa-serial"`` on that
    device; ``None`` or ``False``, none. ``qtest=True`` runs QEMU under
    qtest (:meth:`set_qtest`), ``qtest_timeout`` bounds each qtest call
    (:meth:`set_qtest_timeout`; default 30 s).

    As QEMU's own ``QEMUMachine``, the context manager does not launch:
    ``with Machine(...) as vm:`` gives the machine, the block calls
    :meth:`launch`, and leaving the block calls :meth:`shutdown` (which may
    raise :class:`AbnormalShutdown`). The exit code, log and queued events
    stay readable after it, and the machine can be launched again.

    Timeouts are seconds (int or float); ``None`` waits forever and 0
    polls. Errors raise a :class:`QemuMachineError` subclass. Arguments of
    the wrong Python type raise ``TypeError`` and values the binding can
    tell are bad (a negative timeout, a NUL in a string, an out-of-range
    port) :class:`InvalidArgument` (a ``ValueError``), both before any call
    into the library.

    Every method may be called from several threads at once (ctypes
    releases the GIL during each library call), except :meth:`close`,
    which must be the last call started: it frees the machine, killing
    QEMU if it still runs. An unclosed machine is closed when
    garbage-collected, or at interpreter exit.
    """

    def __init__(
        self,
        binary: StrPath = "qemu-system-x86_64",
        args: Iterable[str] = (),
        machine_type: Optional[str] = None,
        *,
        wrapper: Iterable[str] = (),
        name: Optional[str] = None,
        base_temp_dir: Optional[StrPath] = None,
        log_dir: Optional[StrPath] = None,
        env: Optional[Mapping[str, Optional[StrPath]]] = None,
        agent: Union[None, bool, str] = None,
        qtest: bool = False,
        qtest_timeout: Union[Seconds, _Default] = _DEFAULT,
    ) -> None:
        args = _strings(args, "args")
        wrapper = _strings(wrapper, "wrapper")
        if env is not None and not isinstance(env, collections.abc.Mapping):
            raise TypeError(
                f"env must be a dict or None, not {type(env).__name__}"
            )
        if agent is not None and not isinstance(agent, (bool, str)):
            raise TypeError(
                "agent must be None, a bool or a device type (str), not "
                + type(agent).__name__
            )
        if not isinstance(qtest, bool):
            raise TypeError(f"qtest must be a bool, not {type(qtest).__name__}")
        self._adopt(_new_machine(lib.qm_machine_new, _path(binary, "binary")))
        try:
            self.add_args(*args)
            self.add_wrapper_args(*wrapper)
            if machine_type is not None:
                self.set_machine_type(machine_type)
            if name is not None:
                self.set_name(name)
            if base_temp_dir is not None:
                self.set_base_temp_dir(base_temp_dir)
            if log_dir is not None:
                self.set_log_dir(log_dir)
            for env_name, value in (env or {}).items():
                self.set_env(env_name, value)
            if agent is True:
                self.set_agent()
            elif isinstance(agent, str):
                self.set_agent(agent)
            if qtest:
                self.set_qtest()
            if qtest_timeout is not _DEFAULT:
                self.set_qtest_timeout(qtest_timeout)
        except BaseException:
            self.close()
            raise

    def _adopt(self, handle: int) -> None:
        self._handle = handle
        self._finalizer = weakref.finalize(self, lib.qm_machine_free, handle)

    @classmethod
    def _attached(cls, handle: int) -> Machine:
        machine = cls.__new__(cls)
        machine._adopt(handle)
        return machine

    @classmethod
    def attach_unix(cls, path: StrPath, timeout: Seconds = 30.0) -> Machine:
        """Connect to a QEMU started elsewhere whose QMP monitor listens on
        the Unix socket ``path`` (e.g. ``-qmp unix:PATH,server=on,wait=off``).

        The machine is used as a launched one: QMP commands and events work,
        :meth:`shutdown` sends ``quit`` and waits for the connection to
        close, :meth:`kill` raises :class:`StateError` (that QEMU is not
        ours), :meth:`close` disconnects without stopping QEMU.
        """
        handle = _new_machine(
            lib.qm_attach_unix, _path(path, "path"), _timeout_ms(timeout)
        )
        return cls._attached(handle)

    @classmethod
    def attach_tcp(
        cls, host: str, port: int, timeout: Seconds = 30.0
    ) -> Machine:
        """Connect to a QEMU whose QMP monitor listens on TCP at
        ``host``:``port``; as :meth:`attach_unix`, but descriptors cannot be
        passed."""
        handle = _new_machine(
            lib.qm_attach_tcp,
            _text(host, "host"),
            _integer(port, 0, 65535, "port"),
            _timeout_ms(timeout),
        )
        return cls._attached(handle)

    @property
    def _m(self) -> int:
        if not self._finalizer.alive:
            raise StateError("the machine is closed")
        return self._handle

    def close(self) -> None:
        """Free the machine (``qm_machine_free``): if QEMU runs, it is killed
        and its temporary directory removed; an attached machine is only
        disconnected. Idempotent; afterwards every method raises
        :class:`StateError`.

        Calls blocked in other threads (waits, a launch, a shutdown) are
        woken, raise :class:`Disconnected` or a similar error, and are
        waited for. But no call may *start* concurrently with ``close()``:
        as in C, that is undefined behaviour."""
        self._finalizer()

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        if not self._finalizer.alive:
            return "<Machine closed>"
        pid = self.pid
        return f"<Machine running pid={pid}>" if pid else "<Machine>"

    # -- configuration (before launch) ----------------------------------

    def add_args(self, *args: str) -> None:
        """Append arguments to QEMU's command line, one argv element each
        (no shell, no quoting)."""
        for arg in args:
            _call(lib.qm_add_arg, self._m, _text(arg, "arg"))

    def add_wrapper_args(self, *args: str) -> None:
        """Append words to the wrapper command QEMU runs under, e.g.
        ``add_wrapper_args("strace", "-f", "-o", "trace.txt")``."""
        for arg in args:
            _call(lib.qm_add_wrapper_arg, self._m, _text(arg, "arg"))

    def set_name(self, name: str) -> None:
        """Name the machine, for its log file (``NAME.log``) and sockets."""
        _call(lib.qm_set_name, self._m, _text(name, "name"))

    def set_env(self, name: str, value: Optional[StrPath]) -> None:
        """Set environment variable ``name`` to ``value`` for QEMU only
        (``None``: remove ``name`` from QEMU's environment). QEMU otherwise
        inherits this process's environment as it is at :meth:`launch`.
        Setting a name again replaces the earlier setting."""
        _call(
            lib.qm_set_env,
            self._m,
            _text(name, "name"),
            None if value is None else _path(value, "value"),
        )

    def set_agent(self, device_type: Optional[str] = None) -> None:
        """Give the machine a channel for the QEMU guest agent
        (:attr:`agent`): ``device_type`` ``None`` puts it on a virtio-serial
        port named ``org.qemu.guest_agent.0`` (the guest runs ``qemu-ga -m
        virtio-serial``); otherwise on ``-device DEVICE_TYPE``, e.g.
        ``"isa-serial"`` for one more ISA serial port (the guest runs
        ``qemu-ga -m isa-serial -p /dev/ttySN``)."""
        _call(
            lib.qm_set_agent,
            self._m,
            _optional_text(device_type, "device_type"),
        )

    def set_qtest(self) -> None:
        """Run QEMU under qtest (:attr:`qtest`), QEMU's device-test
        protocol: no guest code runs. ``-accel qtest`` is added unless the
        arguments or the machine type choose an accelerator; QMP stays
        available.

        ``-accel qtest`` needs QEMU's qtest accelerator module, which Debian
        and Ubuntu delete: :meth:`launch` then raises :class:`LaunchError`
        saying so. ``scripts/build-qtest-accel.sh`` builds it;
        ``set_env("QEMU_MODULE_DIR", dir)`` points QEMU at it. Under
        ``-accel tcg -S`` instead, memory, port and IRQ calls work, and the
        clock calls raise :class:`CommandError`."""
        _call(lib.qm_set_qtest, self._m)

    def set_qtest_timeout(self, timeout: Seconds) -> None:
        """The bound of every qtest call (default 30 s; ``None``:
        forever)."""
        _call(lib.qm_set_qtest_timeout, self._m, _timeout_ms(timeout))

    def set_base_temp_dir(self, path: StrPath) -> None:
        """Where each launch creates its private temporary directory
        (default ``$TMPDIR``, else ``/tmp``); must exist at launch."""
        _call(lib.qm_set_base_temp_dir, self._m, _path(path, "path"))

    def set_log_dir(self, path: StrPath) -> None:
        """Where QEMU's log ``NAME.log`` goes, kept after shutdown (default:
        the temporary directory); must exist at launch."""
        _call(lib.qm_set_log_dir, self._m, _path(path, "path"))

    def set_machine_type(self, machine_type: str) -> None:
        """Add ``-machine MACHINE_TYPE`` (e.g. ``"none"``, ``"q35"``)."""
        _call(
            lib.qm_set_machine_type,
            self._m,
            _text(machine_type, "machine_type"),
        )

    def set_qmp_enabled(self, enabled: bool) -> None:
        """Whether QEMU gets a QMP monitor (default ``True``). Without one,
        QMP and event methods raise :class:`StateError`, :meth:`launch`
        returns as soon as QEMU is started, and :meth:`shutdown` sends
        SIGTERM, which kills a QEMU that has not yet installed its signal
        handler (in its first milliseconds): :class:`AbnormalShutdown`."""
        _call(lib.qm_set_qmp_enabled, self._m, bool(enabled))

    def set_monitor_unix(self, path: StrPath) -> None:
        """Put the QMP monitor on a listening Unix socket at ``path``
        (which must not exist at launch) instead of a socketpair."""
        _call(lib.qm_set_monitor_unix, self._m, _path(path, "path"))

    def set_monitor_tcp(self, host: str, port: int = 0) -> None:
        """Put the QMP monitor on TCP at exactly ``host``:``port`` (0: any
        free port, see :attr:`monitor_port`)."""
        _call(
            lib.qm_set_monitor_tcp,
            self._m,
            _text(host, "host"),
            _integer(port, 0, 65535, "port"),
        )

    def set_launch_timeout(self, timeout: Seconds) -> None:
        """How long :meth:`launch` waits for QEMU to start and negotiate QMP
        (default 30 s; ``None``: forever)."""
        _call(lib.qm_set_launch_timeout, self._m, _timeout_ms(timeout))

    def add_monitor_null(self) -> None:
        """Add ``-monitor null``: no default human monitor."""
        _call(lib.qm_add_monitor_null, self._m)

    def add_fd(
        self,
        fd: FileDescriptor,
        fdset: int,
        opaque: str,
        opts: Optional[str] = None,
    ) -> None:
        """Pass descriptor ``fd`` (an int or an object with ``fileno()``) to
        QEMU at every launch, as ``/dev/fdset/FDSET`` (``-add-fd``);
        ``opts``, if given, is appended to the option as is. The library
        keeps its own duplicate: ``fd`` may be closed right after."""
        _call(
            lib.qm_add_fd,
            self._m,
            _fd(fd, "fd"),
            _integer(fdset, 0, _INT_MAX, "fdset"),
            _text(opaque, "opaque"),
            _optional_text(opts, "opts"),
        )

    def set_console(
        self, device_type: Optional[str] = None, console_index: int = 0
    ) -> None:
        """Give the machine a serial console, as ``QEMUMachine.set_console``:
        ``device_type`` ``None`` uses the machine's default serial port,
        otherwise ``-device DEVICE_TYPE,chardev=console``; ``console_index``
        N makes it the N-th serial port. Its output is buffered from launch
        on: nothing is lost before the first read."""
        _call(
            lib.qm_set_console,
            self._m,
            _optional_text(device_type, "device_type"),
            _integer(console_index, 0, 2**32 - 1, "console_index"),
        )

    def set_console_log(self, path: StrPath) -> None:
        """Also append the console output to the file at ``path``; enables
        the default console if :meth:`set_console` was not called."""
        _call(lib.qm_set_console_log, self._m, _path(path, "path"))

    def set_qmp_trace(self, path: StrPath) -> None:
        """Append every QMP line sent (``>>``) and received (``<<``) to the
        file at ``path``; applies at once to an open connection too."""
        _call(lib.qm_set_qmp_trace, self._m, _path(path, "path"))

    # -- lifecycle ----------------------------------------------------------

    def launch(self) -> None:
        """Start QEMU and negotiate QMP, within the launch timeout.

        Raises :class:`LaunchError` (with QEMU's exit status, command line
        and output) if QEMU does not start; nothing is left behind then.
        """
        _call(lib.qm_launch, self._m)

    def shutdown(self, timeout: Seconds = 30.0) -> None:
        """Shut QEMU down gracefully: ``quit`` (SIGTERM without QMP), then
        wait up to ``timeout`` for it to exit; cleans up in every case. A
        no-op if not launched.

        Raises :class:`AbnormalShutdown` unless QEMU exited with status 0 on
        its own or after ``quit`` (it was then killed and reaped anyway);
        with ``timeout`` 0 a running QEMU has no time to exit and is always
        killed.
        """
        _call(lib.qm_shutdown, self._m, _timeout_ms(timeout))

    def kill(self) -> None:
        """Kill QEMU (SIGKILL), reap it and clean up. A no-op if not
        launched; :class:`StateError` for an attached machine."""
        _call(lib.qm_kill, self._m)

    def wait(self, timeout: Seconds = 30.0) -> Optional[int]:
        """Wait up to ``timeout`` for QEMU to exit on its own (e.g. the guest
        powered off), clean up, and return :attr:`exit_code`. Raises
        :class:`Timeout` if QEMU still runs (it is left running)."""
        _call(lib.qm_wait, self._m, _timeout_ms(timeout))
        return self.exit_code

    # -- event loops ------------------------------------------------------------

    def fileno(self) -> int:
        """A descriptor for event loops (``selectors``, asyncio's
        ``add_reader``): readable when QMP input waits to be routed, when
        QEMU has exited, and, once the run has ended, for good; then call
        :meth:`dispatch`. -1 when there is none: not launched, shut down,
        or QMP disabled (as ``qm_machine_fd``; ``select`` and ``selectors``
        refuse -1 loudly). Owned by the machine: do not read or close it; it
        stays open until the next launch or :meth:`close`.
        """
        fd: int = lib.qm_machine_fd(self._m)
        return fd

    def dispatch(self) -> None:
        """Route whatever QMP input has arrived (replies to
        :meth:`command_send` tickets, events to the queue and to listeners)
        and write queued output, without ever blocking. Raises
        :class:`Disconnected` once the run has ended (the message holds
        QEMU's exit status), :class:`StateError` if never launched."""
        _call(lib.qm_dispatch, self._m)

    @property
    def is_running(self) -> bool:
        """Whether QEMU is running."""
        return bool(lib.qm_is_running(self._m))

    @property
    def pid(self) -> Optional[int]:
        """QEMU's process id, or ``None`` when it is not running."""
        pid = lib.qm_pid(self._m)
        return None if pid < 0 else pid

    @property
    def exit_code(self) -> Optional[int]:
        """How QEMU ended: its exit status (>= 0) or minus the signal that
        killed it; ``None`` while it runs or if it never ran."""
        code = c_int()
        try:
            _call(lib.qm_exit_code, self._m, byref(code))
        except StateError:
            return None
        return code.value

    @property
    def log(self) -> Optional[str]:
        """QEMU's stdout and stderr, so far or of the last run (kept after
        shutdown until the next launch); ``None`` if never launched."""
        try:
            return _call_string(lib.qm_log, self._m)
        except StateError:
            return None

    @property
    def temp_dir(self) -> Optional[str]:
        """The per-run temporary directory (removed at shutdown) while
        launched, else ``None``."""
        try:
            return _call_string(lib.qm_temp_dir, self._m)
        except StateError:
            return None

    @property
    def command_line(self) -> Optional[List[str]]:
        """The full command line of the current or last run (wrapper,
        binary, the library's arguments, yours); ``None`` if never
        launched."""
        try:
            argv: List[str] = _call_json(lib.qm_command_line, self._m)
        except StateError:
            return None
        return argv

    @property
    def monitor_port(self) -> Optional[int]:
        """The TCP port of a TCP monitor once launched, else ``None``."""
        port = c_uint16()
        try:
            _call(lib.qm_monitor_port, self._m, byref(port))
        except StateError:
            return None
        return port.value

    @property
    def events_dropped(self) -> int:
        """How many events this run dropped because the queue was full."""
        count = c_uint64()
        _call(lib.qm_events_dropped, self._m, byref(count))
        return count.value

    @property
    def console_dropped(self) -> int:
        """How many console bytes this run dropped (over 64 MiB unread)."""
        count = c_uint64()
        _call(lib.qm_console_dropped, self._m, byref(count))
        return count.value

    @property
    def greeting(self) -> Optional[JsonObject]:
        """The QMP greeting of the current or last run, ``{"QMP":
        {"version": {...}, "capabilities": [...]}}``; ``None`` if never
        launched (or the launch failed before it)."""
        try:
            greeting: JsonObject = _call_json(lib.qm_qmp_greeting, self._m)
        except StateError:
            return None
        return greeting

    def save_artifacts(self, directory: StrPath) -> None:
        """Write what a failed test's reader needs into ``directory``
        (created, mode 0700, if missing): ``qemu.log``, ``console.log``
        (with a console), ``qmp-trace.log`` (when traced to a file),
        ``events.jsonl`` (every event of the run so far, taken or not),
        ``command-line.txt`` and ``status.txt``. Safe at any moment and
        from any thread; never waits for QEMU. Raises :class:`StateError`
        if never launched."""
        _call(lib.qm_save_artifacts, self._m, _path(directory, "directory"))

    @property
    def agent(self) -> Agent:
        """The QEMU guest agent: ``vm.agent.exec(["uname", "-r"])`` (see
        :class:`Agent`; needs :meth:`set_agent`)."""
        return Agent(self)

    @property
    def qtest(self) -> QTest:
        """qtest: ``vm.qtest.inb(0x71)`` (see :class:`QTest`; needs
        :meth:`set_qtest`)."""
        return QTest(self)

    # -- QMP ------------------------------------------------------------------

    def qmp(
        self,
        cmd: str,
        args: Optional[JsonArgs] = None,
        *,
        timeout: Seconds = 30.0,
        **kwargs: Any,
    ) -> JsonObject:
        """Run QMP command ``cmd`` and return QEMU's whole reply,
        ``{"return": ...}`` or ``{"error": {"class": ..., "desc": ...}}``
        (an error reply is not raised). Arguments come from the ``args``
        dict and keyword arguments, keys as given (use ``args`` for keys
        that are not identifiers, such as ``"node-name"``).

        A :class:`Timeout` means the reply did not come in time, not that
        the command did not run: it is sent at once (with ``timeout`` 0
        too) and QEMU may still execute it."""
        reply: JsonObject = _call_json(
            lib.qm_qmp_cmd,
            self._m,
            _text(cmd, "cmd"),
            _arguments(args, kwargs),
            _timeout_ms(timeout),
        )
        return reply

    def command(
        self,
        cmd: str,
        args: Optional[JsonArgs] = None,
        *,
        timeout: Seconds = 30.0,
        **kwargs: Any,
    ) -> Any:
        """Run QMP command ``cmd`` (arguments as :meth:`qmp`) and return the
        reply's ``return`` value; an error reply raises
        :class:`CommandError`, with ``qmp_class`` and ``desc``."""
        return _call_json(
            lib.qm_command,
            self._m,
            _text(cmd, "cmd"),
            _arguments(args, kwargs),
            _timeout_ms(timeout),
        )

    def command_send(
        self,
        cmd: str,
        args: Optional[JsonArgs] = None,
        **kwargs: Any,
    ) -> int:
        """Send QMP command ``cmd`` (arguments as :meth:`qmp`) now, without
        waiting for its reply, and return a ticket for
        :meth:`command_receive`: to pipeline several commands, or for event
        loops. Never blocks: what the socket does not take at once is
        written by later calls on the machine, :meth:`dispatch` included.
        Tickets are unique in the process."""
        return _call_int(
            lib.qm_command_send,
            c_uint64,
            self._m,
            _text(cmd, "cmd"),
            _arguments(args, kwargs),
        )

    def command_receive(
        self, ticket: int, timeout: Seconds = 30.0
    ) -> JsonObject:
        """The reply to the command of ``ticket`` (from
        :meth:`command_send`), waiting up to ``timeout`` for it (0 polls):
        QEMU's whole reply, as :meth:`qmp` gives it (``{"return": ...}`` or
        ``{"error": ...}``, not raised).

        :class:`Timeout` keeps the ticket valid (receive it again later);
        any other outcome consumes it. The run ending answers every
        outstanding ticket with :class:`Disconnected`. A ticket that is not
        outstanding (already received, unknown, of another machine or an
        earlier run) raises :class:`InvalidArgument`."""
        reply: JsonObject = _call_json(
            lib.qm_command_receive,
            self._m,
            _integer(ticket, 0, 2**64 - 1, "ticket"),
            _timeout_ms(timeout),
        )
        return reply

    def send_fd(self, fd: FileDescriptor, name: str) -> None:
        """Pass descriptor ``fd`` (an int or an object with ``fileno()``) to
        QEMU under ``name`` (QMP ``getfd`` with SCM_RIGHTS); ``fd`` stays
        ours. Needs a Unix-socket monitor."""
        _call(lib.qm_send_fd, self._m, _fd(fd, "fd"), _text(name, "name"))

    # -- events ---------------------------------------------------------------

    def event_wait(
        self,
        name: Optional[str] = None,
        match: Optional[JsonArgs] = None,
        timeout: Seconds = 60.0,
    ) -> JsonObject:
        """Remove and return the first queued or future event named ``name``
        (``None``: any) that matches ``match`` (see :func:`event_match`;
        ``None``: any). Events that do not match stay queued, in order; on
        :class:`Timeout` nothing is consumed. Events stay readable after
        QEMU has exited, until the next launch."""
        event: JsonObject = _call_json(
            lib.qm_event_wait,
            self._m,
            _optional_text(name, "name"),
            _json_object(match, "match"),
            _timeout_ms(timeout),
        )
        return event

    def events_wait(
        self, filters: Iterable[EventFilter], timeout: Seconds = 60.0
    ) -> JsonObject:
        """Like :meth:`event_wait`, for the first event passing any of the
        ``(name, match)`` filters, e.g.
        ``[("STOP", None), ("SHUTDOWN", {"data": {"guest": True}})]``.
        An empty list raises :class:`InvalidArgument`."""
        event: JsonObject = _call_json(
            lib.qm_events_wait,
            self._m,
            _filters_json(filters, "events_wait()"),
            _timeout_ms(timeout),
        )
        return event

    def event_get(self, timeout: Seconds = 60.0) -> JsonObject:
        """Remove and return the oldest event, waiting up to ``timeout`` for
        one."""
        event: JsonObject = _call_json(
            lib.qm_event_get, self._m, _timeout_ms(timeout)
        )
        return event

    def events_take(self) -> List[JsonObject]:
        """Remove and return every queued event, oldest first, without
        waiting (possibly ``[]``)."""
        events: List[JsonObject] = _call_json(lib.qm_events_take, self._m)
        return events

    def listen(
        self, filters: Optional[Iterable[EventFilter]] = None
    ) -> Listener:
        """A :class:`Listener`: a queue of its own that receives a copy of
        every event passing ``filters`` (``None``: every event; else
        ``(name, match)`` pairs as :meth:`events_wait` takes) from now on,
        through any number of launches, until it is closed. The machine's
        own queue is unaffected. Use it as a context manager::

            with vm.listen([("STOP", None)]) as stops:
                vm.command("stop")
                event = stops.wait(timeout=5)
        """
        filters_json = (
            None if filters is None else _filters_json(filters, "listen()")
        )
        return Listener._new(self._m, filters_json)

    # -- serial console -------------------------------------------------------

    def console_wait(
        self,
        success: str,
        failure: Optional[str] = None,
        timeout: Seconds = 60.0,
    ) -> str:
        """Wait for ``success`` in the console output after the read cursor
        and return the output up to and including it (the cursor moves past
        it). Raises :class:`ConsoleFailure` if ``failure`` appears first,
        :class:`Timeout` (the message holds the output so far; the cursor
        stays) or :class:`Disconnected` (QEMU is gone)."""
        return _call_string(
            lib.qm_console_wait,
            self._m,
            _text(success, "success"),
            _optional_text(failure, "failure"),
            _timeout_ms(timeout),
        )

    def console_exec(
        self,
        command: str,
        success: str,
        failure: Optional[str] = None,
        timeout: Seconds = 60.0,
    ) -> str:
        """Type ``command`` and a carriage return on the console, then wait
        as :meth:`console_wait`; one timeout covers both. The output
        includes the echo of the command."""
        return _call_string(
            lib.qm_console_exec,
            self._m,
            _text(command, "command"),
            _text(success, "success"),
            _optional_text(failure, "failure"),
            _timeout_ms(timeout),
        )

    def console_write(
        self, data: Union[bytes, bytearray, memoryview, str]
    ) -> None:
        """Send ``data`` (any bytes; a ``str`` is sent as UTF-8) to the
        console. Nothing is appended: end a command with ``"\\r"``."""
        raw = _data(data, "data")
        _call(lib.qm_console_write, self._m, raw, len(raw))

    def console_read(self) -> str:
        """The console output after the read cursor, without waiting
        (possibly ``""``); the cursor moves to the end."""
        return _call_string(lib.qm_console_read, self._m)

    def console_read_bytes(self) -> bytes:
        """As :meth:`console_read`, byte-exact (NUL bytes and invalid UTF-8
        included): the console output after the read cursor, without
        waiting; the cursor moves to the end."""
        return _call_bytes(lib.qm_console_read_bytes, self._m)


def probe(
    binary: StrPath, what: str, name: str, timeout: Seconds = 30.0
) -> bool:
    """Whether the QEMU binary ``binary`` has ``name`` of kind ``what``:
    ``"machine"`` (a machine type or alias), ``"device"`` (a device type),
    ``"accel"`` (``"tcg"``, ``"kvm"``, ``"qtest"``), ``"cpu"`` (a CPU model)
    or ``"command"`` (a QMP command), e.g. ``probe("qemu-system-x86_64",
    "device", "virtio-serial-pci")``.

    The first question about a binary starts one short-lived ``-machine
    none`` QEMU (within ``timeout``) that answers every question; the
    answers are kept for the process, so later calls start nothing. QEMU
    inherits this process's environment (e.g. ``QEMU_MODULE_DIR``). Raises
    :class:`LaunchError` if the binary does not start, :class:`Timeout`,
    and :class:`InvalidArgument` for an unknown ``what``.
    """
    present = c_bool()
    _call(
        lib.qm_probe,
        _path(binary, "binary"),
        _text(what, "what"),
        _text(name, "name"),
        _timeout_ms(timeout),
        byref(present),
    )
    return present.value


def migrate(src: Machine, dst: Machine, timeout: Seconds = 60.0) -> None:
    """Live-migrate the running machine ``src`` into ``dst``, launched with
    ``-incoming defer``: migration events are enabled on both, the two ends
    of a socketpair passed to them, ``migrate-incoming`` run on ``dst`` and
    ``migrate`` on ``src``, and both sides' ``MIGRATION`` events awaited
    until they report ``completed`` (and ``src`` settles in
    ``postmigrate``), all within ``timeout``.

    Raises :class:`CommandError` (a side failed, was cancelled or refused a
    step; the message holds both sides' migration status),
    :class:`Disconnected` (QEMU died on either side), :class:`Timeout`,
    :class:`AddDeviceError` (a monitor that is not a Unix socket),
    :class:`StateError` (not running).
    """
    for what, machine in (("src", src), ("dst", dst)):
        if not isinstance(machine, Machine):
            raise TypeError(
                f"{what} must be a Machine, not {type(machine).__name__}"
            )
    _call(lib.qm_migrate, src._m, dst._m, _timeout_ms(timeout))
