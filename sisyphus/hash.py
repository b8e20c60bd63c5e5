"""Stable hashing of job arguments, compatible with the real Sisyphus.

Serialisation ``ser(obj)`` is ``b"(" + b", ".join([type_name, *parts]) + b")"``:

* ``None`` → ``(NoneType)``; bool/int/float/complex/str/bytes → ``(type, repr)``;
* list/tuple → their items in order; set/frozenset → items sorted by serialisation;
* dict → its ``(key, value)`` tuples sorted by serialisation;
* enum members → their qualified name; functions and classes → ``module.qualname``;
* objects with ``_sis_hash()`` return that; any other object serialises its state
  (``__getstate__``/``__dict__``/``__slots__``).

A serialisation longer than 4096 bytes is replaced by its sha256 digest.
``short_hash`` writes the sha256 of the serialisation as 12 base-62 digits,
least significant first.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import inspect
import pathlib
from typing import Any

HASH_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_MAX_SERIALISED_LEN = 4096


def get_object_state(obj: Any) -> Any:
    """The part of a plain object that is hashed: (new-args, state) or only the state."""
    if hasattr(obj, "__getnewargs_ex__"):
        args = obj.__getnewargs_ex__()
    elif hasattr(obj, "__getnewargs__"):
        args = obj.__getnewargs__()
    else:
        args = None

    if hasattr(obj, "__sis_state__"):
        state = obj.__sis_state__()
    elif hasattr(obj, "__dict__"):
        state = obj.__dict__
    elif hasattr(obj, "__slots__"):
        state = {k: getattr(obj, k) for k in obj.__slots__ if hasattr(obj, k)}
    else:
        if args is None:
            raise TypeError(f"Cannot hash object of type {type(obj).__qualname__}: it has no state")
        state = None
    return state if args is None else (args, state)


def sis_hash_helper(obj: Any) -> bytes:
    """Serialise ``obj`` to the byte string whose sha256 is its Sisyphus hash."""
    if hasattr(obj, "_sis_hash") and not isinstance(obj, type):
        return obj._sis_hash()

    parts: list[bytes] = [type(obj).__qualname__.encode()]
    if obj is None:
        pass
    elif isinstance(obj, (bool, int, float, complex, str, bytes)):
        parts.append(repr(obj).encode())
    elif isinstance(obj, (list, tuple)):
        parts.extend(sis_hash_helper(x) for x in obj)
    elif isinstance(obj, (set, frozenset)):
        parts.extend(sorted(sis_hash_helper(x) for x in obj))
    elif isinstance(obj, dict):
        parts.extend(sorted(sis_hash_helper(item) for item in obj.items()))
    elif isinstance(obj, enum.Enum):
        parts.append(f"{type(obj).__module__}.{type(obj).__qualname__}.{obj.name}".encode())
    elif isinstance(obj, functools.partial):
        parts.append(sis_hash_helper((obj.func, obj.args, obj.keywords)))
    elif isinstance(obj, pathlib.PurePath):
        parts.append(repr(str(obj)).encode())
    elif inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj):
        if obj.__qualname__ == "<lambda>":
            raise ValueError(f"Lambdas cannot be hashed stably (module {obj.__module__}); use a def")
        parts.append(f"{obj.__module__}.{obj.__qualname__}".encode())
    else:
        parts.append(sis_hash_helper(get_object_state(obj)))

    serialised = b"(" + b", ".join(parts) + b")"
    if len(serialised) > _MAX_SERIALISED_LEN:
        return hashlib.sha256(serialised).digest()
    return serialised


def int_to_short_str(value: int, length: int = 12) -> str:
    """``length`` base-62 digits of ``value``, least significant first."""
    digits = []
    for _ in range(length):
        value, rem = divmod(value, len(HASH_CHARS))
        digits.append(HASH_CHARS[rem])
    return "".join(digits)


def short_hash(obj: Any, length: int = 12) -> str:
    """The 12-character Sisyphus hash of ``obj``."""
    digest = hashlib.sha256(sis_hash_helper(obj)).digest()
    return int_to_short_str(int.from_bytes(digest, byteorder="big", signed=False), length)


def md5_hash(obj: Any) -> str:
    """md5 hex digest of the serialisation (used in the design note's test vectors)."""
    return hashlib.md5(sis_hash_helper(obj)).hexdigest()
