"""Builds libqemu_machine from the Rust crate and bundles it in the package.

The metadata is in pyproject.toml; this file only adds the library:

- setuptools-rust compiles the crate (``cargo rustc --lib --release
  --crate-type cdylib``) and copies the shared library into the package as
  ``qemu_machine/libqemu_machine.so`` (debug info stripped), where
  ``qemu_machine._native`` looks for it first.
- The crate is the repository's (two directories up) when building from a
  checkout, or the copy under ``rust/`` when building from the source
  distribution: ``sdist`` puts there the crate as ``cargo package`` makes
  it for crates.io (the ``include`` list of Cargo.toml).
- The wheel holds no Python extension module, only a C library loaded with
  ctypes: it is tagged ``py3-none-<platform>``, for any Python 3 on that
  platform.

Cargo builds in ``CARGO_TARGET_DIR`` when set, else in the crate's
``target/python``: apart from ``cargo build``'s own ``target/release``
(the two builds would otherwise take turns rebuilding the library), and
kept between builds from the same checkout, so that a rebuild is
incremental.
"""

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
from setuptools_rust import Binding, RustExtension, Strip, build_rust

HERE = Path(__file__).resolve().parent
LIB_FILE = "libqemu_machine.so"  # the name _native.py looks for
SDIST_CRATE = "rust"  # where the source distribution keeps the crate
CRATE_NAME = 'name = "qemu-machine"'


def crate_dir() -> Path:
    """The crate's directory: rust/ in a source distribution, else the
    repository root around bindings/python."""
    candidates = [HERE / SDIST_CRATE, HERE.parent.parent]
    for candidate in candidates:
        manifest = candidate / "Cargo.toml"
        if manifest.is_file() and CRATE_NAME in manifest.read_text():
            return candidate
    raise SystemExit(
        "cannot find the qemu-machine crate (its Cargo.toml) in "
        + " or ".join(str(c) for c in candidates)
        + ": build from the repository's bindings/python or from the "
        "source distribution"
    )


def package_crate(crate: Path, dest: Path) -> None:
    """Unpacks into ``dest`` the crate as ``cargo package`` makes it for
    crates.io: the files of its ``include`` list, with the manifest
    normalized (targets whose files are left out, such as the tests, are
    dropped from it)."""
    with tempfile.TemporaryDirectory() as work:
        command = [
            os.environ.get("CARGO", "cargo"),
            "package",
            "--no-verify",
            "--allow-dirty",
            "--quiet",
            "--manifest-path",
            str(crate / "Cargo.toml"),
            "--target-dir",
            work,
        ]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True)
        except OSError as exc:
            raise SystemExit(f"the source distribution needs cargo: {exc}")
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"{' '.join(command)} failed:\n{exc.stderr}")
        packages = list((Path(work) / "package").glob("*.crate"))
        if len(packages) != 1:
            raise SystemExit(f"cargo package made {packages}, not one .crate")
        with tarfile.open(packages[0]) as archive:
            members = archive.getmembers()
            top = members[0].name.split("/")[0]
            for member in members:
                if not (member.isfile() and member.name.startswith(top + "/")):
                    raise SystemExit(f"unexpected {member.name} in {packages[0]}")
                name = member.name[len(top) + 1 :]
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                # Written now, not with the fixed date cargo gives every
                # file: a build from a newer distribution reusing a target
                # directory sees that the sources changed.
                with archive.extractfile(member) as source:
                    target.write_bytes(source.read())
                target.chmod(0o644)


def cargo_env(crate: Path) -> dict:
    """The environment cargo runs in."""
    env = dict(os.environ)
    if not env.get("CARGO_TARGET_DIR"):
        env["CARGO_TARGET_DIR"] = str(crate / "target" / "python")
    # The wheel's library has no debug info (it would be stripped): not
    # generating it makes the build faster.
    env.setdefault("CARGO_PROFILE_RELEASE_DEBUG", "false")
    return env


class sdist_with_crate(sdist):
    """Also puts the crate into rust/ of the distribution."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        package_crate(crate_dir(), Path(base_dir) / SDIST_CRATE)


class build_py_afresh(build_py):
    """Empties the package's build directory first: pip builds in build/,
    kept between builds, and a module since deleted from the sources would
    otherwise stay in the next wheels."""

    def run(self):
        if not getattr(self, "editable_mode", False):
            for package in self.packages or ():
                built = Path(self.build_lib, *package.split("."))
                if built.resolve() != (HERE / package).resolve():
                    shutil.rmtree(built, ignore_errors=True)
        super().run()


class build_rust_as_library(build_rust):
    """Installs the library as qemu_machine/libqemu_machine.so rather
    than under a Python extension module's name."""

    def get_dylib_ext_path(self, ext, target_fname):
        path = super().get_dylib_ext_path(ext, target_fname)
        return os.path.join(os.path.dirname(path), LIB_FILE)


class bdist_wheel_any_python(bdist_wheel):
    """Platform-specific but independent of the Python version and ABI."""

    def get_tag(self):
        _, _, platform = super().get_tag()
        return "py3", "none", platform


CRATE = crate_dir()

setup(
    rust_extensions=[
        RustExtension(
            "qemu_machine.libqemu_machine",
            path=str(CRATE / "Cargo.toml"),
            binding=Binding.NoBinding,
            cargo_manifest_args=["--locked"],
            strip=Strip.Debug,
            debug=False,
            env=cargo_env(CRATE),
        )
    ],
    cmdclass={
        "sdist": sdist_with_crate,
        "build_py": build_py_afresh,
        "build_rust": build_rust_as_library,
        "bdist_wheel": bdist_wheel_any_python,
    },
)
