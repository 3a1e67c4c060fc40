"""The binding declares every function of include/qemu_machine.h, with
the C types of its result and of each parameter."""

import ctypes
import re
from ctypes import POINTER

from support import REPO

import qemu_machine
from qemu_machine._native import _PROTOTYPES, QmBytes, lib

HEADER = REPO / "include" / "qemu_machine.h"
PROTOTYPE = re.compile(
    r"^(enum qm_status|void|bool|int|const char \*|const uint8_t \*)\s*"
    r"(qm_\w+)\((.*?)\);",
    re.MULTILINE | re.DOTALL,
)
# C type -> ctypes type; owned and opaque pointers, and byte buffers, are
# c_void_p.
C_TYPES = {
    "enum qm_status": ctypes.c_int,
    "void": None,
    "bool": ctypes.c_bool,
    "int": ctypes.c_int,
    "unsigned int": ctypes.c_uint,
    "int64_t": ctypes.c_int64,
    "uint8_t": ctypes.c_uint8,
    "uint16_t": ctypes.c_uint16,
    "uint32_t": ctypes.c_uint32,
    "uint64_t": ctypes.c_uint64,
    "size_t": ctypes.c_size_t,
    "const char *": ctypes.c_char_p,
    "const char *const *": POINTER(ctypes.c_char_p),
    "uint8_t *": ctypes.c_void_p,
    "const uint8_t *": ctypes.c_void_p,
    "char *": ctypes.c_void_p,  # only qm_string_free's argument
    "struct qm_machine *": ctypes.c_void_p,
    "const struct qm_machine *": ctypes.c_void_p,
    "struct qm_error *": ctypes.c_void_p,
    "const struct qm_error *": ctypes.c_void_p,
    "struct qm_listener *": ctypes.c_void_p,
    "const struct qm_listener *": ctypes.c_void_p,
    "struct qm_exec_result *": ctypes.c_void_p,
    "const struct qm_exec_result *": ctypes.c_void_p,
    "struct qm_bytes *": POINTER(QmBytes),
    "struct qm_machine **": POINTER(ctypes.c_void_p),
    "struct qm_error **": POINTER(ctypes.c_void_p),
    "struct qm_listener **": POINTER(ctypes.c_void_p),
    "struct qm_exec_result **": POINTER(ctypes.c_void_p),
    "char **": POINTER(ctypes.c_void_p),
    "int *": POINTER(ctypes.c_int),
    "bool *": POINTER(ctypes.c_bool),
    "size_t *": POINTER(ctypes.c_size_t),
    "int64_t *": POINTER(ctypes.c_int64),
    "uint16_t *": POINTER(ctypes.c_uint16),
    "uint32_t *": POINTER(ctypes.c_uint32),
    "uint64_t *": POINTER(ctypes.c_uint64),
}


def parameter_type(parameter):
    """The type of a parameter declaration such as ``const char *name``."""
    match = re.fullmatch(r"(.*?[\s*])(\w+)", " ".join(parameter.split()))
    return match.group(1).strip()


def header_functions():
    functions = {}
    for result, name, parameters in PROTOTYPE.findall(HEADER.read_text()):
        parameters = " ".join(parameters.split())
        types = (
            []
            if parameters == "void"
            else [parameter_type(p) for p in parameters.split(",")]
        )
        functions[name] = (result, types)
    return functions


def test_every_function_is_declared_with_its_types():
    functions = header_functions()
    assert len(functions) >= 96
    assert sorted(_PROTOTYPES) == sorted(functions)
    # In the header's order, so that the two are easy to compare.
    assert list(_PROTOTYPES) == list(functions)
    for name, (result, parameters) in functions.items():
        restype, argtypes = _PROTOTYPES[name]
        assert restype is C_TYPES[result], name
        assert argtypes == [C_TYPES[p] for p in parameters], name
        function = getattr(lib, name)
        assert function.restype is restype, name
        assert function.argtypes == argtypes, name


def test_version_is_the_headers():
    define = re.search(r'#define QM_VERSION_STRING "(.*)"', HEADER.read_text())
    assert qemu_machine.__version__ == define.group(1)
