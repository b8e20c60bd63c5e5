"""``tk.Path`` and ``tk.Variable``: files (or values) that jobs produce and consume.

A Path with a creator lives at ``work/<job id>/output/<path>``; one without a creator is an
input given relative to the base directory (or absolute). Its hash is
``(Path, ser((creator, path)))`` with creator ``"<job id>/output"`` or ``None``, or the
``hash_overwrite`` pair when one is given.
"""

from __future__ import annotations

import gzip
import os
import pickle
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sisyphus import global_settings as gs
from sisyphus.hash import sis_hash_helper

if TYPE_CHECKING:
    from sisyphus.job import Job


class VariableNotSet(Exception):
    """Raised when a Variable that was never set is read."""


class Path:
    """A file or directory in the dependency graph."""

    def __init__(
        self,
        path: str,
        creator: Job | None = None,
        cached: bool = False,
        hash_overwrite: tuple[Any, str] | str | None = None,
        tags: set[str] | None = None,
        available: Callable[[Path], bool] | None = None,
        is_directory: bool = False,
    ) -> None:
        if not isinstance(path, str):
            raise TypeError(f"Path needs a str, got {type(path).__name__}: {path!r}")
        self.path = path
        self.creator = creator
        self.cached = cached
        if isinstance(hash_overwrite, str):
            hash_overwrite = (None, hash_overwrite)
        self.hash_overwrite = hash_overwrite
        self.tags = set(tags) if tags else set()
        self._available = available
        self.is_directory = is_directory
        self._abs_path: str | None = None  # set when unpickled without its creator

    # --- locations -----------------------------------------------------------------------
    def rel_path(self) -> str:
        """``work/<id>/output/<path>`` for job outputs, else the path as given."""
        if self._abs_path is not None:
            return self._abs_path
        if self.creator is not None:
            return os.path.join(self.creator._sis_path(gs.JOB_OUTPUT), self.path)
        return self.path

    def get_path(self) -> str:
        """The absolute path."""
        return os.path.join(gs.BASE_DIR, self.rel_path())

    def __str__(self) -> str:
        return self.get_path()

    def __fspath__(self) -> str:
        return self.get_path()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.rel_path()!r})"

    def available(self) -> bool:
        """True once the file exists (inputs) or its creator has finished (outputs)."""
        if self._available is not None:
            return self._available(self)
        if self.creator is not None:
            return self.creator._sis_finished()
        return os.path.exists(self.get_path())

    def is_set(self) -> bool:
        return self.available()

    # --- derived paths -------------------------------------------------------------------
    def copy_append(self, suffix: str) -> Path:
        """A new Path with ``suffix`` appended to the path (and to ``hash_overwrite``)."""
        hash_overwrite = None
        if self.hash_overwrite is not None:
            hash_overwrite = (self.hash_overwrite[0], self.hash_overwrite[1] + suffix)
        new = type(self)(
            self.path + suffix,
            creator=self.creator,
            cached=self.cached,
            hash_overwrite=hash_overwrite,
            tags=self.tags,
        )
        new._abs_path = None if self._abs_path is None else self._abs_path + suffix
        return new

    def join_right(self, name: str) -> Path:
        return self.copy_append("/" + name)

    # --- hashing and identity ------------------------------------------------------------
    def _sis_hash(self) -> bytes:
        if self.hash_overwrite is not None:
            creator, path = self.hash_overwrite
        else:
            creator, path = self.creator, self.path
        if creator is not None and hasattr(creator, "_sis_id"):
            creator = f"{creator._sis_id()}/{gs.JOB_OUTPUT}"
        return b"(Path, " + sis_hash_helper((creator, path)) + b")"

    def _identity(self) -> tuple[str | None, str]:
        creator = self.creator._sis_id() if self.creator is not None else None
        return creator, self.path if self._abs_path is None else self._abs_path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Path) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __lt__(self, other: Path) -> bool:
        return self.get_path() < other.get_path()

    def __deepcopy__(self, memo: dict) -> Path:
        return self  # paths are immutable references into the graph

    # --- pickling: drop the creator, keep the absolute location --------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if state["creator"] is not None:
            state["_abs_path"] = self.get_path()
            state["creator"] = None
        state["_available"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("_abs_path", None)
        self.__dict__.update(state)


class Variable(Path):
    """A Python value produced by a job, stored as ``repr`` (or a gzip pickle) in a file."""

    def __init__(
        self,
        path: str,
        creator: Job | None = None,
        pickle: bool = False,
        backup: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(path, creator=creator, **kwargs)
        self.pickle = pickle
        self.backup = backup

    def get(self) -> Any:
        """The stored value; ``backup`` (or VariableNotSet) if the file does not exist yet."""
        path = self.get_path()
        if not os.path.exists(path):
            if self.backup is not None:
                return self.backup
            if self.creator is not None:
                return None
            raise VariableNotSet(f"Variable {path} is not set")
        if self.pickle:
            with gzip.open(path, "rb") as f:
                return pickle.load(f)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        from math import inf, nan  # noqa: F401  (names used by eval of repr(float))

        return eval(text, {"inf": inf, "nan": nan})

    def set(self, value: Any) -> None:
        """Store ``value`` atomically."""
        path = self.get_path()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp.{os.getpid()}"
        if self.pickle:
            with gzip.open(tmp, "wb") as f:
                pickle.dump(value, f)
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(repr(value) + "\n")
        os.replace(tmp, path)

    def is_set(self) -> bool:
        return os.path.exists(self.get_path())

    def __str__(self) -> str:
        return str(self.get())
