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

from ._native import QmBytes, lib
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


def _filters_json(filters: Iterable[EventFilter], caller: str) -> bytes:
    """A list of ``(name, match)`` event filters as the C JSON array; an
    empty list raises :class:`InvalidArgument` (``caller`` names the
    method in the message)."""
    if isinstance(filters, (str, bytes)) or not isinstance(
        filters, collections.abc.Iterable
    ):
        raise TypeError(
            "filters must be a list of (name, match) pairs, not "
            + type(filters).__name__
        )
    pairs = []
    for pair in filters:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(
                f"each filter must be a (name, match) pair, not {pair!r}"
            )
        name, match = pair
        if name is not None and not isinstance(name, str):
            raise TypeError(
                f"a filter's name must be a str or None, not {name!r}"
            )
        if match is not None and not isinstance(
            match, collections.abc.Mapping
        ):
            raise TypeError(
                f"a filter's match must be a dict or None, not {match!r}"
            )
        pairs.append([name, None if match is None else dict(match)])
    if not pairs:
        raise InvalidArgument(f"{caller} needs at least one filter")
    return json.dumps(pairs).encode("utf-8")


def _data(data: Union[bytes, bytearray, memoryview, str], what: str) -> bytes:
    """Bytes to send: any bytes-like object, or a ``str`` as UTF-8."""
    if isinstance(data, str):
        try:
            return data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidArgument(
                f"{what} is not valid Unicode: {exc}"
            ) from None
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} must be bytes or str, not {type(data).__name__}")


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


def _take_bytes(out: QmBytes) -> bytes:
    """The bytes of a ``qm_bytes`` the library filled in, then freed."""
    try:
        if not out.data:
            return b""
        return ctypes.string_at(out.data, out.len)
    finally:
        lib.qm_bytes_free(byref(out))


def _call_bytes(func: Callable[..., int], *args: Any) -> bytes:
    """Call a C function whose last output is a ``struct qm_bytes``."""
    out = QmBytes()
    _call(func, *args, byref(out))
    return _take_bytes(out)


def _call_int(func: Callable[..., int], ctype: Any, *args: Any) -> int:
    """Call a C function whose last output is an integer of ``ctype``."""
    out = ctype()
    _call(func, *args, byref(out))
    value: int = out.value
    return value


def _new_machine(func: Callable[..., int], *args: Any) -> int:
    out = c_void_p()
    _call(func, *args, byref(out))
    assert out.value is not None
    return out.value

