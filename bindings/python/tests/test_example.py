"""The examples run, and the README shows them verbatim."""

import os
import subprocess
import sys

import pytest
from support import PACKAGE_ROOT, kernel_release

EXAMPLES = PACKAGE_ROOT / "examples"


def run_example(name, *args):
    example = EXAMPLES / name
    assert len(example.read_text().splitlines()) <= 30
    result = subprocess.run(
        [sys.executable, str(example), *map(str, args)],
        env={**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_readme_example_runs():
    output = run_example("readme_example.py")
    assert "status: running" in output
    assert "event: STOP" in output
    assert "status: paused" in output
    assert "exit code: 0" in output


def test_agent_example_runs(guest_dir):
    output = run_example("agent_example.py", guest_dir)
    assert output.splitlines() == [
        "exit code: 0",
        f"output: {kernel_release(guest_dir)}",
    ]


def test_qtest_example_runs(qtest_accel_dir):
    lines = run_example("qtest_example.py", qtest_accel_dir).splitlines()
    assert lines[0].startswith("seconds: ")
    before, after = (int(n) for n in lines[0].split(",")[0][9:].split(" -> "))
    assert (after - before) % 60 in (2, 3, 4)
    assert lines[1:] == ["IRQ 8 raised: True", "IRQ 8 after register C: False"]


def test_asyncio_example_runs():
    assert run_example("asyncio_example.py").splitlines() == [
        "statuses: {'running'}",
        "event: STOP",
        "listener: STOP",
        "listener: RESUME",
        "exit code: 0",
    ]


def test_pytest_example_passes():
    """Run as a user runs it: pytest on the file, the plugin loaded by name
    here (an installed package registers it by its entry point)."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-p", "no:qemu_machine", "-p", "qemu_machine.pytest_plugin",
         "-rs", str(EXAMPLES / "test_pytest_example.py")],
        env={**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout, result.stdout


@pytest.mark.parametrize(
    "name",
    [
        "test_pytest_example.py",
        "readme_example.py",
        "agent_example.py",
        "qtest_example.py",
        "asyncio_example.py",
    ],
)
def test_readme_shows_the_example(name):
    readme = (PACKAGE_ROOT / "README.md").read_text()
    assert f"```python\n{(EXAMPLES / name).read_text()}```\n" in readme
