"""The :class:`Listener` class: a queue of its own for a machine's events."""

from __future__ import annotations

import weakref
from ctypes import byref, c_uint64, c_void_p
from typing import Any, Iterator, List, Optional

from ._convert import (
    JsonObject,
    Seconds,
    _call,
    _call_int,
    _call_json,
    _timeout_ms,
)
from ._native import lib
from .errors import Disconnected, StateError

__all__ = ["Listener"]


class Listener:
    """A queue of its own that receives a copy of every event of a machine
    passing its filters, from its creation on, through any number of
    launches, until :meth:`close`. Made by :meth:`Machine.listen`.

    The machine's own queue (:meth:`Machine.event_wait` and the rest) is
    unaffected, as are other listeners: each listener sees every event that
    passes its filters. A listener keeps up to 65536 events; beyond that the
    oldest are dropped and counted in :attr:`dropped`.

    ``with machine.listen(...) as events:`` closes the listener at the end
    of the block. Iterating over it waits for each next event and ends when
    no more can come: the machine's run has ended (or the machine was
    closed) and the listener's queue is empty. Before the machine's first
    launch, waiting raises :class:`StateError`, as :meth:`Machine.event_wait`
    does::

        with vm.listen([("STOP", None), ("RESUME", None)]) as events:
            vm.command("stop")
            assert events.wait(timeout=5)["event"] == "STOP"

    A listener may outlive its machine. Its methods may be called from
    several threads at once, except :meth:`close`, which must be the last
    call started (a :meth:`wait` blocked in another thread wakes with
    :class:`StateError`).
    """

    def __init__(self, handle: int) -> None:
        # Made by Machine.listen(), which owns the creation call.
        self._handle = handle
        self._finalizer = weakref.finalize(self, lib.qm_listener_free, handle)

    @classmethod
    def _new(cls, machine: int, filters_json: Optional[bytes]) -> Listener:
        out = c_void_p()
        _call(lib.qm_listener_new, machine, filters_json, byref(out))
        assert out.value is not None
        return cls(out.value)

    @property
    def _l(self) -> int:
        if not self._finalizer.alive:
            raise StateError("the listener is closed")
        return self._handle

    def wait(self, timeout: Seconds = 60.0) -> JsonObject:
        """Remove and return the oldest event of the listener, waiting up
        to ``timeout`` for one (0 polls). Raises :class:`Timeout`;
        :class:`Disconnected` at once when nothing is queued and no event
        can come (the machine's run ended, or the machine was closed);
        :class:`StateError` before the machine's first launch."""
        event: JsonObject = _call_json(
            lib.qm_listener_wait, self._l, _timeout_ms(timeout)
        )
        return event

    def take(self) -> List[JsonObject]:
        """Remove and return every queued event, oldest first, without
        waiting (possibly ``[]``)."""
        events: List[JsonObject] = _call_json(lib.qm_listener_take, self._l)
        return events

    def fileno(self) -> int:
        """A descriptor that is readable exactly while the listener has
        events queued (an eventfd), for ``select``, ``selectors`` and event
        loops. Owned by the listener: do not read or close it."""
        fd: int = lib.qm_listener_fd(self._l)
        return fd

    @property
    def dropped(self) -> int:
        """How many events the listener dropped because its queue was
        full."""
        return _call_int(lib.qm_listener_dropped, c_uint64, self._l)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return not self._finalizer.alive

    def close(self) -> None:
        """Free the listener. Idempotent; afterwards every method raises
        :class:`StateError`."""
        self._finalizer()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __iter__(self) -> Iterator[JsonObject]:
        while True:
            try:
                yield self.wait(None)
            except Disconnected:
                return

    def __repr__(self) -> str:
        return "<Listener closed>" if self.closed else "<Listener>"
