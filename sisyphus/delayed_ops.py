"""Delayed operations: values computed when ``get()`` is called, i.e. once the jobs they depend on have
finished (``tk.Path`` and ``tk.Variable`` are delayed objects too).

Class and attribute names are those of the real Sisyphus, because a delayed object passed to a job is
hashed by its class name and attributes: ``DelayedFormat("{}.txt", var)`` gives the same job id under
both cores. Binary operators, ``[]``, ``()``, ``round``, ``format``/``rformat``/``replace``/``function``/
``fallback`` on any delayed object build new delayed objects.
"""

from __future__ import annotations

from typing import Any

from sisyphus.hash import sis_hash_helper
from sisyphus.tools import try_get


def _is_set(value: Any) -> bool:
    return not isinstance(value, DelayedBase) or value.is_set()


class DelayedBase:
    """A value that is only known later; ``a`` and ``b`` are the operands of binary operations."""

    def __init__(self, a: Any, b: Any = None) -> None:
        self.a = a
        self.b = b

    def is_set(self) -> bool:
        return _is_set(self.a) and _is_set(self.b)

    def get(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.get")

    def __str__(self) -> str:
        return str(self.get())

    def __repr__(self) -> str:
        return str(self.get())

    # arithmetic: a new delayed object per operation
    def __add__(self, other: Any) -> DelayedAdd:
        return DelayedAdd(self, other)

    def __radd__(self, other: Any) -> DelayedAdd:
        return DelayedAdd(other, self)

    def __sub__(self, other: Any) -> DelayedSub:
        return DelayedSub(self, other)

    def __rsub__(self, other: Any) -> DelayedSub:
        return DelayedSub(other, self)

    def __mul__(self, other: Any) -> DelayedMul:
        return DelayedMul(self, other)

    def __rmul__(self, other: Any) -> DelayedMul:
        return DelayedMul(other, self)

    def __truediv__(self, other: Any) -> DelayedTrueDiv:
        return DelayedTrueDiv(self, other)

    def __rtruediv__(self, other: Any) -> DelayedTrueDiv:
        return DelayedTrueDiv(other, self)

    def __floordiv__(self, other: Any) -> DelayedFloorDiv:
        return DelayedFloorDiv(self, other)

    def __rfloordiv__(self, other: Any) -> DelayedFloorDiv:
        return DelayedFloorDiv(other, self)

    def __mod__(self, other: Any) -> DelayedMod:
        return DelayedMod(self, other)

    def __pow__(self, other: Any, modulo: Any = None) -> DelayedBase:
        power = DelayedPow(self, other)
        return power if modulo is None else DelayedMod(power, modulo)

    def __rpow__(self, other: Any) -> DelayedPow:
        return DelayedPow(other, self)

    def __round__(self, n: Any = None) -> DelayedRound:
        return DelayedRound(self, n)

    def __getitem__(self, key: Any) -> DelayedGetItem:
        return DelayedGetItem(self, key)

    def __call__(self, *args: Any, **kwargs: Any) -> DelayedFunctionV2:
        return DelayedFunctionV2(self, args, kwargs)

    # string and function helpers
    def format(self, *args: Any, **kwargs: Any) -> DelayedFormat:
        """``self.get().format(*args, **kwargs)`` later."""
        return DelayedFormat(self, *args, **kwargs)

    def rformat(self, fstring: Any, *args: Any, **kwargs: Any) -> DelayedFormat:
        """``fstring.format(self, *args, **kwargs)`` later."""
        return DelayedFormat(fstring, self, *args, **kwargs)

    def replace(self, *args: Any, **kwargs: Any) -> DelayedReplace:
        return DelayedReplace(self, *args, **kwargs)

    def function(self, func: Any, *args: Any, **kwargs: Any) -> DelayedFunction:
        """``func(self.get(), *args, **kwargs)`` later (``func`` must not be a lambda: it is hashed)."""
        return DelayedFunction(self, func, *args, **kwargs)

    def fallback(self, fallback: Any) -> DelayedFallback:
        """This value once it is set, ``fallback`` until then."""
        return DelayedFallback(self, fallback)


class DelayedAdd(DelayedBase):
    def get(self) -> Any:
        return try_get(self.a) + try_get(self.b)


class DelayedSub(DelayedBase):
    def get(self) -> Any:
        return try_get(self.a) - try_get(self.b)


class DelayedMul(DelayedBase):
    def get(self) -> Any:
        return try_get(self.a) * try_get(self.b)


class DelayedTrueDiv(DelayedBase):
    def get(self) -> Any:
        return try_get(self.a) / try_get(self.b)


class DelayedFloorDiv(DelayedBase):
    def get(self) -> Any:
        return try_get(self.a) // try_get(self.b)


class DelayedMod(DelayedBase):
    def get(self) -> Any:
        return try_get(self.a) % try_get(self.b)


class DelayedPow(DelayedBase):
    def get(self) -> Any:
        return try_get(self.a) ** try_get(self.b)


class DelayedRound(DelayedBase):
    def get(self) -> Any:
        return round(try_get(self.a), try_get(self.b))


class DelayedGetItem(DelayedBase):
    def get(self) -> Any:
        return try_get(self.a)[try_get(self.b)]


class Delayed(DelayedBase):
    """Wraps any value as a delayed object; hashed as the value itself."""

    def __init__(self, a: Any) -> None:
        super().__init__(a)

    def get(self) -> Any:
        return try_get(self.a)

    def _sis_hash(self) -> bytes:
        return sis_hash_helper(self.a)


class DelayedFunctionBase(DelayedBase):
    """A call on ``string`` (the first operand) with further ``args``/``kwargs``."""

    def __init__(self, string: Any, *args: Any, **kwargs: Any) -> None:
        self.string = string
        self.args = args
        self.kwargs = kwargs

    def is_set(self) -> bool:
        return all(_is_set(v) for v in (self.string, *self.args, *self.kwargs.values()))


class DelayedFunction(DelayedFunctionBase):
    def __init__(self, string: Any, func: Any, *args: Any, **kwargs: Any) -> None:
        if func.__name__ == "<lambda>":
            raise ValueError("DelayedFunction: a lambda has no stable hash; use a def")
        self.func = func
        super().__init__(string, *args, **kwargs)

    def get(self) -> Any:
        return self.func(try_get(self.string), *self.args, **self.kwargs)


class DelayedFormat(DelayedFunctionBase):
    """``string.format(*args, **kwargs)`` with delayed ``string`` and positional ``args`` resolved."""

    def get(self) -> str:
        return try_get(self.string).format(*(try_get(a) for a in self.args), **self.kwargs)


class DelayedReplace(DelayedFunctionBase):
    def get(self) -> str:
        return try_get(self.string).replace(*self.args, **self.kwargs)


class DelayedFunctionV2(DelayedBase):
    """``func(*args, **kwargs)`` later, with the function and every argument resolved."""

    def __init__(self, func: Any, args: Any, kwargs: Any) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs

    def get(self) -> Any:
        args = [try_get(a) for a in try_get(self.args)]
        kwargs = {k: try_get(v) for k, v in try_get(self.kwargs).items()}
        return try_get(self.func)(*args, **kwargs)


class DelayedFallback(DelayedBase):
    """``a`` once it is set, else ``b``."""

    def get(self) -> Any:
        return self.a.get() if self.a.is_set() else try_get(self.b)


class DelayedSlice(DelayedBase):
    def __init__(self, iterable: Any, index_start: Any = 0, index_end: Any = -1, step: Any = 1) -> None:
        self.iterable = iterable
        self.index_start = index_start
        self.index_end = index_end
        self.step = step

    def get(self) -> Any:
        start, end, step = (try_get(v) for v in (self.index_start, self.index_end, self.step))
        return try_get(self.iterable)[start:end:step]


class DelayedJoin(DelayedBase):
    def __init__(self, iterable: Any, separator: str) -> None:
        self.iterable = iterable
        self.separator = separator

    def get(self) -> str:
        return self.separator.join(try_get(v) for v in self.iterable)
