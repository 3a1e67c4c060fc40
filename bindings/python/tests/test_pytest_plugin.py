"""The pytest plugin (``qemu_machine.pytest_plugin``), run with pytester
against real QEMUs: the fixture, artifacts in failure reports and on
disk, teardown, probes for ``skipif``."""

import os

import pytest
from support import NONE_ARGS, PACKAGE_ROOT, QEMU, guest_args

pytest_plugins = ["pytester"]

# The plugin of this checkout, by module name; its entry point is not
# used (the package is not installed here, though a build's egg-info may
# sit beside it): the installed package's is checked in test_packaging.py.
PLUGIN = ("-p", "no:qemu_machine", "-p", "qemu_machine.pytest_plugin")


@pytest.fixture(autouse=True)
def package_on_path(monkeypatch):
    """The inner pytest imports the package of this checkout."""
    monkeypatch.setenv("PYTHONPATH", str(PACKAGE_ROOT))


def run(pytester, *args):
    return pytester.runpytest_subprocess(*PLUGIN, *args)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_failing_test_reports_the_qemu_log_and_the_console_tail(
    pytester, guest_dir, tmp_path
):
    pids = tmp_path / "pids"
    keep = tmp_path / "artifacts"
    pytester.makepyfile(
        f"""
        from qemu_machine import LaunchError

        def test_guest_fails(qemu_machine):
            vm = qemu_machine({QEMU!r}, args={guest_args(guest_dir)!r})
            vm.set_console()
            vm.launch()
            with open({str(pids)!r}, "a") as f:
                f.write(f"{{vm.pid}}\\n")
            vm.console_wait("QM-GUEST-READY", timeout=60)
            vm.command("stop")
            vm.events_take()
            assert False, "deliberate failure"

        def test_launch_fails(qemu_machine):
            vm = qemu_machine({QEMU!r}, args=["-no-such-option"])
            vm.launch()
        """
    )
    result = run(pytester, f"--qemu-artifacts={keep}")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    # The guest's failure: its console tail (the guest's boot output), the
    # status, the command line and the events, including the STOP the
    # test took from the queue.
    for needle in [
        "qemu-machine 0: console (tail)",
        "QM-GUEST-READY",
        "qemu-machine 0: status",
        "running",
        "qemu-machine 0: command line",
        "initramfs.cpio.gz",
        "qemu-machine 0: events (tail)",
        '"STOP"',
        "qemu-machine 0: QMP trace (tail)",
        '{"execute":"stop"}',
    ]:
        assert needle in out, f"{needle!r} not in the report:\n{out}"
    # The launch failure: QEMU's log says why.
    assert "qemu-machine 0: QEMU log" in out
    assert "-no-such-option" in out
    # Kept for CI upload, one directory per test and machine.
    (guest,) = keep.glob("*test_guest_fails/machine-0")
    assert (guest / "console.log").read_text().count("QM-GUEST-READY") == 1
    assert "STOP" in (guest / "events.jsonl").read_text()
    launch = next(keep.glob("*test_launch_fails/machine-0"))
    assert "-no-such-option" in (launch / "qemu.log").read_text()
    assert str(guest) in out  # where they are, in the report
    # The guest was shut down at teardown.
    (pid,) = [int(p) for p in pids.read_text().split()]
    assert not alive(pid)


def test_a_passing_test_leaves_no_machine_and_no_report(pytester, tmp_path):
    pids = tmp_path / "pids"
    keep = tmp_path / "artifacts"
    pytester.makepyfile(
        f"""
        def test_two_machines(qemu_machine):
            for _ in range(2):
                vm = qemu_machine({QEMU!r}, args={list(NONE_ARGS)!r},
                                  machine_type="none")
                vm.launch()
                with open({str(pids)!r}, "a") as f:
                    f.write(f"{{vm.pid}}\\n")
                assert vm.command("query-status")["status"] == "running"
            # Made but never launched: nothing to shut down.
            qemu_machine({QEMU!r})
        """
    )
    result = run(pytester, f"--qemu-artifacts={keep}", "-rA")
    result.assert_outcomes(passed=1)
    assert "qemu-machine 0" not in result.stdout.str()
    assert not keep.exists()
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 2
    assert not any(alive(pid) for pid in started)


def test_without_the_option_the_report_still_holds_the_artifacts(
    pytester, tmp_path
):
    pytester.makepyfile(
        f"""
        def test_fails(qemu_machine):
            vm = qemu_machine({QEMU!r}, args={list(NONE_ARGS)!r},
                              machine_type="none")
            vm.launch()
            vm.command("stop")
            assert False
        """
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "qemu-machine 0: events (tail)" in out
    assert '"STOP"' in out
    assert "qemu-machine 0: artifacts" not in out
    # The temporary copy is removed.
    assert not list(tmp_path.glob("qemu-artifacts-*"))


def test_an_abnormal_shutdown_fails_the_teardown_with_artifacts(pytester):
    pytester.makepyfile(
        f"""
        import os, signal

        def test_qemu_dies(qemu_machine):
            vm = qemu_machine({QEMU!r}, args={list(NONE_ARGS)!r},
                              machine_type="none")
            vm.launch()
            os.kill(vm.pid, signal.SIGKILL)
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    out = result.stdout.str()
    assert "AbnormalShutdown" in out or "abnormal shutdown" in out, out
    assert "qemu-machine 0: status" in out
    assert "signal 9" in out or "SIGKILL" in out, out


def test_probe_serves_skipif(pytester):
    pytester.makepyfile(
        f"""
        import pytest
        import qemu_machine

        @pytest.mark.skipif(
            not qemu_machine.probe({QEMU!r}, "machine", "pc"),
            reason="no pc machine")
        def test_has_pc():
            pass

        @pytest.mark.skipif(
            not qemu_machine.probe({QEMU!r}, "device", "nonesuch-device"),
            reason="no nonesuch-device")
        def test_has_nonesuch():
            pass
        """
    )
    result = run(pytester, "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*no nonesuch-device*"])


def test_the_option_is_listed_in_help(pytester):
    result = run(pytester, "--help")
    result.stdout.fnmatch_lines(["*--qemu-artifacts=DIR*"])
