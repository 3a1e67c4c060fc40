"""The guest agent against the test guest's qemu-ga, on both channel types
(one boot each, shared by the checks), and the agent's bad input."""

import hashlib
import threading
import time

import pytest
from support import NONE_ARGS, PROMPT, QEMU, guest_args, kernel_release

from qemu_machine import (
    AddDeviceError,
    CommandError,
    Disconnected,
    ExecResult,
    InvalidArgument,
    Machine,
    StateError,
    Timeout,
)

AGENT = 60


CHANNELS = {"virtio": True, "isa": "isa-serial"}


@pytest.fixture(scope="module")
def agent_guests(guest_dir):
    """The test guest, booted once per channel type (both at once), its
    agent ready."""
    machines = {}
    try:
        for key, agent in CHANNELS.items():
            machines[key] = Machine(QEMU, guest_args(guest_dir), agent=agent)
            machines[key].set_console()
            machines[key].launch()
        for vm in machines.values():
            vm.console_wait("QM-GUEST-READY", "Kernel panic", timeout=AGENT)
            vm.console_wait(PROMPT, timeout=AGENT)
            vm.agent.wait_ready(timeout=AGENT)
        yield machines
    finally:
        for vm in machines.values():
            vm.close()


@pytest.fixture(params=list(CHANNELS))
def agent_vm(request, agent_guests):
    return agent_guests[request.param]


def noise(length, seed):
    """Deterministic pseudo-random bytes."""
    return hashlib.shake_256(seed.to_bytes(8, "little")).digest(length)


def test_exec(agent_vm, guest_dir):
    result = agent_vm.agent.exec(["uname", "-r"])
    assert isinstance(result, ExecResult)
    assert result.exit_code == 0
    assert result.stdout.decode().strip() == kernel_release(guest_dir)
    assert result.stderr == b""
    assert not result.truncated

    split = agent_vm.agent.exec(
        ("sh", "-c", "echo out; echo err >&2; exit 3"), timeout=AGENT
    )
    assert (split.exit_code, split.stdout, split.stderr) == (3, b"out\n", b"err\n")
    assert agent_vm.agent.exec(["sh", "-c", "kill -9 $$"]).exit_code == -9


def test_exec_input(agent_vm):
    data = b"any\0bytes\xff\n"
    assert agent_vm.agent.exec(["cat"], input=data).stdout == data
    assert agent_vm.agent.exec(["cat"], input=bytearray(data)).stdout == data
    assert agent_vm.agent.exec(["cat"], input="h\u00e9").stdout == "h\u00e9".encode()
    assert agent_vm.agent.exec(["cat"], input=b"").stdout == b""


def test_exec_errors_and_timeout(agent_vm):
    with pytest.raises(CommandError) as info:
        agent_vm.agent.exec(["/no/such/program"])
    assert info.value.qmp_class
    started = time.monotonic()
    with pytest.raises(Timeout, match="pid"):
        agent_vm.agent.exec(["sleep", "10"], timeout=0.5)
    assert time.monotonic() - started < 5
    # The agent is still usable.
    assert agent_vm.agent.exec(["echo", "again"]).stdout == b"again\n"


def test_commands(agent_vm):
    info = agent_vm.agent.command("guest-info")
    names = {command["name"] for command in info["supported_commands"]}
    assert {"guest-exec", "guest-file-open"} <= names
    assert agent_vm.agent.command("guest-ping", timeout=AGENT) == {}
    # Arguments as a dict or as keywords.
    assert agent_vm.agent.command("guest-sync", id=42) == 42
    assert agent_vm.agent.command("guest-sync", {"id": 7}) == 7
    with pytest.raises(CommandError) as info:
        agent_vm.agent.command("no-such-command")
    assert info.value.qmp_class == "CommandNotFound"


def test_files(agent_vm):
    # An ISA serial port moves about 11 kB/s; virtio-serial is fast, and
    # takes several chunks.
    on_isa = "isa-serial,chardev=" in " ".join(agent_vm.command_line)
    data = noise(4096 if on_isa else 300 * 1024, 42)
    assert len(set(data)) == 256
    agent_vm.agent.write_file("/tmp/blob", data)
    assert agent_vm.agent.read_file("/tmp/blob") == data
    assert agent_vm.agent.exec(["cat", "/tmp/blob"]).stdout == data
    agent_vm.agent.write_file("/tmp/empty", b"")
    assert agent_vm.agent.read_file("/tmp/empty", timeout=AGENT) == b""
    agent_vm.agent.write_file("/tmp/text", "h\u00e9\n")
    assert agent_vm.agent.read_file("/tmp/text") == "h\u00e9\n".encode()
    with pytest.raises(CommandError) as info:
        agent_vm.agent.read_file("/no/such/file")
    assert info.value.qmp_class == "GenericError"
    assert "No such file" in info.value.desc


def test_console_read_bytes(agent_vm):
    agent_vm.console_read_bytes()  # skip what came before
    agent_vm.console_write("printf 'a\\000b\\377\\n'; echo DONE-$((6*7))\r")
    agent_vm.console_wait("DONE-42", timeout=AGENT)
    # console_wait moved the cursor; print again and read byte-exact.
    agent_vm.console_write("printf 'c\\000d\\376\\n'; sleep 0.2; echo END\r")
    output = b""
    deadline = time.monotonic() + AGENT
    while b"END\r\n" not in output and time.monotonic() < deadline:
        output += agent_vm.console_read_bytes()
        time.sleep(0.05)
    assert b"c\x00d\xfe" in output


def test_bad_input(agent_vm):
    agent = agent_vm.agent
    with pytest.raises(TypeError, match="single string"):
        agent.exec("uname -r")
    with pytest.raises(InvalidArgument, match="program"):
        agent.exec([])
    with pytest.raises(TypeError, match="argv"):
        agent.exec(["echo", 1])
    with pytest.raises(InvalidArgument, match="NUL"):
        agent.exec(["echo", "a\0b"])
    with pytest.raises(TypeError, match="input"):
        agent.exec(["cat"], input=42)
    with pytest.raises(TypeError, match="timeout"):
        agent.exec(["true"], timeout="1")
    with pytest.raises(InvalidArgument, match="timeout"):
        agent.read_file("/tmp/blob", timeout=-1)
    with pytest.raises(TypeError, match="data"):
        agent.write_file("/tmp/x", 42)
    with pytest.raises(TypeError, match="path"):
        agent.read_file(None)
    with pytest.raises(TypeError, match="args must be a dict"):
        agent.command("guest-sync", [42])
    # Values only the library judges.
    with pytest.raises(InvalidArgument):
        agent.command("")
    # Still usable.
    assert agent.exec(["true"]).exit_code == 0


def test_qemu_killed_during_a_call_disconnects_at_once(agent_vm):
    # Last in this module: it ends the shared machine.
    errors = []

    def call():
        try:
            agent_vm.agent.exec(
                ["sh", "-c", "echo STARTED-$((6*7)) >/dev/console; sleep 30"]
            )
        except Exception as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    agent_vm.console_wait("STARTED-42", timeout=AGENT)  # the call waits
    started = time.monotonic()
    agent_vm.kill()
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 2
    assert len(errors) == 1 and isinstance(errors[0], Disconnected), errors
    with pytest.raises(StateError):
        agent_vm.agent.exec(["true"])


def test_without_an_agent_channel(new_machine):
    vm = new_machine()
    with pytest.raises(StateError):
        vm.agent.wait_ready(timeout=0)
    vm.launch()
    with pytest.raises(AddDeviceError):
        vm.agent.exec(["true"])
    with pytest.raises(AddDeviceError):
        vm.agent.command("guest-ping")


def test_no_agent_answering_is_a_timeout_that_says_so():
    # A guest that never runs (-S): nobody will ever answer.
    vm = Machine(QEMU, [*NONE_ARGS, "-S"], machine_type="pc", agent=True)
    try:
        vm.launch()
        with pytest.raises(Timeout, match="no guest agent answered"):
            vm.agent.wait_ready(timeout=0.5)
        with pytest.raises(Timeout):
            vm.agent.exec(["true"], timeout=0.3)
    finally:
        vm.close()


def test_agent_configuration(new_machine):
    def pc(**kwargs):
        # A PC that never runs (-S): it has the buses agent devices need.
        return new_machine(machine_type="pc", **kwargs)

    def launched_line(vm):
        vm.add_args("-S")
        vm.launch()
        return " ".join(vm.command_line)

    assert "isa-serial,chardev=" in launched_line(pc(agent="isa-serial"))
    assert "org.qemu.guest_agent.0" in launched_line(pc(agent=True))
    assert "agent" not in launched_line(pc(agent=False))
    vm = pc()
    vm.set_agent("isa-serial")
    assert "isa-serial,chardev=" in launched_line(vm)
    with pytest.raises(StateError):
        vm.set_agent()
    with pytest.raises(TypeError, match="agent"):
        new_machine(agent=1)
    with pytest.raises(InvalidArgument):
        new_machine(agent="")
    with pytest.raises(TypeError, match="device_type"):
        new_machine().set_agent(1)
