"""qemu_machine.aio: AsyncMachine on asyncio (plain asyncio.run, no
plugin): commands, events, listeners, timeouts, cancellation, QEMU killed
while awaiting, many machines in one loop without threads, descriptors."""

import asyncio
import os
import signal
import subprocess
import threading
import time

import pytest
from support import NONE_ARGS, QEMU, open_fds

from qemu_machine import (
    CommandError,
    Disconnected,
    InvalidArgument,
    IoError,
    Machine,
    StateError,
    Timeout,
)
from qemu_machine.aio import AsyncListener, AsyncMachine


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))


def new_async(**kwargs):
    return AsyncMachine(QEMU, NONE_ARGS, machine_type="none", **kwargs)


@pytest.fixture
def avm():
    """An AsyncMachine (``-machine none``), not launched, closed at
    teardown."""
    machine = new_async()
    yield machine
    machine.close()


def test_commands(avm):
    async def main():
        await avm.launch()
        assert avm.is_running and avm.pid
        assert (await avm.command("query-status"))["status"] == "running"
        assert await avm.command("qom-get", path="/machine", property="type") == (
            "none-machine"
        )
        reply = await avm.qmp("qom-get", {"path": "/machine"}, property="type")
        assert reply == {"return": "none-machine"}
        with pytest.raises(CommandError) as info:
            await avm.command("no-such-command")
        assert info.value.qmp_class == "CommandNotFound"
        assert "no-such-command" in str(info.value)
        assert "error" in await avm.qmp("no-such-command")
        # Many at once on one machine: pipelined, each gets its reply.
        paths = ["/machine", "/machine/unattached", "/machine/peripheral"] * 50
        replies = await asyncio.gather(
            *(avm.command("qom-list", path=path) for path in paths)
        )
        names = [sorted(p["name"] for p in reply) for reply in replies]
        assert names[0::3] == [names[0]] * 50
        assert names[1::3] == [names[1]] * 50
        assert names[0] != names[1]
        assert avm.greeting["QMP"]["version"]["qemu"]["major"] >= 7
        await avm.shutdown()
        assert avm.exit_code == 0
        assert not avm.is_running

    run(main())


def test_events(avm):
    async def main():
        await avm.launch()
        await avm.command("stop")
        await avm.command("cont")
        assert (await avm.event_wait("RESUME", timeout=5))["event"] == "RESUME"
        # STOP, which did not match, is still queued: the synchronous
        # machine sees the same queue.
        assert avm.machine.event_get(timeout=0)["event"] == "STOP"
        # A waiter before the event; wildcards as in Machine.event_wait.
        waiter = asyncio.ensure_future(
            avm.event_wait("STOP", {"timestamp": {"seconds": None}}, timeout=5)
        )
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await avm.command("stop")
        assert (await waiter)["event"] == "STOP"
        # Timeouts consume nothing; 0 polls.
        await avm.command("cont")
        with pytest.raises(Timeout) as info:
            await avm.event_wait("STOP", timeout=0)
        assert isinstance(info.value, TimeoutError)
        started = time.monotonic()
        with pytest.raises(Timeout, match="200 ms"):
            await avm.event_wait("STOP", timeout=0.2)
        assert 0.19 <= time.monotonic() - started < 2
        filters = [("SHUTDOWN", None), (None, {"event": "RESUME"})]
        assert (await avm.events_wait(filters, timeout=5))["event"] == "RESUME"
        assert avm.events_take() == []
        await avm.command("stop")
        assert (await avm.event_get(timeout=5))["event"] == "STOP"
        # Several waiters for different events, each gets its own.
        stop = asyncio.ensure_future(avm.event_wait("STOP", timeout=5))
        resume = asyncio.ensure_future(avm.event_wait("RESUME", timeout=5))
        await asyncio.sleep(0.05)
        await avm.command("cont")
        await avm.command("stop")
        assert (await resume)["event"] == "RESUME"
        assert (await stop)["event"] == "STOP"
        # After the end of the run: queued events, then Disconnected at once.
        await avm.command("cont")
        await avm.shutdown()
        names = [(await avm.event_get(timeout=None))["event"] for _ in range(2)]
        assert names == ["RESUME", "SHUTDOWN"]
        started = time.monotonic()
        with pytest.raises(Disconnected):
            await avm.event_wait("STOP", timeout=None)
        assert time.monotonic() - started < 1

    run(main())


def test_listen(avm):
    async def main():
        early = avm.listen([("STOP", None)])  # before launch: kept
        await avm.launch()
        async with avm.listen([("STOP", None), ("RESUME", None)]) as events:
            assert isinstance(events, AsyncListener)
            await avm.command("stop")
            await avm.command("cont")
            names = []
            async for event in events:
                names.append(event["event"])
                if len(names) == 2:
                    break
            assert names == ["STOP", "RESUME"]
            with pytest.raises(Timeout):
                await events.wait(timeout=0.05)
            # A listener waiting before the event comes.
            waiter = asyncio.ensure_future(events.wait(timeout=5))
            await asyncio.sleep(0.05)
            await avm.command("stop")
            assert (await waiter)["event"] == "STOP"
            await avm.command("cont")
            await asyncio.sleep(0.05)
            assert [e["event"] for e in events.take()] == ["RESUME"]
            assert events.dropped == 0
            assert events.fileno() >= 0
            # The machine's own queue is unaffected by listeners.
            assert len(avm.events_take()) == 4
            # Iteration ends with the run.
            await avm.command("stop")
            await avm.shutdown()
            assert [e["event"] async for e in events] == ["STOP"]
        assert events.listener.closed
        assert [e["event"] for e in early.take()] == ["STOP"] * 3
        early.close()

    run(main())


def test_listener_iteration_ends_when_qemu_is_killed(avm):
    async def main():
        await avm.launch()
        async with avm.listen() as events:

            async def collect():
                return [event["event"] async for event in events]

            task = asyncio.ensure_future(collect())
            await avm.command("stop")
            await asyncio.sleep(0.1)
            started = time.monotonic()
            os.kill(avm.pid, signal.SIGKILL)
            assert await task == ["STOP"]
            assert time.monotonic() - started < 1

    run(main())


def test_timeouts_and_cancelled_commands(avm):
    async def main():
        await avm.launch()
        pid = avm.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(Timeout, match="query-status"):
                await avm.command("query-status", timeout=0.2)
            assert 0.19 <= time.monotonic() - started < 2
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(avm.command("stop"), 0.1)
            task = asyncio.ensure_future(avm.command("query-kvm"))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            os.kill(pid, signal.SIGCONT)
        # The late replies are dropped; the next commands get their own.
        for _ in range(3):
            assert (await avm.command("query-status"))["status"] == "paused"
        assert not avm._tickets
        # "stop" ran although its caller gave up.
        assert (await avm.event_get(timeout=5))["event"] == "STOP"

    run(main())


def test_cancelled_event_waits_consume_nothing(avm):
    async def main():
        await avm.launch()
        task = asyncio.ensure_future(avm.event_wait("STOP", timeout=None))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(avm.event_wait("STOP"), 0.05)
        await avm.command("stop")
        assert (await avm.event_wait("STOP", timeout=5))["event"] == "STOP"
        # The race: the event is taken for a waiter whose task is cancelled
        # before it runs again. The event is given back.
        task = asyncio.ensure_future(avm.event_wait("RESUME", timeout=None))
        await asyncio.sleep(0.05)
        avm.machine.command("cont")  # routes RESUME into the queue
        avm._process()  # hands it to the waiting task...
        task.cancel()  # ...which is cancelled before it resumes
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await avm.event_wait("RESUME", timeout=0))["event"] == "RESUME"
        assert (await avm.command("query-status"))["status"] == "running"

    run(main())


def test_qemu_killed_while_awaiting(avm):
    async def main():
        await avm.launch()
        pid = avm.pid
        os.kill(pid, signal.SIGSTOP)  # the command will not be answered
        command = asyncio.ensure_future(avm.command("query-status", timeout=None))
        event = asyncio.ensure_future(avm.event_wait("NEVER", timeout=None))
        waited = asyncio.ensure_future(avm.wait(timeout=None))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        for task in (command, event):
            with pytest.raises(Disconnected, match="signal 9"):
                await task
        assert await waited == -9
        assert time.monotonic() - started < 1
        with pytest.raises((Disconnected, StateError)):
            await avm.command("query-status")
        # The machine launches again.
        await avm.launch()
        assert (await avm.command("query-status"))["running"]
        await avm.kill()
        assert avm.exit_code == -9

    run(main())


def test_shutdown_wakes_waiters_and_relaunch(avm):
    async def main():
        await avm.launch()
        event = asyncio.ensure_future(avm.event_wait("NEVER", timeout=None))
        await asyncio.sleep(0.05)
        await avm.shutdown()
        with pytest.raises(Disconnected):
            await event
        await avm.launch()
        await avm.command("stop")
        assert (await avm.event_wait("STOP", timeout=5))["event"] == "STOP"
        with pytest.raises(Timeout, match="still runs"):
            await avm.wait(timeout=0.1)
        # QEMU exiting on its own: wait() returns its exit code.
        await avm.qmp("quit")
        assert await avm.wait(timeout=10) == 0

    run(main())


def test_context_manager_and_cancelled_launch():
    async def main():
        async with new_async() as vm:
            await vm.launch()
            assert (await vm.command("query-status"))["running"]
        assert vm.exit_code == 0
        vm.close()
        vm.close()  # idempotent
        # A cancelled launch leaves no QEMU behind. (QEMU starts a second
        # late, so the cancellation comes in the middle of the launch.)
        vm = new_async(wrapper=["sh", "-c", 'sleep 1; exec "$@"', "sh"])
        task = asyncio.ensure_future(vm.launch())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not vm.is_running
        vm.close()

    run(main())


def test_many_machines_in_one_loop_without_threads():
    """16 machines x 100 commands, concurrently, in one loop: no thread is
    started once they run."""

    async def main():
        machines = [new_async(name=f"aio-{i}") for i in range(16)]
        try:
            await asyncio.gather(*(vm.launch() for vm in machines))
            threads = threading.active_count()
            counts = []

            async def drive(vm):
                for i in range(100):
                    status = await vm.command("query-status")
                    assert status["status"] in ("running", "paused")
                    if i == 50:
                        await vm.command("stop")
                counts.append(threading.active_count())
                return await vm.event_wait("STOP", timeout=5)

            started = time.monotonic()
            events = await asyncio.gather(*(drive(vm) for vm in machines))
            elapsed = time.monotonic() - started
            assert [e["event"] for e in events] == ["STOP"] * 16
            assert counts == [threads] * 16
            assert threading.active_count() == threads
            print(f"1600 commands on 16 machines in {elapsed:.2f} s")
            await asyncio.gather(*(vm.shutdown() for vm in machines))
            assert [vm.exit_code for vm in machines] == [0] * 16
        finally:
            for vm in machines:
                vm.close()

    run(main())


def test_no_descriptor_left_after_close():
    before = open_fds()

    async def main():
        for _ in range(3):
            vm = new_async()
            events = vm.listen()
            await vm.launch()
            await vm.command("stop")
            async with events:
                assert (await events.wait(timeout=5))["event"] == "STOP"
            await vm.event_wait("STOP", timeout=5)
            await vm.shutdown()
            vm.close()
        # Closed while running, with a listener still open.
        vm = new_async()
        vm.listen()
        await vm.launch()
        vm.close()

    asyncio.run(main())
    assert open_fds() == before


def test_close_wakes_waiters_with_state_error():
    async def main():
        vm = new_async()
        await vm.launch()
        event = asyncio.ensure_future(vm.event_wait("NEVER", timeout=None))
        await asyncio.sleep(0.05)
        vm.close()
        with pytest.raises(StateError):
            await event
        with pytest.raises(StateError, match="closed"):
            await vm.command("query-status")

    run(main())


def test_bad_input(avm):
    async def main():
        with pytest.raises(StateError):
            await avm.command("query-status")
        with pytest.raises(StateError):
            await avm.event_wait("STOP", timeout=0)
        await avm.launch()
        with pytest.raises(TypeError, match="timeout"):
            await avm.command("query-status", timeout="1")
        with pytest.raises(InvalidArgument, match="timeout"):
            await avm.event_wait("STOP", timeout=-1)
        with pytest.raises(TypeError, match="args must be a dict"):
            await avm.command("qom-get", [1])
        with pytest.raises(TypeError, match="match must be a dict"):
            await avm.event_wait("STOP", ["data"])
        with pytest.raises(InvalidArgument, match="at least one filter"):
            await avm.events_wait([])
        with pytest.raises(InvalidArgument, match="at least one filter"):
            avm.listen([])
        with pytest.raises(InvalidArgument, match="NUL"):
            await avm.command("query-status\0")
        # Nothing was left pending, and the machine works.
        assert not avm._tickets and not avm._waiters
        assert (await avm.command("query-status"))["running"]

    run(main())
    # Another loop may take over once the first one is closed...
    run(avm.command("query-status"))

    # ...but not while it runs.
    async def first():
        await avm.command("query-status")
        errors = []

        def other():
            try:
                asyncio.run(avm.command("query-status"))
            except RuntimeError as exc:
                errors.append(exc)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(10)
        return errors

    errors = run(first())
    assert len(errors) == 1
    assert "another event loop" in str(errors[0])
    with pytest.raises(TypeError):
        AsyncMachine(QEMU, args="-accel tcg")


def test_wrap_a_launched_and_an_attached_machine(new_machine, tmp_path):
    launched = new_machine()
    launched.launch()
    path = tmp_path / "qmp.sock"
    process = subprocess.Popen(
        [QEMU, *NONE_ARGS, "-machine", "none", "-display", "none",
         "-qmp", f"unix:{path},server=on,wait=off"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                attached = Machine.attach_unix(path, timeout=5)
                break
            except IoError:
                assert time.monotonic() < deadline
                time.sleep(0.02)

        async def main():
            for machine in (launched, attached):
                vm = AsyncMachine.wrap(machine)
                assert vm.machine is machine
                await vm.command("stop")
                assert (await vm.event_wait("STOP", timeout=5))["event"] == "STOP"
                if machine is attached:
                    with pytest.raises(StateError):
                        await vm.kill()  # not ours to kill
                    assert (await vm.command("query-status"))["status"] == "paused"
                await vm.shutdown(timeout=10)
                if machine is launched:
                    # Launched again behind its back: the loop follows.
                    machine.launch()
                    assert (await vm.command("query-status"))["running"]
                    await vm.kill()
                vm.close()

        run(main())
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()
    with pytest.raises(TypeError, match="Machine"):
        AsyncMachine.wrap("vm")


def test_commands_event_waiters_and_listeners_together(avm):
    """Replies, events for waiters and events for listeners interleave;
    nothing is lost or stuck, whichever call routes QEMU's input."""

    async def main():
        await avm.launch()
        rounds = 100
        async with avm.listen([("RESUME", None)]) as resumes:

            async def commands():
                for _ in range(rounds):
                    await avm.command("stop")
                    await avm.command("query-status")
                    await avm.command("cont")

            async def stops():
                for _ in range(rounds):
                    await avm.event_wait("STOP", timeout=10)

            async def resumed():
                count = 0
                async for _ in resumes:
                    count += 1
                    if count == rounds:
                        return count

            results = await asyncio.gather(commands(), stops(), resumed())
        assert results[2] == rounds
        # Every RESUME is still in the machine's queue, and only those.
        names = [event["event"] for event in avm.events_take()]
        assert names == ["RESUME"] * rounds

    run(main())
