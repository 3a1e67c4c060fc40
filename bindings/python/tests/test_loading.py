"""Finding the library (each case in a fresh interpreter: it loads at
import)."""

import ctypes.util
import os
import shutil
import subprocess
import sys

from support import PACKAGE_ROOT, REPO

RELEASE_LIB = REPO / "target" / "release" / "libqemu_machine.so"
PRINT_PATH = "import qemu_machine; print(qemu_machine.library_path)"


def run_python(code, package_root=PACKAGE_ROOT, **env):
    environ = {
        key: value
        for key, value in os.environ.items()
        if key not in ("QEMU_MACHINE_LIB", "QEMU_MACHINE_PREFIX")
    }
    environ.update(env, PYTHONPATH=str(package_root))
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=package_root,  # "-c" imports from the working directory first
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_explicit_library():
    result = run_python(PRINT_PATH, QEMU_MACHINE_LIB=str(RELEASE_LIB))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(RELEASE_LIB)


def test_explicit_library_is_never_replaced():
    result = run_python(PRINT_PATH, QEMU_MACHINE_LIB="/nonexistent/libqm.so")
    assert result.returncode != 0
    assert "LibraryNotFoundError" in result.stderr
    assert "/nonexistent/libqm.so" in result.stderr
    assert "target/release" not in result.stderr


def test_install_prefix(tmp_path):
    (tmp_path / "lib").mkdir()
    installed = tmp_path / "lib" / "libqemu_machine.so.0"
    installed.symlink_to(RELEASE_LIB)
    result = run_python(PRINT_PATH, QEMU_MACHINE_PREFIX=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(installed)


def test_nothing_found_lists_what_was_tried(tmp_path):
    # A copy of the package outside the repository: no build dir near it.
    package_root = tmp_path / "a" / "b"
    shutil.copytree(
        PACKAGE_ROOT / "qemu_machine",
        package_root / "qemu_machine",
        # Not a library an editable install may have put there.
        ignore=shutil.ignore_patterns("*.so", "*.so.*"),
    )
    result = run_python(
        PRINT_PATH, package_root, QEMU_MACHINE_PREFIX="/nonexistent"
    )
    if ctypes.util.find_library("qemu_machine"):
        assert result.returncode == 0, result.stderr  # the installed one
        return
    assert result.returncode != 0
    assert "LibraryNotFoundError" in result.stderr
    assert 'find_library("qemu_machine"): not found' in result.stderr
    assert "/nonexistent/lib/libqemu_machine.so.0" in result.stderr
    assert f"{tmp_path}/target/release/libqemu_machine.so" in result.stderr
    assert f"{tmp_path}/target/debug/libqemu_machine.so" in result.stderr
