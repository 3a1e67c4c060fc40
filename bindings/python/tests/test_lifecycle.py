"""Launch, shutdown, kill, the context manager, properties, attaching."""

import functools
import json
import os
import socket
import subprocess
import time

import pytest

from qemu_machine.errors import AddDeviceError
from support import QEMU

import qemu_machine
from qemu_machine import (
    AbnormalShutdown,
    LaunchError,
    Machine,
    StateError,
    Status,
)


def test_launch_query_shutdown(new_machine):
    vm = new_machine()
    assert not vm.is_running
    assert vm.pid is None
    assert vm.exit_code is None
    assert vm.log is None
    assert vm.temp_dir is None
    assert vm.command_line is None
    vm.launch()
    assert vm.is_running
    assert vm.pid > 0
    assert os.path.isdir(vm.temp_dir)
    assert vm.exit_code is None
    status = vm.command("query-status")
    assert status["status"] == "running"
    assert status["running"] is True
    temp_dir = vm.temp_dir
    vm.shutdown()
    assert not vm.is_running
    assert vm.pid is None
    assert vm.exit_code == 0
    assert not os.path.exists(temp_dir)


def test_command_line(new_machine):
    vm = new_machine()
    vm.add_args("-name", "a name with spaces")
    vm.launch()
    argv = vm.command_line
    assert argv[0] == QEMU
    assert argv[argv.index("-machine") + 1] == "none"
    assert argv[-2:] == ["-name", "a name with spaces"]


def test_context_manager_shuts_down(new_machine):
    with new_machine() as vm:
        vm.launch()
        pid = vm.pid
        assert vm.command("query-status")["status"] == "running"
    assert not vm.is_running
    assert vm.exit_code == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    # Still usable: the log is readable and the machine can run again.
    assert isinstance(vm.log, str)
    vm.launch()
    assert vm.command("query-status")["status"] == "running"
    vm.shutdown()


def test_context_manager_without_launch(new_machine):
    with new_machine() as vm:
        pass
    assert vm.exit_code is None


def test_log_after_shutdown(new_machine, tmp_path):
    vm = new_machine(name="logged", log_dir=tmp_path)
    vm.add_args("-device", "no-such-device-for-the-log")
    with pytest.raises(LaunchError):
        vm.launch()
    assert "no-such-device-for-the-log" in vm.log
    log_file = tmp_path / "logged.log"
    assert "no-such-device-for-the-log" in log_file.read_text()

    # A human monitor on stdio prints its banner to the log.
    with new_machine() as vm:
        vm.add_args("-monitor", "stdio")
        vm.launch()
        assert vm.command("query-status")["status"] == "running"
    assert vm.exit_code == 0
    assert "monitor - type 'help'" in vm.log


def test_launch_failure_bad_option(new_machine):
    vm = new_machine()
    vm.add_args("-bogus")
    with pytest.raises(LaunchError) as info:
        vm.launch()
    error = info.value
    assert error.status == Status.LAUNCH
    assert "-bogus: invalid option" in error.message
    assert "-bogus: invalid option" in str(error)
    assert not vm.is_running
    assert vm.exit_code == 1
    with pytest.raises(StateError):
        vm.command("query-status")


def test_launch_failure_missing_binary():
    vm = Machine("/nonexistent/qemu-system-x86_64")
    try:
        with pytest.raises(LaunchError, match="nonexistent"):
            vm.launch()
    finally:
        vm.close()


def test_kill_and_abnormal_shutdown(new_machine):
    vm = new_machine()
    vm.launch()
    vm.kill()
    assert not vm.is_running
    assert vm.exit_code == -9
    vm.launch()
    os.kill(vm.pid, 9)
    with pytest.raises(AbnormalShutdown, match="signal 9"):
        vm.shutdown()
    assert vm.exit_code == -9


def test_wait_timeout_then_quit(new_machine):
    vm = new_machine()
    vm.launch()
    with pytest.raises(qemu_machine.Timeout):
        vm.wait(timeout=0)
    with pytest.raises(qemu_machine.Timeout):
        vm.wait(timeout=0.05)
    assert vm.is_running
    assert vm.command("quit") == {}
    assert vm.wait(timeout=10) == 0
    assert vm.exit_code == 0


def test_close_is_idempotent_and_final(new_machine):
    vm = new_machine()
    vm.launch()
    pid = vm.pid
    vm.close()
    vm.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert repr(vm) == "<Machine closed>"
    with pytest.raises(StateError, match="closed"):
        vm.command("query-status")
    with pytest.raises(StateError, match="closed"):
        vm.is_running


def test_garbage_collection_kills_qemu(new_machine):
    vm = Machine(QEMU, ["-accel", "tcg", "-nodefaults"], machine_type="none")
    vm.launch()
    pid = vm.pid
    del vm
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_configuration_after_launch_is_state_error(vm):
    with pytest.raises(StateError):
        vm.add_args("-S")
    with pytest.raises(StateError):
        vm.set_name("late")
    with pytest.raises(StateError):
        vm.launch()


def test_no_qmp(new_machine):
    vm = new_machine()
    vm.set_qmp_enabled(False)
    vm.add_monitor_null()
    vm.launch()  # returns as soon as QEMU is started
    assert vm.is_running
    with pytest.raises(AddDeviceError):
        vm.command("query-status")
    # Let QEMU install its SIGTERM handler (the first ~20 ms), else the
    # SIGTERM of shutdown() kills it: AbnormalShutdown.
    with pytest.raises(qemu_machine.Timeout):
        vm.wait(timeout=0.5)
    vm.shutdown()
    assert vm.exit_code == 0
    assert not vm.is_running


def test_monitor_tcp_and_qmp_trace(new_machine, tmp_path):
    trace = tmp_path / "qmp.trace"
    vm = new_machine()
    vm.set_monitor_tcp("127.0.0.1", 0)
    vm.set_qmp_trace(trace)
    assert vm.monitor_port is None
    vm.launch()
    assert 0 < vm.monitor_port < 65536
    vm.command("query-status")
    vm.shutdown()
    text = trace.read_text()
    assert ">> " in text and '"query-status"' in text
    assert "<< " in text


def test_monitor_unix(new_machine, tmp_path):
    path = tmp_path / "qmp.sock"
    vm = new_machine()
    vm.set_monitor_unix(path)
    vm.launch()
    assert path.exists()
    assert vm.monitor_port is None
    assert vm.command("query-status")["status"] == "running"
    vm.shutdown()
    assert not path.exists()


def test_base_temp_dir(new_machine, tmp_path):
    vm = new_machine(base_temp_dir=tmp_path)
    vm.launch()
    assert os.path.dirname(vm.temp_dir) == str(tmp_path)


def test_add_fd_and_send_fd(new_machine, tmp_path):
    data = tmp_path / "data"
    data.write_bytes(b"x" * 4096)
    vm = new_machine()
    with open(data, "rb") as f:
        vm.add_fd(f, 3, "my,opaque")
    vm.launch()
    fdsets = vm.command("query-fdsets")
    assert fdsets[0]["fdset-id"] == 3
    assert fdsets[0]["fds"][0]["opaque"] == "my,opaque"
    with open(data, "rb") as f:
        vm.send_fd(f.fileno(), "sent")
        assert f.read(1) == b"x"  # still ours
    vm.command("closefd", fdname="sent")
    with pytest.raises(qemu_machine.CommandError):
        vm.command("closefd", fdname="sent")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_qemu(qmp):
    return subprocess.Popen(
        [QEMU, "-machine", "none", "-accel", "tcg", "-nodefaults",
         "-display", "none", "-qmp", qmp],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _attach_retrying(attach):
    """Attach once the separately started QEMU listens."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return attach()
        except qemu_machine.IoError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_attach(transport, tmp_path):
    if transport == "unix":
        path = tmp_path / "qmp.sock"
        process = _start_qemu(f"unix:{path},server=on,wait=off")
        attach = functools.partial(Machine.attach_unix, path, timeout=5)
    else:
        port = _free_port()
        process = _start_qemu(f"tcp:127.0.0.1:{port},server=on,wait=off")
        attach = functools.partial(
            Machine.attach_tcp, "127.0.0.1", port, timeout=5
        )
    try:
        vm = _attach_retrying(attach)
        try:
            assert vm.pid is None
            assert vm.log is None
            assert vm.command("query-status")["status"] == "running"
            with pytest.raises(StateError):
                vm.kill()
            vm.command("stop")
            assert vm.event_wait("STOP", timeout=5)["event"] == "STOP"
            assert json.dumps(vm.command_line)
            vm.shutdown(timeout=10)
        finally:
            vm.close()
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()
