"""Stable hashing of job arguments, compatible with the real Sisyphus.

Serialisation ``ser(obj)`` is ``b"(" + b", ".join([type_name, *parts]) + b")"``:

* ``None`` → ``(NoneType)``; bool/int/float/complex/str/bytes → ``(type, repr)``;
* list/tuple → their items in order; set/frozenset → items sorted by serialisation;
* dict → its ``(key, value)`` tuples sorted by serialisation;
* bytes → the raw bytes; functions and classes → ``ser((module, qualname))``;
* objects with ``_sis_hash()`` (jobs, paths) return that; any other object serialises its
  state: new-args from ``__getnewargs(_ex)__`` and ``__sis_state__`` / a custom
  ``__getstate__`` / its instance attributes (enum members without ``_sort_order_``).

A serialisation longer than 4096 bytes is replaced by its sha256 digest.
``short_hash`` writes the sha256 of the serialisation as 12 base-62 digits,
least significant first.
"""

from __future__ import annotations

import enum
import hashlib
import inspect
import pathlib
import types
from typing import Any

HASH_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_MAX_SERIALISED_LEN = 4096


_SCALARS = (int, float, bool, str, complex)
_SEQUENCES = (list, tuple)
_SETS = (set, frozenset)


def _type_name(obj: Any) -> bytes:
    # Enum classes report EnumType since Python 3.11; the hash keeps the older name.
    return b"EnumMeta" if type(obj) is enum.EnumMeta else type(obj).__qualname__.encode()


def _instance_members(obj: Any) -> dict[str, Any]:
    """Instance attributes: ``__dict__``, ``__slots__`` and, for native types, public attributes
    that are neither class attributes nor descriptors (member descriptors count as attributes)."""
    if isinstance(obj, (types.MethodWrapperType, types.BuiltinMethodType)):
        return {"__self__": obj.__self__, "__name__": obj.__name__}
    members: dict[str, Any] = dict(getattr(obj, "__dict__", {}))
    for key in getattr(obj, "__slots__", ()):
        if hasattr(obj, key):
            members[key] = getattr(obj, key)
    class_attrs: dict[str, Any] = {}
    for cls in reversed(type(obj).__mro__):
        class_attrs.update(getattr(cls, "__dict__", {}))
    for key in dir(obj):
        if key in members or (key.startswith("__") and key not in ("__self__", "__func__")):
            continue
        cls_value = class_attrs.get(key, _MISSING)
        if hasattr(cls_value, "__get__") and not inspect.ismemberdescriptor(cls_value):
            continue  # properties, methods
        try:
            value = getattr(obj, key)
        except AttributeError:
            continue
        if cls_value is not value:
            members[key] = value
    return members


_MISSING = object()


def get_object_state(obj: Any) -> Any:
    """What is hashed of an object that is not a basic type: (new-args, state) or the state."""
    if isinstance(obj, _SCALARS + _SEQUENCES + _SETS + (dict,)) and not (
        hasattr(obj, "__getnewargs_ex__") or hasattr(obj, "__getnewargs__")
    ):
        raise TypeError(f"Cannot hash {obj!r}: subclass {type(obj).__qualname__} of a basic type")
    if isinstance(obj, (types.MethodDescriptorType, types.WrapperDescriptorType)):
        return obj.__qualname__
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    if isinstance(obj, pathlib.PurePath):
        return str(obj)

    if hasattr(obj, "__getnewargs_ex__"):
        args = obj.__getnewargs_ex__()
    elif hasattr(obj, "__getnewargs__"):
        args = obj.__getnewargs__()
    else:
        args = None

    if hasattr(obj, "__sis_state__"):
        state = obj.__sis_state__()
    elif type(obj).__getstate__ is not object.__getstate__:
        state = obj.__getstate__()
    else:
        state = _instance_members(obj)
        if not state and not hasattr(obj, "__dict__") and not hasattr(obj, "__slots__"):
            if args is None:
                raise TypeError(f"Cannot hash object of type {type(obj).__qualname__}: it has no state")
            state = None
    if isinstance(obj, enum.Enum):
        state = {k: v for k, v in state.items() if k != "_sort_order_"}  # added in Python 3.11
    return state if args is None else (args, state)


def sis_hash_helper(obj: Any) -> bytes:
    """Serialise ``obj`` to the byte string whose sha256 is its Sisyphus hash."""
    parts: list[bytes] = [_type_name(obj)]
    if isinstance(obj, bytes):
        parts.append(obj)
    elif obj is None:
        pass
    elif type(obj) in _SCALARS:  # exact types: subclasses (numpy scalars, namedtuples) use their state
        parts.append(repr(obj).encode())
    elif type(obj) in _SEQUENCES:
        parts.extend(sis_hash_helper(x) for x in obj)
    elif type(obj) in _SETS:
        parts.extend(sorted(sis_hash_helper(x) for x in obj))
    elif isinstance(obj, dict):
        parts.extend(sorted(sis_hash_helper(item) for item in obj.items()))
    elif inspect.isfunction(obj) or inspect.isclass(obj):
        if obj.__name__ == "<lambda>":
            raise ValueError(f"Lambdas cannot be hashed stably (module {obj.__module__}); use a def")
        if obj.__module__ == "__main__":
            raise ValueError(f"{obj.__qualname__} is defined in __main__ and has no stable hash")
        parts.append(sis_hash_helper((obj.__module__, obj.__qualname__)))
    elif hasattr(obj, "_sis_hash"):
        return obj._sis_hash()
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
