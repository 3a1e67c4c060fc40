"""Loading libqemu_machine and declaring the C prototypes (private).

Every function of ``qemu_machine.h`` is declared here with its exact
argument and result types. Opaque handles (``qm_machine *``,
``qm_error *``) and owned strings (``char **`` outputs) are ``c_void_p``
so that the binding keeps the raw pointer and frees it itself; only the
borrowed, static or error-owned strings are ``c_char_p``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import (
    POINTER,
    c_bool,
    c_char_p,
    c_int,
    c_int64,
    c_size_t,
    c_uint,
    c_uint8,
    c_uint16,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

__all__ = ["LibraryNotFoundError", "lib", "library_path"]

_LIB_ENV = "QEMU_MACHINE_LIB"
_PREFIX_ENV = "QEMU_MACHINE_PREFIX"
_SONAME = "libqemu_machine.so.0"
# The file name cargo gives the library; also the one bundled in the package.
_BUNDLED = "libqemu_machine.so"


class LibraryNotFoundError(ImportError):
    """libqemu_machine cannot be loaded; the message lists what was tried."""


_status = c_int  # enum qm_status
_machine = c_void_p  # qm_machine *
_error = c_void_p  # qm_error *
_listener = c_void_p  # qm_listener *
_exec_result = c_void_p  # qm_exec_result *
_err_out = POINTER(c_void_p)  # qm_error **
_str_out = POINTER(c_void_p)  # char ** (owned: free with qm_string_free)
_machine_out = POINTER(c_void_p)  # qm_machine **
_listener_out = POINTER(c_void_p)  # qm_listener **
_exec_result_out = POINTER(c_void_p)  # qm_exec_result **
_byte_ptr = c_void_p  # uint8_t * and const uint8_t * (bytes or buffers)
_argv = POINTER(c_char_p)  # const char *const * (NULL-terminated)


class QmBytes(ctypes.Structure):
    """``struct qm_bytes``: ``len`` bytes at ``data`` (owned by the caller
    once filled in: release with ``qm_bytes_free``)."""

    _fields_ = [("data", c_void_p), ("len", c_size_t)]


_bytes_out = POINTER(QmBytes)  # struct qm_bytes *

# name: (restype, argtypes), in the order of qemu_machine.h.
_PROTOTYPES = {
    "qm_set_agent": (_status, [_machine, c_char_p, _err_out]),
    "qm_agent_wait_ready": (_status, [_machine, c_int64, _err_out]),
    "qm_agent_cmd": (
        _status,
        [_machine, c_char_p, c_char_p, c_int64, _str_out, _err_out],
    ),
    "qm_agent_exec": (
        _status,
        [
            _machine,
            _argv,
            _byte_ptr,
            c_size_t,
            c_int64,
            _exec_result_out,
            _err_out,
        ],
    ),
    "qm_exec_result_exit_code": (c_int, [_exec_result]),
    "qm_exec_result_stdout": (
        _byte_ptr,
        [_exec_result, POINTER(c_size_t)],
    ),
    "qm_exec_result_stderr": (
        _byte_ptr,
        [_exec_result, POINTER(c_size_t)],
    ),
    "qm_exec_result_truncated": (c_bool, [_exec_result]),
    "qm_exec_result_free": (None, [_exec_result]),
    "qm_agent_file_read": (
        _status,
        [_machine, c_char_p, c_int64, _bytes_out, _err_out],
    ),
    "qm_agent_file_write": (
        _status,
        [_machine, c_char_p, _byte_ptr, c_size_t, c_int64, _err_out],
    ),
    "qm_bytes_free": (None, [_bytes_out]),
    "qm_set_console": (_status, [_machine, c_char_p, c_uint, _err_out]),
    "qm_set_console_log": (_status, [_machine, c_char_p, _err_out]),
    "qm_console_wait": (
        _status,
        [_machine, c_char_p, c_char_p, c_int64, _str_out, _err_out],
    ),
    "qm_console_write": (_status, [_machine, c_char_p, c_size_t, _err_out]),
    "qm_console_exec": (
        _status,
        [_machine, c_char_p, c_char_p, c_char_p, c_int64, _str_out, _err_out],
    ),
    "qm_console_read": (_status, [_machine, _str_out, _err_out]),
    "qm_console_read_bytes": (_status, [_machine, _bytes_out, _err_out]),
    "qm_console_dropped": (_status, [_machine, POINTER(c_uint64), _err_out]),
    "qm_error_status": (_status, [_error]),
    "qm_error_message": (c_char_p, [_error]),
    "qm_error_qmp_class": (c_char_p, [_error]),
    "qm_error_qmp_desc": (c_char_p, [_error]),
    "qm_error_free": (None, [_error]),
    "qm_string_free": (None, [c_void_p]),
    "qm_save_artifacts": (_status, [_machine, c_char_p, _err_out]),
    "qm_probe": (
        _status,
        [c_char_p, c_char_p, c_char_p, c_int64, POINTER(c_bool), _err_out],
    ),
    "qm_migrate": (_status, [_machine, _machine, c_int64, _err_out]),
    "qm_listener_new": (
        _status,
        [_machine, c_char_p, _listener_out, _err_out],
    ),
    "qm_listener_wait": (
        _status,
        [_listener, c_int64, _str_out, _err_out],
    ),
    "qm_listener_take": (_status, [_listener, _str_out, _err_out]),
    "qm_listener_fd": (c_int, [_listener]),
    "qm_listener_dropped": (
        _status,
        [_listener, POINTER(c_uint64), _err_out],
    ),
    "qm_listener_free": (None, [_listener]),
    "qm_machine_new": (_status, [c_char_p, _machine_out, _err_out]),
    "qm_machine_free": (None, [_machine]),
    "qm_add_arg": (_status, [_machine, c_char_p, _err_out]),
    "qm_add_wrapper_arg": (_status, [_machine, c_char_p, _err_out]),
    "qm_set_name": (_status, [_machine, c_char_p, _err_out]),
    "qm_set_env": (_status, [_machine, c_char_p, c_char_p, _err_out]),
    "qm_set_base_temp_dir": (_status, [_machine, c_char_p, _err_out]),
    "qm_set_log_dir": (_status, [_machine, c_char_p, _err_out]),
    "qm_set_machine_type": (_status, [_machine, c_char_p, _err_out]),
    "qm_set_qmp_enabled": (_status, [_machine, c_bool, _err_out]),
    "qm_set_launch_timeout": (_status, [_machine, c_int64, _err_out]),
    "qm_add_monitor_null": (_status, [_machine, _err_out]),
    "qm_launch": (_status, [_machine, _err_out]),
    "qm_shutdown": (_status, [_machine, c_int64, _err_out]),
    "qm_kill": (_status, [_machine, _err_out]),
    "qm_wait": (_status, [_machine, c_int64, _err_out]),
    "qm_is_running": (c_bool, [_machine]),
    "qm_pid": (c_int, [_machine]),
    "qm_exit_code": (_status, [_machine, POINTER(c_int), _err_out]),
    "qm_log": (_status, [_machine, _str_out, _err_out]),
    "qm_temp_dir": (_status, [_machine, _str_out, _err_out]),
    "qm_command_line": (_status, [_machine, _str_out, _err_out]),
    "qm_add_fd": (
        _status,
        [_machine, c_int, c_int, c_char_p, c_char_p, _err_out],
    ),
    "qm_set_monitor_unix": (_status, [_machine, c_char_p, _err_out]),
    "qm_set_monitor_tcp": (_status, [_machine, c_char_p, c_uint16, _err_out]),
    "qm_monitor_port": (_status, [_machine, POINTER(c_uint16), _err_out]),
    "qm_set_qmp_trace": (_status, [_machine, c_char_p, _err_out]),
    "qm_attach_unix": (_status, [c_char_p, c_int64, _machine_out, _err_out]),
    "qm_attach_tcp": (
        _status,
        [c_char_p, c_uint16, c_int64, _machine_out, _err_out],
    ),
    "qm_qmp_cmd": (
        _status,
        [_machine, c_char_p, c_char_p, c_int64, _str_out, _err_out],
    ),
    "qm_command": (
        _status,
        [_machine, c_char_p, c_char_p, c_int64, _str_out, _err_out],
    ),
    "qm_event_wait": (
        _status,
        [_machine, c_char_p, c_char_p, c_int64, _str_out, _err_out],
    ),
    "qm_events_wait": (
        _status,
        [_machine, c_char_p, c_int64, _str_out, _err_out],
    ),
    "qm_event_get": (_status, [_machine, c_int64, _str_out, _err_out]),
    "qm_events_take": (_status, [_machine, _str_out, _err_out]),
    "qm_events_dropped": (_status, [_machine, POINTER(c_uint64), _err_out]),
    "qm_send_fd": (_status, [_machine, c_int, c_char_p, _err_out]),
    "qm_event_match": (
        _status,
        [c_char_p, c_char_p, POINTER(c_bool), _err_out],
    ),
    "qm_command_send": (
        _status,
        [_machine, c_char_p, c_char_p, POINTER(c_uint64), _err_out],
    ),
    "qm_command_receive": (
        _status,
        [_machine, c_uint64, c_int64, _str_out, _err_out],
    ),
    "qm_machine_fd": (c_int, [_machine]),
    "qm_dispatch": (_status, [_machine, _err_out]),
    "qm_qmp_greeting": (_status, [_machine, _str_out, _err_out]),
    "qm_set_qtest": (_status, [_machine, _err_out]),
    "qm_set_qtest_timeout": (_status, [_machine, c_int64, _err_out]),
    "qm_qtest_raw": (_status, [_machine, c_char_p, _str_out, _err_out]),
    "qm_qtest_read": (
        _status,
        [_machine, c_uint64, c_uint, POINTER(c_uint64), _err_out],
    ),
    "qm_qtest_write": (
        _status,
        [_machine, c_uint64, c_uint, c_uint64, _err_out],
    ),
    "qm_qtest_in": (
        _status,
        [_machine, c_uint16, c_uint, POINTER(c_uint32), _err_out],
    ),
    "qm_qtest_out": (
        _status,
        [_machine, c_uint16, c_uint, c_uint32, _err_out],
    ),
    "qm_qtest_memread": (
        _status,
        [_machine, c_uint64, _byte_ptr, c_size_t, _err_out],
    ),
    "qm_qtest_memwrite": (
        _status,
        [_machine, c_uint64, _byte_ptr, c_size_t, _err_out],
    ),
    "qm_qtest_memset": (
        _status,
        [_machine, c_uint64, c_uint8, c_size_t, _err_out],
    ),
    "qm_qtest_clock_step": (
        _status,
        [_machine, c_int64, POINTER(c_int64), _err_out],
    ),
    "qm_qtest_clock_set": (
        _status,
        [_machine, c_int64, POINTER(c_int64), _err_out],
    ),
    "qm_qtest_irq_intercept_in": (_status, [_machine, c_char_p, _err_out]),
    "qm_qtest_irq_intercept_out": (_status, [_machine, c_char_p, _err_out]),
    "qm_qtest_get_irq": (
        _status,
        [_machine, c_int, POINTER(c_bool), _err_out],
    ),
    "qm_qtest_set_irq_in": (
        _status,
        [_machine, c_char_p, c_char_p, c_int, c_int, _err_out],
    ),
    "qm_status_str": (c_char_p, [c_int]),
    "qm_version": (c_char_p, []),
}


def _candidates() -> Iterator[Tuple[str, Optional[str]]]:
    """The libraries to try, best first (see the package documentation), as
    ``(path, None)``; what was looked for and not found comes in its place
    as ``(what, why)``."""
    explicit = os.environ.get(_LIB_ENV)
    if explicit:
        # An explicit choice is never silently replaced by another library.
        yield explicit, None
        return
    prefix = os.environ.get(_PREFIX_ENV)
    if prefix:
        yield str(Path(prefix) / "lib" / _SONAME), None
    package = Path(__file__).resolve().parent
    # Put there when pip built the package (setup.py).
    bundled = package / _BUNDLED
    if bundled.is_file():
        yield str(bundled), None
    else:
        yield str(bundled), "not bundled (the package was not built by pip)"
    # In a source checkout: REPO/bindings/python/qemu_machine/_native.py.
    if len(package.parents) > 2:
        for profile in ("release", "debug"):
            yield str(package.parents[2] / "target" / profile / _BUNDLED), None
    installed = ctypes.util.find_library("qemu_machine")
    if installed:
        yield installed, None
    else:
        yield 'ctypes.util.find_library("qemu_machine")', "not found"


def _declare(dll: ctypes.CDLL) -> None:
    for name, (restype, argtypes) in _PROTOTYPES.items():
        func = getattr(dll, name)
        func.restype = restype
        func.argtypes = argtypes


def _load() -> Tuple[ctypes.CDLL, str]:
    tried: List[str] = []
    for candidate, missing in _candidates():
        if missing is not None:
            tried.append(f"  {candidate}: {missing}")
            continue
        try:
            dll = ctypes.CDLL(candidate)
            _declare(dll)
        except (OSError, AttributeError) as exc:
            tried.append(f"  {candidate}: {exc}")
            continue
        return dll, candidate
    raise LibraryNotFoundError(
        "cannot load libqemu_machine; tried:\n"
        + "\n".join(tried)
        + "\nInstall the package with pip (it builds and bundles the "
        "library: pip install ./bindings/python in the repository), or set "
        f"{_LIB_ENV} to the library's full path, or {_PREFIX_ENV} to its "
        "install prefix, or build it with 'cargo build --release' in the "
        "repository."
    )


lib, library_path = _load()
