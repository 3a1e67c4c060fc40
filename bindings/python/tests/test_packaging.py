"""Packaging: pip builds libqemu_machine from the crate and bundles it.

The distributions are built as a user would (``pip wheel ./bindings/python``
is what ``pip install ./bindings/python`` does before installing; ``python
-m build --sdist``), checked, and each installed in a fresh virtualenv under
``target/python-packaging``, whose Python then launches QEMU from a
directory outside the repository, with no variable pointing at a library.

Kept between runs: the tools' virtualenv, pip's cache and cargo's target
directory (``target/python``, the one ``pip install ./bindings/python``
uses). Warm, the crate alone is compiled, once, for the sdist (pip unpacks
it anew): about 45 s in all on 2 cores; cold, its dependencies too: about
2 to 3 minutes.

The loader's order (bundled library first) is checked on copies of the
package, without building.
"""

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
from support import NONE_ARGS, PACKAGE_ROOT, QEMU, REPO

WORK = REPO / "target" / "python-packaging"
# Shared by the builds from the checkout and from the sdist: cargo tells
# their sources apart by modification time only, which is sound here, the
# sdist being made from the checkout in the same run, with newer times.
CARGO_TARGET = REPO / "target" / "python"
RELEASE_LIB = REPO / "target" / "release" / "libqemu_machine.so"
LIB = "libqemu_machine.so"
BUILD_TIMEOUT = 1200  # a cold build on a busy 2-core machine


def crate_version():
    text = (REPO / "Cargo.toml").read_text()
    return re.search(r'^version = "([^"]+)"', text, re.M).group(1)


def clean_env(**extra):
    """The environment without anything pointing at a library or at the
    checkout's sources."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("QEMU_MACHINE_", "PYTHON", "VIRTUAL_ENV"))
        and key not in ("LD_LIBRARY_PATH", "LD_PRELOAD")
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra)
    return env


def run(command, timeout=BUILD_TIMEOUT, **kwargs):
    kwargs.setdefault("env", clean_env(CARGO_TARGET_DIR=str(CARGO_TARGET)))
    result = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, command))} exited with {result.returncode}"
            f"\n--- stdout\n{result.stdout[-6000:]}"
            f"\n--- stderr\n{result.stderr[-6000:]}",
            pytrace=False,
        )
    return result


def fresh_venv(name):
    """An empty virtualenv (the tools' pip installs into it: faster than
    its own)."""
    venv = WORK / name
    run([sys.executable, "-m", "venv", "--clear", "--without-pip", venv],
        timeout=300)
    return venv


def pip_install(tools, venv, *args):
    run([tools / "bin" / "pip", "--python", venv / "bin" / "python",
         "install", *args])


@pytest.fixture(scope="module")
def tools():
    """A virtualenv with pip and PyPI's build, kept between runs."""
    venv = WORK / "tools"
    if not (venv / "bin" / "pyproject-build").exists():
        run([sys.executable, "-m", "venv", "--clear", venv], timeout=300)
        # pip 22.3 or later: --python installs into the fresh virtualenvs.
        run([venv / "bin" / "pip", "install", "-q", "pip>=22.3", "build"],
            timeout=600)
    return venv


@pytest.fixture(scope="module")
def dist(tools):
    """The sdist and the wheel, built from bindings/python."""
    out = WORK / "dist"
    shutil.rmtree(out, ignore_errors=True)
    run([tools / "bin" / "python", "-m", "build", "--sdist",
         "--outdir", out, PACKAGE_ROOT])
    run([tools / "bin" / "pip", "wheel", "--no-deps", "--wheel-dir", out,
         PACKAGE_ROOT])
    sdists = list(out.glob("*.tar.gz"))
    wheels = list(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, list(out.iterdir())
    return {"sdist": sdists[0], "wheel": wheels[0]}


SMOKE = """
import json, sys
from pathlib import Path
import qemu_machine
from qemu_machine import Machine

with Machine(sys.argv[1], sys.argv[2:], machine_type="none") as vm:
    vm.launch()
    status = vm.command("query-status")["status"]
    vm.shutdown()
exit_code = vm.exit_code
vm.close()
print(json.dumps({
    "package": str(Path(qemu_machine.__file__).resolve().parent),
    "library": str(Path(qemu_machine.library_path).resolve()),
    "version": qemu_machine.__version__,
    "prefix": str(Path(sys.prefix).resolve()),
    "status": status,
    "exit_code": exit_code,
}))
"""


def check_installed(venv, cwd):
    """Imports the package in the virtualenv, from outside the repository,
    and launches QEMU; checks the bundled library was the one loaded."""
    result = run(
        [venv / "bin" / "python", "-c", SMOKE, QEMU, *NONE_ARGS],
        timeout=120,
        cwd=cwd,
        env=clean_env(),
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    package = Path(report["package"])
    assert report["prefix"] == str(venv.resolve())
    assert package.parent.name == "site-packages", report
    assert str(package).startswith(f"{venv.resolve()}/"), report
    # The library bundled in the installed package, not the checkout's.
    assert report["library"] == str(package / LIB), report
    assert report["version"] == crate_version()
    assert report["status"] == "running", report
    assert report["exit_code"] == 0, report


def test_wheel_is_platform_specific(dist):
    name = dist["wheel"].name
    python, abi, platform = name[: -len(".whl")].split("-")[-3:]
    assert name.startswith(f"qemu_machine-{crate_version()}-"), name
    assert (python, abi) == ("py3", "none"), name
    expected = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    assert platform == expected, name


def elf_sections(data):
    """The section names of a little-endian ELF64 file."""
    assert data[4:6] == b"\x02\x01", "not a little-endian ELF64 file"
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [
        struct.unpack_from("<IIQQQQ", data, shoff + index * shentsize)
        for index in range(shnum)
    ]
    strtab_offset = headers[shstrndx][4]
    return [
        data[strtab_offset + name : data.index(b"\0", strtab_offset + name)]
        .decode()
        for name, *_ in headers
    ]


def test_wheel_holds_the_library(dist):
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = set(wheel.namelist())
        library = wheel.read(f"qemu_machine/{LIB}")
        record = wheel.read(
            f"qemu_machine-{crate_version()}.dist-info/RECORD"
        ).decode()
    # The package's files as they are now (none left from an older build),
    # and the library.
    sources = {
        f"qemu_machine/{path.name}"
        for path in (PACKAGE_ROOT / "qemu_machine").iterdir()
        if path.suffix == ".py" or path.name == "py.typed"
    }
    packaged = {name for name in names if name.startswith("qemu_machine/")}
    assert packaged == sources | {f"qemu_machine/{LIB}"}
    assert f"qemu_machine/{LIB}," in record
    assert not [name for name in names if name.startswith(("tests/", "rust/"))]
    assert library[:4] == b"\x7fELF"
    assert b"libqemu_machine.so.0\x00" in library  # the SONAME
    assert b"qm_version\x00" in library
    debug = [name for name in elf_sections(library) if name.startswith(".debug")]
    assert not debug, "debug info is not stripped"


def test_sdist_holds_the_crate(dist):
    with tarfile.open(dist["sdist"]) as sdist:
        names = [member.name for member in sdist if member.isfile()]
    top = f"qemu_machine-{crate_version()}/"
    assert all(name.startswith(top) for name in names), names
    files = {name[len(top):] for name in names}
    crate = {name[len("rust/"):] for name in files if name.startswith("rust/")}
    assert {"setup.py", "pyproject.toml", "qemu_machine/_native.py"} <= files
    assert {
        "Cargo.toml", "Cargo.lock", "build.rs", "cbindgen.toml",
        "include/qemu_machine.h",
    } <= crate
    sources = {
        str(path.relative_to(REPO)) for path in (REPO / "src").rglob("*.rs")
    }
    assert {name for name in crate if name.startswith("src/")} == sources
    assert not [
        name for name in files
        if name.startswith(("tests/", "rust/tests/", "rust/target"))
    ], sorted(files)


def test_install_wheel(tools, dist, tmp_path):
    venv = fresh_venv("venv-wheel")
    pip_install(tools, venv, "--no-index", "--no-deps", dist["wheel"])
    check_installed(venv, tmp_path)


PLUGIN_TEST = """
def test_fails(qemu_machine):
    vm = qemu_machine({qemu!r}, args={args!r}, machine_type="none")
    vm.launch()
    vm.command("stop")
    assert False, "deliberate"
"""


def test_installed_package_registers_the_pytest_plugin(tools, dist, tmp_path):
    """With the wheel installed, pytest finds the qemu_machine fixture by
    the package's entry point: nothing to configure."""
    venv = fresh_venv("venv-pytest")
    pip_install(tools, venv, "-q", dist["wheel"], "pytest")
    (tmp_path / "test_plugin.py").write_text(
        PLUGIN_TEST.format(qemu=QEMU, args=list(NONE_ARGS))
    )
    result = subprocess.run(
        [venv / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"--qemu-artifacts={tmp_path / 'artifacts'}", "test_plugin.py"],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed" in result.stdout, result.stdout
    assert "qemu-machine 0: events (tail)" in result.stdout, result.stdout
    assert '"STOP"' in result.stdout
    assert list((tmp_path / "artifacts").glob("*test_fails/machine-0/qemu.log"))


def test_install_sdist(tools, dist, tmp_path):
    """pip unpacks the sdist and builds the crate from rust/ there."""
    venv = fresh_venv("venv-sdist")
    pip_install(tools, venv, dist["sdist"])
    check_installed(venv, tmp_path)


def test_versions_agree():
    pyproject = (PACKAGE_ROOT / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    assert version == crate_version(), "pyproject.toml and Cargo.toml"


# The loader's order, on copies of the package laid out as in a checkout:
# ROOT/bindings/python/qemu_machine and ROOT/target/release.

PRINT_PATH = "import qemu_machine; print(qemu_machine.library_path)"


def copy_package(root, bundled=None, checkout=True):
    package_root = root / "bindings" / "python"
    shutil.copytree(
        PACKAGE_ROOT / "qemu_machine",
        package_root / "qemu_machine",
        ignore=shutil.ignore_patterns("*.so", "__pycache__"),
    )
    if bundled is not None:
        (package_root / "qemu_machine" / LIB).write_bytes(bundled)
    if checkout:
        (root / "target" / "release").mkdir(parents=True)
        (root / "target" / "release" / LIB).symlink_to(RELEASE_LIB)
    return package_root


def import_from(package_root, **env):
    return subprocess.run(
        [sys.executable, "-c", PRINT_PATH],
        cwd=package_root,
        env=clean_env(PYTHONPATH=str(package_root), **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bundled_library_comes_before_the_checkout(tmp_path):
    package_root = copy_package(tmp_path, bundled=RELEASE_LIB.read_bytes())
    result = import_from(package_root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(package_root / "qemu_machine" / LIB)


def test_checkout_library_without_a_bundled_one(tmp_path):
    package_root = copy_package(tmp_path)
    result = import_from(package_root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "target/release" / LIB)


def test_explicit_library_comes_before_the_bundled_one(tmp_path):
    package_root = copy_package(tmp_path, bundled=RELEASE_LIB.read_bytes())
    explicit = tmp_path / "explicit.so"
    explicit.symlink_to(RELEASE_LIB)
    result = import_from(package_root, QEMU_MACHINE_LIB=str(explicit))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(explicit)


def test_broken_bundled_library_is_reported(tmp_path):
    package_root = copy_package(tmp_path, bundled=b"not a library",
                                checkout=False)
    result = import_from(package_root)
    if result.returncode == 0:  # an installed library loaded instead
        assert result.stdout.strip() != str(package_root / "qemu_machine" / LIB)
        return
    assert "LibraryNotFoundError" in result.stderr
    bundled = package_root / "qemu_machine" / LIB
    assert f"  {bundled}: {bundled}: " in result.stderr  # dlopen's error
    assert "pip install ./bindings/python" in result.stderr


def test_missing_bundled_library_is_reported(tmp_path):
    package_root = copy_package(tmp_path, checkout=False)
    result = import_from(package_root)
    if result.returncode == 0:  # an installed library loaded instead
        return
    bundled = package_root / "qemu_machine" / LIB
    assert f"  {bundled}: not bundled" in result.stderr
