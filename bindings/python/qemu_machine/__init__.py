"""Drive QEMU virtual machines from Python test programs.

A pure-Python binding (ctypes) of libqemu_machine, the C library of the
qemu-machine project::

    from qemu_machine import Machine

    with Machine(args=["-accel", "tcg"], machine_type="none") as vm:
        vm.launch()
        print(vm.command("query-status"))

The library is loaded at import, from the first of these that loads:

1. ``$QEMU_MACHINE_LIB``, the library's full path (when set, nothing else
   is tried);
2. ``$QEMU_MACHINE_PREFIX/lib/libqemu_machine.so.0``, if that variable is
   set;
3. the library bundled in the package (``pip install`` builds it);
4. in a source checkout, the repository's ``target/release`` then
   ``target/debug`` build of ``libqemu_machine.so``;
5. ``ctypes.util.find_library("qemu_machine")``.

If none loads, the import raises :class:`LibraryNotFoundError` (an
``ImportError``) listing what was tried.
"""

from ._native import LibraryNotFoundError, lib, library_path
from .agent import Agent, ExecResult
from .errors import (
    AbnormalShutdown,
    AddDeviceError,
    CommandError,
    ConsoleFailure,
    Disconnected,
    InternalError,
    InvalidArgument,
    IoError,
    LaunchError,
    ProtocolError,
    QemuMachineError,
    StateError,
    Status,
    Timeout,
)
from .listener import Listener
from .machine import Machine, event_match, migrate, probe
from .qtest import QTest

#: The loaded library's version (``qm_version()``), "MAJOR.MINOR.PATCH".
__version__: str = lib.qm_version().decode("ascii")

__all__ = [
    "AbnormalShutdown",
    "Agent",
    "AddDeviceError",
    "CommandError",
    "ConsoleFailure",
    "Disconnected",
    "ExecResult",
    "InternalError",
    "InvalidArgument",
    "IoError",
    "LaunchError",
    "LibraryNotFoundError",
    "Listener",
    "Machine",
    "ProtocolError",
    "QTest",
    "QemuMachineError",
    "StateError",
    "Status",
    "Timeout",
    "__version__",
    "event_match",
    "library_path",
    "migrate",
    "probe",
]
