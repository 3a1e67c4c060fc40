"""The pytest plugin of qemu-machine, registered with pytest (entry point
``pytest11``) when the package is installed.

The ``qemu_machine`` fixture is a factory: it takes the same arguments as
:class:`~qemu_machine.Machine` and returns a machine that the test
launches::

    def test_boots(qemu_machine):
        vm = qemu_machine(args=["-accel", "tcg"], machine_type="none")
        vm.launch()
        assert vm.command("query-status")["status"] == "running"

Every machine it made traces its QMP traffic and is shut down at teardown
(an abnormal shutdown fails the teardown). When any phase of the test fails, each launched machine's
artifacts (:meth:`~qemu_machine.Machine.save_artifacts`: QEMU's log, the
console output, the QMP trace, the events, the command line and how QEMU
ended) are attached to the test's report as sections, which pytest prints
with the failure; with ``--qemu-artifacts=DIR`` they are also kept under
``DIR/<test id>/machine-<n>/`` for CI to upload.

:func:`qemu_machine.probe` answers what a QEMU binary can do, for
``pytest.mark.skipif``.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Generator, List, Optional

import pytest

from .errors import QemuMachineError as Error
from .machine import Machine

# How much of each file a report section shows (its end).
_TAIL_BYTES = 16 * 1024

# (file, section title): what the report shows of a machine's artifacts.
_SECTIONS = (
    ("status.txt", "status"),
    ("command-line.txt", "command line"),
    ("qemu.log", "QEMU log"),
    ("console.log", "console (tail)"),
    ("qmp-trace.log", "QMP trace (tail)"),
    ("events.jsonl", "events (tail)"),
)

_MACHINES = pytest.StashKey[List[Machine]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("qemu-machine")
    group.addoption(
        "--qemu-artifacts",
        metavar="DIR",
        default=None,
        help="keep the artifacts of the QEMU machines of failed tests "
        "under DIR/<test id>/machine-<n>/ (they are always shown in the "
        "failure report)",
    )


@pytest.fixture
def qemu_machine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Generator[Callable[..., Machine], None, None]:
    """A factory of :class:`~qemu_machine.Machine` objects: call it with
    the arguments of ``Machine(...)``; launch what it returns. Each machine
    traces its QMP traffic (to a file under pytest's temporary directory;
    :meth:`~qemu_machine.Machine.set_qmp_trace` chooses another), is shut
    down at teardown, and has its artifacts attached to the report of a
    failed test."""
    machines: List[Machine] = []
    request.node.stash[_MACHINES] = machines
    traces: List[Path] = []

    def make(*args: Any, **kwargs: Any) -> Machine:
        machine = Machine(*args, **kwargs)
        machines.append(machine)
        if not traces:
            traces.append(tmp_path_factory.mktemp("qemu-machine"))
        machine.set_qmp_trace(traces[0] / f"qmp-trace-{len(machines) - 1}.log")
        return machine

    yield make
    failure: Optional[Error] = None
    for machine in reversed(machines):
        try:
            machine.shutdown()
        except Error as error:
            failure = failure or error
    if failure is not None:
        raise failure


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    machines = item.stash.get(_MACHINES, None)
    if not machines:
        return
    if report.failed:
        _attach_artifacts(item, report, machines)
    if call.when == "teardown":
        # Shut down by the fixture's teardown, and reported: free them.
        for machine in machines:
            machine.close()
        machines.clear()


def _attach_artifacts(
    item: pytest.Item, report: pytest.TestReport, machines: List[Machine]
) -> None:
    keep = item.config.getoption("qemu_artifacts")
    if keep:
        base = Path(keep) / _safe_name(item.nodeid)
        if report.when != "call":
            base = base / report.when
    else:
        base = Path(tempfile.mkdtemp(prefix="qemu-artifacts-"))
    try:
        for index, machine in enumerate(machines):
            label = f"qemu-machine {index}"
            directory = base / f"machine-{index}"
            try:
                machine.save_artifacts(directory)
            except Error as error:
                report.sections.append((label, f"no artifacts: {error}"))
                continue
            for file_name, title in _SECTIONS:
                text = _tail(directory / file_name)
                if text is not None:
                    report.sections.append((f"{label}: {title}", text))
            if keep:
                report.sections.append((f"{label}: artifacts", str(directory)))
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def _tail(path: Path) -> Optional[str]:
    """The end of ``path`` as text, ``None`` if there is no such file."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - _TAIL_BYTES))
            data = f.read()
    except FileNotFoundError:
        return None
    text = data.decode("utf-8", "replace") or "(empty)"
    if size > _TAIL_BYTES:
        text = f"[... the first {size - len(data)} bytes are left out]\n" + text
    return text


def _safe_name(nodeid: str) -> str:
    """A directory name for a test id (``tests/test_x.py::test_y[a/b]``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_") or "test"
