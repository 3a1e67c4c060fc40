"""Conversions of Python values for the C calls, and the calling helpers
(private, shared by the modules of the package)."""

from __future__ import annotations

import collections.abc
import ctypes
import json
import math
import numbers
import os
from ctypes import byref, c_void_p
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Protocol,
    Tuple,
    Union,
)

from ._native import lib
from .errors import InvalidArgument, Status, take_error

_INT_MAX = 2**31 - 1
#: ``timeout_ms`` for "wait forever".
_FOREVER_MS = -1
#: QM_TIMEOUT_MAX_MS: the largest finite timeout the library accepts.
_MAX_TIMEOUT_MS = _INT_MAX


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


Seconds = Optional[float]
StrPath = Union[str, "os.PathLike[str]"]
FileDescriptor = Union[int, _HasFileno]
JsonObject = Dict[str, Any]
JsonArgs = Mapping[str, Any]
EventFilter = Tuple[Optional[str], Optional[JsonArgs]]


# -- conversions, done before any C call ------------------------------------


def _timeout_ms(timeout: Seconds) -> int:
    """Seconds (``None`` or ``math.inf``: forever) to the C ``timeout_ms``.

    A positive timeout below a millisecond is rounded up, so that it never
    becomes a poll (0).
    """
    if timeout is None:
        return _FOREVER_MS
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(
            "timeout must be a number of seconds or None, not "
            + type(timeout).__name__
        )
    if math.isnan(timeout) or timeout < 0:
        raise InvalidArgument(
            f"timeout must be at least 0 seconds (None waits forever), "
            f"got {timeout!r}"
        )
    if math.isinf(timeout):
        return _FOREVER_MS
    milliseconds = math.ceil(round(float(timeout) * 1000, 6))
    if milliseconds > _MAX_TIMEOUT_MS:
        raise InvalidArgument(
            f"timeout must be at most {_MAX_TIMEOUT_MS / 1000} seconds "
            f"(None waits forever), got {timeout!r}"
        )
    return milliseconds


def _text(value: str, what: str) -> bytes:
    """A ``str`` as NUL-terminated UTF-8 for a ``const char *``."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if "\0" in value:
        # ctypes would silently cut the string at the NUL.
        raise InvalidArgument(f"{what} must not contain a NUL character")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgument(f"{what} is not valid Unicode: {exc}") from None


def _optional_text(value: Optional[str], what: str) -> Optional[bytes]:
    return None if value is None else _text(value, what)


def _path(value: StrPath, what: str) -> bytes:
    """A ``str`` or ``os.PathLike`` path for a ``const char *``."""
    path = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(path, str):
        raise TypeError(
            f"{what} must be a str or a str path, not {type(path).__name__}"
        )
    return _text(path, what)


def _integer(value: int, low: int, high: int, what: str) -> int:
    """An int within [low, high] (ctypes would silently truncate it)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidArgument(
            f"{what} must be between {low} and {high}, got {value}"
        )
    return int(value)


def _fd(fd: FileDescriptor, what: str) -> int:
    if not isinstance(fd, int):
        fd = fd.fileno()
    return _integer(fd, 0, _INT_MAX, what)


def _json_object(value: Optional[JsonArgs], what: str) -> Optional[bytes]:
    if value is None:
        return None
    if not isinstance(value, collections.abc.Mapping):
        raise TypeError(
            f"{what} must be a dict or None, not {type(value).__name__}"
        )
    return json.dumps(dict(value)).encode("utf-8")


def _arguments(
    args: Optional[JsonArgs], kwargs: JsonObject
) -> Optional[bytes]:
    """A command's arguments: ``args`` merged with keyword arguments."""
    if not kwargs:
        return _json_object(args, "args")
    if args is None:
        return _json_object(kwargs, "args")
    if not isinstance(args, collections.abc.Mapping):
        raise TypeError(
            f"args must be a dict or None, not {type(args).__name__}"
        )
    twice = sorted(set(args) & set(kwargs))
    if twice:
        raise TypeError(f"arguments given twice: {', '.join(twice)}")
    return _json_object({**args, **kwargs}, "args")


def _strings(values: Iterable[str], what: str) -> List[str]:
    if isinstance(values, (str, bytes)):
        raise TypeError(
            f"{what} must be a sequence of str, not a single string"
        )
    return list(values)


# -- calling the library ----------------------------------------------------


def _call(func: Callable[..., int], *args: Any) -> None:
    """Call a fallible C function; raise its error (freed) on failure."""
    err = c_void_p()
    status = func(*args, byref(err))
    if status != Status.OK:
        raise take_error(status, err.value)


def _take_string(pointer: Optional[int]) -> str:
    """Decode a string the library returned, and free it."""
    try:
        if not pointer:
            return ""
        return ctypes.string_at(pointer).decode("utf-8", "replace")
    finally:
        lib.qm_string_free(pointer)


def _call_string(func: Callable[..., int], *args: Any) -> str:
    """Call a C function whose last output is an owned ``char *``."""
    out = c_void_p()
    _call(func, *args, byref(out))
    return _take_string(out.value)


def _call_json(func: Callable[..., int], *args: Any) -> Any:
    return json.loads(_call_string(func, *args))


def _new_machine(func: Callable[..., int], *args: Any) -> int:
    out = c_void_p()
    _call(func, *args, byref(out))
    assert out.value is not None
    return out.value

