"""asyncio: :class:`AsyncMachine` and :class:`AsyncListener`.

A machine driven from an asyncio event loop, with no thread per call and
no thread per machine: the loop watches the machine's descriptor
(:meth:`Machine.fileno`, ``add_reader``), routes what arrives with
:meth:`Machine.dispatch`, and collects replies of commands sent with
:meth:`Machine.command_send`; listeners are watched through their eventfd.
Only :meth:`AsyncMachine.launch` and :meth:`AsyncMachine.shutdown` (which
wait for a process) run in the loop's default executor::

    import asyncio
    from qemu_machine.aio import AsyncMachine

    async def main():
        async with AsyncMachine(args=["-accel", "tcg"], machine_type="none") as vm:
            await vm.launch()
            await vm.command("stop")
            print(await vm.event_wait("STOP", timeout=5))

    asyncio.run(main())
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import weakref
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    Iterable,
    List,
    Optional,
    Tuple,
)

from ._convert import (
    EventFilter,
    JsonArgs,
    JsonObject,
    Seconds,
    _call_json,
    _filters_json,
    _json_object,
    _optional_text,
    _timeout_ms,
)
from ._native import lib
from .errors import (
    CommandError,
    Disconnected,
    QemuMachineError,
    StateError,
    Timeout,
)
from .listener import Listener
from .machine import Machine, event_match

__all__ = ["AsyncListener", "AsyncMachine"]

_Poll = Callable[[], JsonObject]
_Match = Callable[[JsonObject], bool]


def _seconds(timeout_ms: int) -> Optional[float]:
    return None if timeout_ms < 0 else timeout_ms / 1000


def _arrival(event: JsonObject) -> Tuple[int, int]:
    """When QEMU sent an event, from its timestamp."""
    stamp = event.get("timestamp") or {}
    return (int(stamp.get("seconds", 0)), int(stamp.get("microseconds", 0)))


def _expire(future: "asyncio.Future[Any]", message: str) -> None:
    if not future.done():
        future.set_exception(Timeout(message))


class _EventWaiter:
    """A task waiting in event_wait(), events_wait() or event_get()."""

    __slots__ = ("poll", "match", "future")

    def __init__(
        self, poll: _Poll, match: _Match, future: "asyncio.Future[JsonObject]"
    ) -> None:
        self.poll = poll  # takes a matching event from the queue, or Timeout
        self.match = match  # whether a (stashed) event is one for it
        self.future = future


class AsyncMachine:
    """A :class:`Machine` for asyncio: ``AsyncMachine(...)`` takes the
    arguments of :class:`Machine`, which is :attr:`machine` (configure it
    there before :meth:`launch`: ``vm.machine.set_console()``; its blocking
    calls, such as the console, agent and qtest ones, are usable too, but
    block the loop while they wait).

    Coroutines: :meth:`launch`, :meth:`command`, :meth:`qmp`,
    :meth:`event_wait`, :meth:`events_wait`, :meth:`event_get`,
    :meth:`wait`, :meth:`shutdown`, :meth:`kill`; :meth:`listen` gives an
    :class:`AsyncListener` (``async with vm.listen(...) as events: async
    for event in events``). ``async with AsyncMachine(...) as vm:``, like
    the synchronous context manager, does not launch, and shuts QEMU down
    when the block ends.

    Semantics are those of :class:`Machine`: :meth:`event_wait` removes the
    event it returns from the machine's queue, events that do not match
    stay queued, and events stay readable after QEMU has exited. Timeouts
    are seconds (``None``: forever; 0 polls) and raise :class:`Timeout`
    (a ``TimeoutError``); ``asyncio.wait_for`` and ``asyncio.timeout`` work
    as well. Cancelling a waiting task leaves the machine usable: a
    cancelled (or timed-out) command still runs in QEMU and its late reply
    is received and dropped; a cancelled event wait consumes no event. When
    QEMU exits or is killed, every waiting call raises
    :class:`Disconnected` at once.

    Threads: none per call or per machine. :meth:`launch`,
    :meth:`shutdown` and, with no descriptor to watch (QMP disabled) or
    when QEMU is slow to be reaped, :meth:`wait` run the blocking library
    call in the loop's default executor. A cancelled
    :meth:`launch` kills QEMU (it never stays half-launched); a cancelled
    :meth:`shutdown` goes on in the executor.

    One loop drives the machine (the first one that uses it). Do not run
    blocking QMP calls on :attr:`machine` in other threads while the loop
    awaits a reply: such a call may route the reply itself, and the loop
    then only sees it with the next input from QEMU.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._adopt(Machine(*args, **kwargs))

    @classmethod
    def wrap(cls, machine: Machine) -> AsyncMachine:
        """An :class:`AsyncMachine` over an existing :class:`Machine`: one
        configured or launched already, or attached to a QEMU started
        elsewhere (:meth:`Machine.attach_unix`). It takes the machine over:
        drive it only through the :class:`AsyncMachine` from then on (its
        :meth:`close` closes the machine)."""
        if not isinstance(machine, Machine):
            raise TypeError(
                f"machine must be a Machine, not {type(machine).__name__}"
            )
        wrapper = cls.__new__(cls)
        wrapper._adopt(machine)
        return wrapper

    def _adopt(self, machine: Machine) -> None:
        #: The synchronous machine: configuration, properties and blocking
        #: calls.
        self.machine = machine
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        # Every event, to learn that events were routed, whoever routed
        # them; its queue is emptied at each pass.
        try:
            self._signal = self.machine.listen()
        except BaseException:
            self.machine.close()
            raise
        self._fd = -1  # the watched machine descriptor
        self._run_over = False  # the watched run has ended
        self._run_end: Optional["asyncio.Future[None]"] = None
        # Tickets in the order sent: QEMU answers in that order.
        self._tickets: Dict[int, "asyncio.Future[JsonObject]"] = {}
        self._waiters: List[_EventWaiter] = []
        # Events taken for a waiter whose task was cancelled at that very
        # moment: served before the machine's queue, oldest first.
        self._stash: Deque[JsonObject] = collections.deque()
        self._listeners: "weakref.WeakSet[AsyncListener]" = weakref.WeakSet()
        self._kicked: Optional[asyncio.Handle] = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<AsyncMachine {self.machine!r}>"

    # -- the loop's side ------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        """The machine's loop (the running one, on first use)."""
        if self._closed:
            raise StateError("the machine is closed")
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return loop
        if self._loop is not None and not self._loop.is_closed():
            raise RuntimeError(
                "this AsyncMachine is driven by another event loop"
            )
        # First use, or the previous loop is closed (a new asyncio.run()):
        # what waited in it is gone with it.
        self._loop = loop
        self._fd = -1
        self._run_end = None
        self._kicked = None
        self._tickets.clear()
        self._waiters.clear()
        loop.add_reader(self._signal.fileno(), self._process)
        return loop

    def _watch(self) -> None:
        """Watch the descriptor of the current run, if not yet done."""
        loop = self._bind()
        if self._fd >= 0:
            return
        if self._run_over:
            if not self.machine.is_running:
                return
            # Launched again other than by launch(): a new run.
            self._run_over = False
        fd = self.machine.fileno()
        if fd < 0:
            return
        self._fd = fd
        self._run_end = loop.create_future()
        loop.add_reader(fd, self._process)

    def _unwatch(self) -> None:
        if self._fd >= 0:
            assert self._loop is not None
            self._loop.remove_reader(self._fd)
            self._fd = -1

    def _mark_over(self) -> None:
        """The watched run has ended: stop watching, wake whoever waits for
        the end or on a listener (they will find out why)."""
        self._unwatch()
        self._run_over = True
        if self._run_end is not None and not self._run_end.done():
            self._run_end.set_result(None)
        for listener in list(self._listeners):
            listener._wake()

    def _live_loop(self) -> Optional[asyncio.AbstractEventLoop]:
        loop = self._loop
        return None if loop is None or loop.is_closed() else loop

    def _kick(self) -> None:
        """Process soon: after a call of ours that may have routed input."""
        loop = self._live_loop()
        if self._kicked is None and loop is not None:
            self._kicked = loop.call_soon(self._process)

    def _process(self) -> None:
        """Route what arrived, then hand out replies and events. Runs when a
        watched descriptor is readable, and after calls that may have
        routed input."""
        if self._kicked is not None:
            self._kicked.cancel()
            self._kicked = None
        if self._closed:
            return
        if self._fd >= 0:
            try:
                self.machine.dispatch()
            except QemuMachineError:
                # The run has ended (the descriptor stays readable: stop
                # watching it). Every ticket and waiter learns why below.
                self._mark_over()
        # Empty the signal listener first: events routed from here on
        # make its descriptor readable again, hence another pass.
        lib.qm_listener_take(self._signal._l, None, None)
        self._serve_waiters()
        # Replies last: events routed by the polls above cannot hide a
        # reply, and those routed by these polls signal another pass.
        self._serve_tickets()

    def _serve_tickets(self) -> None:
        while self._tickets:
            ticket, future = next(iter(self._tickets.items()))
            try:
                reply = self.machine.command_receive(ticket, 0)
            except Timeout:
                return  # the replies to later tickets come after this one
            except QemuMachineError as exc:
                del self._tickets[ticket]
                if not future.done():
                    future.set_exception(exc)
                continue
            del self._tickets[ticket]
            if not future.done():  # else cancelled or timed out: dropped
                future.set_result(reply)

    def _serve_waiters(self) -> None:
        for waiter in list(self._waiters):
            if waiter.future.done():
                self._waiters.remove(waiter)
                continue
            try:
                event = self._from_stash(waiter.match)
                if event is None:
                    event = waiter.poll()
            except Timeout:
                continue
            except QemuMachineError as exc:
                waiter.future.set_exception(exc)
            else:
                waiter.future.set_result(event)
            self._waiters.remove(waiter)

    def _from_stash(self, match: _Match) -> Optional[JsonObject]:
        for event in self._stash:
            if match(event):
                self._stash.remove(event)
                return event
        return None

    # -- lifecycle --------------------------------------------------------------

    async def launch(self) -> None:
        """Start QEMU and negotiate QMP (:meth:`Machine.launch`, in the
        default executor), then watch the new run from the loop. Cancelling
        it kills QEMU, also when the launch had not begun yet."""
        loop = self._bind()
        cancelled = threading.Event()

        def launch() -> None:
            self.machine.launch()
            if cancelled.is_set():
                self.machine.kill()

        try:
            await loop.run_in_executor(None, launch)
        except asyncio.CancelledError:
            cancelled.set()
            self.machine.kill()  # also interrupts the launch in progress
            raise
        # A new run: the previous one's descriptor, tickets and events are
        # gone (a launch clears them).
        self._process()
        self._mark_over()
        self._stash.clear()
        self._run_over = False
        self._watch()

    async def shutdown(self, timeout: Seconds = 30.0) -> None:
        """Shut QEMU down gracefully (:meth:`Machine.shutdown`, in the
        default executor). Calls still waiting raise :class:`Disconnected`.
        Cancelling it does not stop the shutdown, which goes on in the
        executor (and the loop sees the end of the run as usual)."""
        timeout_ms = _timeout_ms(timeout)
        loop = self._bind()
        try:
            await loop.run_in_executor(
                None, self.machine.shutdown, _seconds(timeout_ms)
            )
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._end_of_run()
            raise
        self._end_of_run()

    async def kill(self) -> None:
        """Kill QEMU (SIGKILL) and reap it (quick: done in the loop's
        thread). Calls still waiting raise :class:`Disconnected`."""
        self._bind()
        self.machine.kill()
        self._end_of_run()

    async def wait(self, timeout: Seconds = 30.0) -> Optional[int]:
        """Wait up to ``timeout`` for QEMU to exit on its own (e.g. the
        guest powered off), clean up and return its exit code, as
        :meth:`Machine.wait`: the descriptor says when the run ends."""
        timeout_ms = _timeout_ms(timeout)
        loop = self._bind()
        self._watch()
        run_end = self._run_end
        if self._fd < 0 or run_end is None:
            # Nothing to watch (not launched, QMP disabled): the library
            # waits, in the executor.
            return await loop.run_in_executor(
                None, self.machine.wait, _seconds(timeout_ms)
            )
        ended: "asyncio.Future[None]" = loop.create_future()

        def on_end(_: Any) -> None:
            if not ended.done():
                ended.set_result(None)

        run_end.add_done_callback(on_end)
        handle = None
        if timeout_ms >= 0:
            handle = loop.call_later(
                timeout_ms / 1000,
                _expire,
                ended,
                f"QEMU still runs after {timeout_ms} ms",
            )
        try:
            await ended
        finally:
            run_end.remove_done_callback(on_end)
            if handle is not None:
                handle.cancel()
        try:
            return self.machine.wait(0)
        except Timeout:
            # The connection closed just before QEMU exited.
            return await loop.run_in_executor(None, self.machine.wait, 10.0)

    def _end_of_run(self) -> None:
        """After a shutdown or kill: hand out what remains, stop watching."""
        if self._closed:
            return
        self._process()
        self._mark_over()

    def close(self) -> None:
        """Stop watching and free the machine (:meth:`Machine.close`:
        QEMU, if still running, is killed). Calls still waiting raise
        :class:`StateError`. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._kicked is not None:
            self._kicked.cancel()
        loop = self._live_loop()
        if loop is not None:
            self._unwatch()
            loop.remove_reader(self._signal.fileno())
            error = StateError("the machine is closed")
            pending = [f for f in self._tickets.values() if not f.done()]
            pending += [w.future for w in self._waiters if not w.future.done()]
            for future in pending:
                future.set_exception(error)
            for listener in list(self._listeners):
                listener._wake()
        # (With the loop closed, what waited in it is gone with it.)
        self._fd = -1
        self._tickets.clear()
        self._waiters.clear()
        self._signal.close()
        self.machine.close()

    async def __aenter__(self) -> AsyncMachine:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.shutdown()

    @property
    def pid(self) -> Optional[int]:
        """QEMU's process id, or ``None`` when it is not running."""
        return self.machine.pid

    @property
    def is_running(self) -> bool:
        """Whether QEMU is running."""
        return self.machine.is_running

    @property
    def exit_code(self) -> Optional[int]:
        """As :attr:`Machine.exit_code`."""
        return self.machine.exit_code

    @property
    def greeting(self) -> Optional[JsonObject]:
        """As :attr:`Machine.greeting`."""
        return self.machine.greeting

    # -- QMP ------------------------------------------------------------------

    async def qmp(
        self,
        cmd: str,
        args: Optional[JsonArgs] = None,
        *,
        timeout: Seconds = 30.0,
        **kwargs: Any,
    ) -> JsonObject:
        """Run QMP command ``cmd`` and return QEMU's whole reply, as
        :meth:`Machine.qmp` (an error reply is returned, not raised).

        The command is sent at once (:meth:`Machine.command_send`) and its
        reply collected when it arrives. :class:`Timeout` (or cancelling
        the task) means the reply did not come in time, not that the
        command did not run: QEMU may still execute it, and its reply is
        dropped when it arrives."""
        timeout_ms = _timeout_ms(timeout)
        loop = self._bind()
        self._watch()
        ticket = self.machine.command_send(cmd, args, **kwargs)
        future: "asyncio.Future[JsonObject]" = loop.create_future()
        self._tickets[ticket] = future
        handle = None
        if timeout_ms >= 0:
            handle = loop.call_later(
                timeout_ms / 1000,
                _expire,
                future,
                f"no reply to QMP command '{cmd}' within {timeout_ms} ms",
            )
        try:
            return await future
        finally:
            if handle is not None:
                handle.cancel()

    async def command(
        self,
        cmd: str,
        args: Optional[JsonArgs] = None,
        *,
        timeout: Seconds = 30.0,
        **kwargs: Any,
    ) -> Any:
        """Run QMP command ``cmd`` (as :meth:`qmp`) and return the reply's
        ``return`` value; an error reply raises :class:`CommandError`, as
        :meth:`Machine.command` does."""
        reply = await self.qmp(cmd, args, timeout=timeout, **kwargs)
        if "error" in reply:
            error = reply["error"]
            qmp_class = str(error.get("class", ""))
            desc = str(error.get("desc", ""))
            raise CommandError(
                f"QMP command '{cmd}' failed: {qmp_class}: {desc}",
                qmp_class,
                desc,
            )
        return reply.get("return")

    # -- events ---------------------------------------------------------------

    async def _event(
        self,
        poll: _Poll,
        match: _Match,
        timeout: Seconds,
        what: str,
    ) -> JsonObject:
        timeout_ms = _timeout_ms(timeout)
        loop = self._bind()
        self._watch()
        future: "asyncio.Future[JsonObject]" = loop.create_future()
        waiter = _EventWaiter(poll, match, future)
        self._waiters.append(waiter)
        # One pass now: the event may be queued already.
        self._process()
        if not future.done() and timeout_ms == 0:
            future.cancel()
            self._waiters.remove(waiter)
            raise Timeout(f"no {what} is queued")
        handle = None
        if timeout_ms > 0:
            handle = loop.call_later(
                timeout_ms / 1000,
                _expire,
                future,
                f"no {what} within {timeout_ms} ms",
            )
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                if future.exception() is None:
                    # Taken for us as we were being cancelled: give it back.
                    self._stash.append(future.result())
                    self._stash = collections.deque(
                        sorted(self._stash, key=_arrival)
                    )
            raise
        finally:
            if handle is not None:
                handle.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def event_wait(
        self,
        name: Optional[str] = None,
        match: Optional[JsonArgs] = None,
        timeout: Seconds = 60.0,
    ) -> JsonObject:
        """Remove and return the first queued or future event named
        ``name`` (``None``: any) that matches ``match``, as
        :meth:`Machine.event_wait`: events that do not match stay queued;
        on :class:`Timeout` or cancellation nothing is consumed; once the
        run has ended and nothing queued matches, :class:`Disconnected`."""
        name_c = _optional_text(name, "name")
        match_c = _json_object(match, "match")
        handle = self.machine._m

        def poll() -> JsonObject:
            event: JsonObject = _call_json(
                lib.qm_event_wait, handle, name_c, match_c, 0
            )
            return event

        def matches(event: JsonObject) -> bool:
            return (name is None or event.get("event") == name) and (
                event_match(event, match)
            )

        what = "event" if name is None else f"{name} event"
        return await self._event(poll, matches, timeout, what)

    async def events_wait(
        self, filters: Iterable[EventFilter], timeout: Seconds = 60.0
    ) -> JsonObject:
        """Like :meth:`event_wait`, for the first event passing any of the
        ``(name, match)`` filters (as :meth:`Machine.events_wait`)."""
        pairs: List[Tuple[Optional[str], Optional[JsonArgs]]] = [
            (name, match) for name, match in json.loads(
                _filters_json(filters, "events_wait()")
            )
        ]
        filters_c = json.dumps(pairs).encode("utf-8")
        handle = self.machine._m

        def poll() -> JsonObject:
            event: JsonObject = _call_json(
                lib.qm_events_wait, handle, filters_c, 0
            )
            return event

        def matches(event: JsonObject) -> bool:
            return any(
                (name is None or event.get("event") == name)
                and event_match(event, match)
                for name, match in pairs
            )

        return await self._event(poll, matches, timeout, "matching event")

    async def event_get(self, timeout: Seconds = 60.0) -> JsonObject:
        """Remove and return the oldest event, waiting up to ``timeout`` for
        one."""
        handle = self.machine._m

        def poll() -> JsonObject:
            event: JsonObject = _call_json(lib.qm_event_get, handle, 0)
            return event

        return await self._event(poll, lambda event: True, timeout, "event")

    def events_take(self) -> List[JsonObject]:
        """Remove and return every queued event, oldest first, without
        waiting (possibly ``[]``)."""
        events = list(self._stash)
        self._stash.clear()
        events += self.machine.events_take()
        self._kick()
        return events

    def listen(
        self, filters: Optional[Iterable[EventFilter]] = None
    ) -> AsyncListener:
        """An :class:`AsyncListener`: a queue of its own for every event
        passing ``filters`` (as :meth:`Machine.listen`) from now on::

            async with vm.listen([("STOP", None)]) as events:
                await vm.command("stop")
                async for event in events:
                    ...
        """
        if self._closed:
            raise StateError("the machine is closed")
        listener = AsyncListener(self, self.machine.listen(filters))
        self._listeners.add(listener)
        return listener


class AsyncListener:
    """A :class:`Listener` for asyncio, made by :meth:`AsyncMachine.listen`:
    its eventfd is watched by the loop while a task waits.

    ``await events.wait(timeout)`` removes and returns the oldest event;
    ``async for event in events`` waits for each next one and ends when no
    more can come (the run has ended and the queue is empty). ``async with`` closes it at the end of the
    block. Cancelling a waiting task consumes no event.
    """

    def __init__(self, owner: AsyncMachine, listener: Listener) -> None:
        self._owner = owner
        #: The synchronous listener.
        self.listener = listener
        self._waiters: List["asyncio.Future[None]"] = []
        self._reading = False

    def __repr__(self) -> str:
        return f"<AsyncListener {self.listener!r}>"

    def _wake(self) -> None:
        for future in self._waiters:
            if not future.done():
                future.set_result(None)
        self._waiters.clear()
        self._stop_reading()

    def _stop_reading(self) -> None:
        if self._reading:
            assert self._owner._loop is not None
            self._owner._loop.remove_reader(self.listener.fileno())
            self._reading = False

    def _poll(self) -> JsonObject:
        try:
            return self.listener.wait(0)
        finally:
            # The poll may have routed QMP input: let the machine look.
            self._owner._kick()

    async def wait(self, timeout: Seconds = 60.0) -> JsonObject:
        """Remove and return the oldest event, waiting up to ``timeout``
        for one. Raises :class:`Timeout`, or :class:`Disconnected` when
        nothing is queued and no event can come."""
        timeout_ms = _timeout_ms(timeout)
        loop = self._owner._bind()
        self._owner._watch()
        deadline = None if timeout_ms < 0 else loop.time() + timeout_ms / 1000
        while True:
            try:
                return self._poll()
            except Timeout:
                if deadline is not None and loop.time() >= deadline:
                    raise Timeout(
                        f"no event for this listener within {timeout_ms} ms"
                    ) from None
            future: "asyncio.Future[None]" = loop.create_future()
            self._waiters.append(future)
            if not self._reading:
                loop.add_reader(self.listener.fileno(), self._wake)
                self._reading = True
            handle = None
            if deadline is not None:
                handle = loop.call_at(deadline, self._wake)
            try:
                await future
            finally:
                if handle is not None:
                    handle.cancel()
                if future in self._waiters:
                    self._waiters.remove(future)
                if not self._waiters:
                    self._stop_reading()

    def take(self) -> List[JsonObject]:
        """Remove and return every queued event without waiting."""
        try:
            return self.listener.take()
        finally:
            self._owner._kick()

    @property
    def dropped(self) -> int:
        """How many events the listener dropped (its queue was full)."""
        return self.listener.dropped

    def fileno(self) -> int:
        """The listener's eventfd (readable while events are queued)."""
        return self.listener.fileno()

    def close(self) -> None:
        """Free the listener; tasks waiting on it raise
        :class:`StateError`. Idempotent."""
        if self.listener.closed:
            return
        self._wake()
        self._owner._listeners.discard(self)
        self.listener.close()

    async def __aenter__(self) -> AsyncListener:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()

    def __aiter__(self) -> AsyncListener:
        return self

    async def __anext__(self) -> JsonObject:
        try:
            return await self.wait(None)
        except Disconnected:
            raise StopAsyncIteration from None
