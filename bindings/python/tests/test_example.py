"""The README example runs, and the README shows it verbatim."""

import os
import subprocess
import sys

from support import PACKAGE_ROOT

EXAMPLE = PACKAGE_ROOT / "examples" / "readme_example.py"


def test_readme_example_runs():
    assert len(EXAMPLE.read_text().splitlines()) <= 25
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        env={**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "status: running" in result.stdout
    assert "event: STOP" in result.stdout
    assert "status: paused" in result.stdout
    assert "exit code: 0" in result.stdout


def test_readme_shows_the_example():
    readme = (PACKAGE_ROOT / "README.md").read_text()
    assert f"```python\n{EXAMPLE.read_text()}```\n" in readme
