"""QMP commands: whole replies, return values, errors, arguments."""

import pytest

from qemu_machine import CommandError, QemuMachineError, StateError, Status


def test_qmp_whole_reply(vm):
    reply = vm.qmp("query-status")
    assert set(reply) == {"return"}
    assert reply["return"]["status"] == "running"


def test_qmp_error_reply_is_returned(vm):
    reply = vm.qmp("no-such-command")
    assert reply["error"]["class"] == "CommandNotFound"
    assert "no-such-command" in reply["error"]["desc"]
    assert "id" not in reply


def test_command_error(vm):
    with pytest.raises(CommandError) as info:
        vm.command("no-such-command")
    error = info.value
    assert isinstance(error, QemuMachineError)
    assert error.status == Status.COMMAND
    assert error.qmp_class == "CommandNotFound"
    assert "no-such-command" in error.desc
    assert error.desc in error.message


def test_command_arguments(vm):
    assert vm.command("qom-get", {"path": "/machine", "property": "type"}) == (
        "none-machine"
    )
    assert vm.command("qom-get", path="/machine", property="type") == (
        "none-machine"
    )
    assert vm.command("qom-get", {"path": "/machine"}, property="type") == (
        "none-machine"
    )
    assert vm.qmp("qom-get", path="/machine", property="type") == {
        "return": "none-machine"
    }
    with pytest.raises(TypeError, match="given twice: path"):
        vm.command("qom-get", {"path": "/machine"}, path="/machine")
    with pytest.raises(CommandError) as info:
        vm.command("qom-get", path="/nope", property="x")
    assert info.value.qmp_class in ("DeviceNotFound", "GenericError")


def test_unicode_round_trip(vm):
    text = 'ünïcødé ☃ "quoted" \\ \u0001'
    vm.command("qom-set", path="/machine", property="append", value=text)
    assert vm.command("qom-get", path="/machine", property="append") == text


def test_large_reply(vm):
    schema = vm.command("query-qmp-schema")
    assert any(entry.get("name") == "query-status" for entry in schema)


def test_stop_cont_events(vm):
    vm.command("stop")
    assert vm.event_wait("STOP", timeout=5)["event"] == "STOP"
    assert vm.command("query-status")["status"] == "paused"
    vm.command("cont")
    assert vm.event_wait("RESUME", timeout=5)["event"] == "RESUME"
    assert vm.command("query-status")["status"] == "running"


def test_quit_then_shutdown(vm):
    assert vm.command("quit") == {}
    vm.shutdown()
    assert vm.exit_code == 0
    with pytest.raises(StateError, match="shut down"):
        vm.command("query-status")


def test_command_before_launch(new_machine):
    with pytest.raises(StateError, match="not been launched"):
        new_machine().command("query-status")
