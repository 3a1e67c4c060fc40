"""Split commands, the event-loop descriptor, the greeting, QEMU's
environment, artifacts, probes and migration."""

import json
import os
import selectors
import signal
import time

import pytest
from support import QEMU, open_fds

from qemu_machine import (
    AbnormalShutdown,
    AddDeviceError,
    Disconnected,
    InvalidArgument,
    LaunchError,
    Machine,
    StateError,
    Timeout,
    migrate,
    probe,
)


def test_pipelined_commands_answer_in_any_order_of_receiving(vm):
    tickets = [vm.command_send("query-status") for _ in range(5)]
    stop = vm.command_send("stop")
    error = vm.command_send("no-such-command")
    assert len(set(tickets + [stop, error])) == 7
    assert vm.command_receive(error)["error"]["class"] == "CommandNotFound"
    assert vm.command_receive(stop) == {"return": {}}
    for ticket in reversed(tickets):
        assert "status" in vm.command_receive(ticket, timeout=5)["return"]
    # Received: no longer outstanding.
    with pytest.raises(InvalidArgument, match="not outstanding"):
        vm.command_receive(stop, timeout=0)
    # Arguments as for command(): a dict, keywords, or both.
    ticket = vm.command_send("qom-get", {"path": "/machine"}, property="type")
    assert vm.command_receive(ticket) == {"return": "none-machine"}


def test_a_receive_timeout_keeps_the_ticket(vm):
    os.kill(vm.pid, signal.SIGSTOP)
    try:
        ticket = vm.command_send("query-status")
        with pytest.raises(Timeout):
            vm.command_receive(ticket, timeout=0)
        with pytest.raises(Timeout):
            vm.command_receive(ticket, timeout=0.1)
    finally:
        os.kill(vm.pid, signal.SIGCONT)
    assert vm.command_receive(ticket, timeout=5)["return"]["running"]


def test_the_end_of_the_run_answers_outstanding_tickets(vm):
    os.kill(vm.pid, signal.SIGSTOP)
    ticket = vm.command_send("query-status")
    vm.kill()
    with pytest.raises(Disconnected, match="signal 9"):
        vm.command_receive(ticket, timeout=None)
    with pytest.raises(StateError):
        vm.command_send("query-status")


def test_bad_tickets(vm, new_machine):
    with pytest.raises(InvalidArgument, match="not outstanding"):
        vm.command_receive(12345678, timeout=0)
    with pytest.raises(InvalidArgument, match="ticket"):
        vm.command_receive(-1)
    with pytest.raises(TypeError, match="ticket"):
        vm.command_receive("1")
    # A ticket of another machine.
    other = new_machine()
    other.launch()
    ticket = other.command_send("query-status")
    with pytest.raises(InvalidArgument, match="not outstanding"):
        vm.command_receive(ticket, timeout=0)
    assert other.command_receive(ticket)["return"]["running"]
    with pytest.raises(TypeError, match="args must be a dict"):
        vm.command_send("query-status", [1])
    with pytest.raises(InvalidArgument, match="NUL"):
        vm.command_send("query-status\0")


def test_a_selectors_loop_with_fileno_and_dispatch(vm):
    """What an event loop does: wait for the descriptor, dispatch, collect
    replies with a zero timeout."""
    fd = vm.fileno()
    assert fd >= 0
    assert vm.fileno() == fd
    replies = {}
    tickets = [vm.command_send("query-status") for _ in range(20)]
    tickets.append(vm.command_send("stop"))
    with selectors.DefaultSelector() as selector:
        selector.register(vm, selectors.EVENT_READ)
        deadline = time.monotonic() + 10
        while len(replies) < len(tickets) and time.monotonic() < deadline:
            selector.select(timeout=1)
            vm.dispatch()
            for ticket in tickets:
                if ticket not in replies:
                    try:
                        replies[ticket] = vm.command_receive(ticket, timeout=0)
                    except Timeout:
                        pass
    assert len(replies) == len(tickets)
    assert vm.event_get(timeout=0)["event"] == "STOP"
    # QEMU gone: the descriptor reports it, dispatch says how.
    os.kill(vm.pid, signal.SIGKILL)
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        assert selector.select(timeout=5)
        with pytest.raises(Disconnected, match="signal 9"):
            vm.dispatch()
        # Readable for good once the run has ended.
        assert selector.select(timeout=0)
    with pytest.raises(AbnormalShutdown, match="signal 9"):
        vm.shutdown()
    assert vm.fileno() == -1


def test_fileno_and_dispatch_without_a_run(new_machine):
    vm = new_machine()
    assert vm.fileno() == -1
    with pytest.raises(StateError, match="not been launched"):
        vm.dispatch()
    vm = new_machine()
    vm.set_qmp_enabled(False)
    vm.launch()
    assert vm.fileno() == -1
    with pytest.raises(AddDeviceError):
        vm.dispatch()


def test_greeting(new_machine):
    vm = new_machine()
    assert vm.greeting is None
    vm.launch()
    greeting = vm.greeting
    version = greeting["QMP"]["version"]
    assert version["qemu"]["major"] >= 7
    assert isinstance(greeting["QMP"]["capabilities"], list)
    vm.shutdown()
    assert vm.greeting == greeting  # of the last run


def environment(pid):
    with open(f"/proc/{pid}/environ", "rb") as environ:
        pairs = environ.read().split(b"\0")
    return dict(
        pair.decode().split("=", 1) for pair in pairs if b"=" in pair
    )


def test_environment(new_machine, monkeypatch, tmp_path):
    monkeypatch.setenv("QM_TEST_INHERITED", "yes")
    monkeypatch.setenv("QM_TEST_REMOVED", "yes")
    vm = new_machine(
        env={
            "QM_TEST_SET": "a value=with equals",
            "QM_TEST_REMOVED": None,
            "QM_TEST_PATH": tmp_path,
        }
    )
    vm.set_env("QM_TEST_LATER", "1")
    vm.set_env("QM_TEST_LATER", "2")  # replaces
    vm.launch()
    env = environment(vm.pid)
    assert env["QM_TEST_INHERITED"] == "yes"
    assert env["QM_TEST_SET"] == "a value=with equals"
    assert env["QM_TEST_PATH"] == str(tmp_path)
    assert env["QM_TEST_LATER"] == "2"
    assert "QM_TEST_REMOVED" not in env
    with pytest.raises(StateError):
        vm.set_env("QM_TEST_SET", "x")


def test_bad_environment(new_machine):
    vm = new_machine()
    with pytest.raises(InvalidArgument, match="="):
        vm.set_env("A=B", "1")
    with pytest.raises(InvalidArgument, match="empty"):
        vm.set_env("", "1")
    with pytest.raises(InvalidArgument, match="NUL"):
        vm.set_env("A", "1\0")
    with pytest.raises(TypeError, match="name"):
        vm.set_env(1, "1")
    with pytest.raises(TypeError, match="value"):
        vm.set_env("A", 1)
    with pytest.raises(TypeError, match="env must be a dict"):
        Machine(QEMU, env=["A=1"])


def test_save_artifacts(new_machine, tmp_path):
    vm = new_machine()
    with pytest.raises(StateError):
        vm.save_artifacts(tmp_path / "never")
    vm.set_qmp_trace(tmp_path / "trace.log")
    vm.launch()
    vm.command("stop")
    vm.event_wait("STOP", timeout=5)  # taken events are saved too
    out = tmp_path / "artifacts"
    vm.save_artifacts(out)
    assert (out / "status.txt").read_text().startswith("running")
    vm.shutdown()
    vm.save_artifacts(str(out))  # overwrites
    names = sorted(path.name for path in out.iterdir())
    assert names == [
        "command-line.txt",
        "events.jsonl",
        "qemu.log",
        "qmp-trace.log",
        "status.txt",
    ]
    events = [
        json.loads(line)["event"]
        for line in (out / "events.jsonl").read_text().splitlines()
    ]
    assert events == ["STOP", "SHUTDOWN"]
    assert "exit" in (out / "status.txt").read_text()
    assert QEMU in (out / "command-line.txt").read_text()
    assert oct(out.stat().st_mode & 0o777) == oct(0o700)
    with pytest.raises(TypeError, match="directory"):
        vm.save_artifacts(None)


def test_probe():
    assert probe(QEMU, "machine", "pc")
    assert probe(QEMU, "machine", "none")
    assert not probe(QEMU, "machine", "no-such-machine")
    assert probe(QEMU, "device", "isa-serial")
    assert probe(QEMU, "device", "virtio-serial-pci")
    assert not probe(QEMU, "device", "no-such-device")
    assert probe(QEMU, "accel", "tcg")
    assert probe(QEMU, "cpu", "qemu64")
    assert probe(QEMU, "command", "query-status")
    assert not probe(QEMU, "command", "no-such-command")
    # The answers are kept: no QEMU starts again.
    started = time.monotonic()
    for _ in range(100):
        assert probe(QEMU, "device", "isa-serial", timeout=0.001)
    assert time.monotonic() - started < 0.5
    with pytest.raises(InvalidArgument, match="unknown capability"):
        probe(QEMU, "colour", "blue")
    with pytest.raises(LaunchError):
        probe("/no/such/qemu", "machine", "pc")
    with pytest.raises(TypeError):
        probe(QEMU, "machine", None)


def test_migrate(new_machine):
    src = new_machine()
    dst = new_machine()
    dst.add_args("-incoming", "defer")
    src.launch()
    dst.launch()
    migrate(src, dst, timeout=30)
    assert src.command("query-status")["status"] == "postmigrate"
    assert dst.command("query-status")["status"] == "running"
    assert dst.command("query-migrate")["status"] == "completed"
    # Migrating again from a source already migrated: the target refuses
    # (it is not waiting for an incoming migration).
    with pytest.raises(Exception):
        migrate(src, dst, timeout=10)
    with pytest.raises(TypeError, match="dst"):
        migrate(src, "dst")


def test_migrate_needs_running_machines(new_machine):
    src = new_machine()
    dst = new_machine()
    with pytest.raises(StateError):
        migrate(src, dst, timeout=1)


def test_no_descriptor_left_behind(new_machine):
    before = open_fds()
    for _ in range(3):
        vm = new_machine()
        events = vm.listen()
        vm.launch()
        vm.fileno()
        vm.command_send("stop")
        vm.shutdown()
        events.close()
        vm.close()
    assert open_fds() == before
