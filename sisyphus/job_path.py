"""``tk.Path`` and ``tk.Variable``: files (or values) that jobs produce and consume; delayed objects
(``sisyphus.delayed_ops``) whose ``get()`` is the path (or the stored value).

A Path with a creator lives at ``work/<job id>/output/<path>``; one without a creator is an input
given relative to the base directory (or absolute). Its hash is ``(Path, ser((creator, path)))`` with
creator ``"<job id>/output"`` or ``None``, or the ``hash_overwrite`` pair when one is given.

The attributes (``creator``, ``path``, ``cached``, ``_hash_overwrite``, ``_tags``, ``_available``,
``users``) and the pickled form (absolute ``path``, ``creator`` None, no ``users``) are those of the real
Sisyphus, so a ``job.save`` written by either core holds paths the other can read.
"""

from __future__ import annotations

import ast
import gzip
import logging
import os
import pickle
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sisyphus import global_settings as gs
from sisyphus.delayed_ops import DelayedBase
from sisyphus.hash import sis_hash_helper

if TYPE_CHECKING:
    from sisyphus.job import Job

log = logging.getLogger("sisyphus")


class VariableNotSet(Exception):
    """Raised when a Variable that was never set (and has no backup) is read."""


class NoBackup:
    """Marks a Variable without a backup value."""


class AbstractPath(DelayedBase):
    """Base of Path and Variable: a location in a job's output directory or an input file."""

    _sis_path = True  # how extract_paths recognises paths
    cacheing_enabled = False  # the worker switches file caching on (gs.file_caching)

    def __init__(
        self,
        path: str,
        creator: Job | None = None,
        cached: bool = False,
        hash_overwrite: tuple[Any, str] | str | None = None,
        tags: set[str] | None = None,
        available: Callable[[AbstractPath], bool] | None = None,
    ) -> None:
        if not isinstance(path, str):
            raise TypeError(f"Path needs a str, got {type(path).__name__}: {path!r}")
        self.creator = creator
        self.users: set[Job] = set()
        self.path = path
        self.cached = cached
        self.hash_overwrite = hash_overwrite
        self._tags = tags
        self._available = available

    @property
    def hash_overwrite(self) -> tuple[Any, str] | None:
        return self._hash_overwrite

    @hash_overwrite.setter
    def hash_overwrite(self, value: tuple[Any, str] | str | None) -> None:
        if isinstance(value, str):
            value = (None, value)
        elif value is not None and not (isinstance(value, tuple) and len(value) == 2):
            raise ValueError(f"hash_overwrite must be a str or a pair, got {value!r}")
        self._hash_overwrite = value

    @property
    def tags(self) -> set[str]:
        if self._tags is not None:
            return self._tags
        return set() if self.creator is None else self.creator.tags

    @tags.setter
    def tags(self, value: set[str]) -> None:
        self._tags = value

    def add_user(self, user: Job) -> None:
        self.users.add(user)

    def keep_value(self, value: int) -> None:
        if self.creator is not None:
            self.creator.keep_value(value)
        else:
            log.warning("keep_value of an input path has no effect: %s", self)

    # --- locations -----------------------------------------------------------------------
    def rel_path(self) -> str:
        """``work/<id>/output/<path>`` for job outputs, else the path as given."""
        if self.creator is None:
            return self.path
        return f"{self.creator._sis_path(gs.JOB_OUTPUT)}/{self.path}"

    def get_path(self) -> str:
        """The absolute path."""
        path = self.rel_path()
        return path if os.path.isabs(path) else f"{gs.BASE_DIR}/{path}"

    def get_cached_path(self) -> str:
        """``gs.file_caching(path)`` for a ``cached`` path inside a worker, else the path."""
        if AbstractPath.cacheing_enabled and self.cached:
            return gs.file_caching(self.get_path())
        return self.get_path()

    def get(self) -> Any:
        return self.get_path()

    def available(self, debug_info: Any = None) -> bool:
        """True once the file exists (inputs) or its creator has finished (outputs)."""
        if getattr(self, "_available", None):
            return self._available(self)
        if self.creator is None:
            return os.path.exists(self.get_path())
        return self.creator.path_available(self)

    def is_set(self) -> bool:
        return self.available()

    # --- hashing and identity ------------------------------------------------------------
    def _sis_hash(self) -> bytes:
        creator, path = self.hash_overwrite if self.hash_overwrite is not None else (self.creator, self.path)
        if hasattr(creator, "_sis_id"):
            creator = f"{creator._sis_id()}/{gs.JOB_OUTPUT}"
        return b"(Path, " + sis_hash_helper((creator, path)) + b")"

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return False
        return self.__dict__.get("creator") == other.__dict__.get("creator") and self.__dict__.get(
            "path"
        ) == other.__dict__.get("path")

    def __hash__(self) -> int:
        return hash((self.__dict__.get("creator"), self.__dict__.get("path")))

    def __lt__(self, other: AbstractPath) -> bool:
        def key(p: AbstractPath) -> str:
            creator = "None" if p.creator is None else p.creator._sis_id()
            return f"{creator} {p.path}"

        return key(self) < key(other)

    # --- copying and pickling (users are not part of the state) --------------------------
    def __sis_state__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("users", None)
        return state

    def __deepcopy__(self, memo: dict) -> AbstractPath:
        return self  # paths are references into the graph

    def __getstate__(self) -> dict[str, Any]:
        state = self.__sis_state__()
        if not getattr(gs, "INCLUDE_CREATOR_STATE", False) and state.get("creator") is not None:
            state["path"] = self.get_path()
            state["creator"] = None
        if callable(state.get("_available")) and getattr(state["_available"], "__name__", "") == "<lambda>":
            state["_available"] = None  # a lambda cannot be pickled
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_tags", None)
        self.__dict__.setdefault("_available", None)
        self.__dict__.setdefault("_hash_overwrite", None)
        self.__dict__.setdefault("cached", False)
        self.users = set()


class Path(AbstractPath):
    """A file or directory in the dependency graph; ``str(path)`` and ``os.fspath`` give the (cached)
    absolute path, ``get()`` the absolute path."""

    path_type = "Path"

    def __str__(self) -> str:
        return self.get_cached_path()

    def __fspath__(self) -> str:
        return self.get_cached_path()

    def __repr__(self) -> str:
        if getattr(gs, "LEGACY_PATH_CONVERSION", False):
            return repr(str(self))
        return f"<Path {self.get_path()}>"

    def copy(self) -> Path:
        new = Path("")
        new.__setstate__(self.__sis_state__())
        return new

    def copy_append(self, suffix: str) -> Path:
        """A copy with ``suffix`` appended to the path (and to ``hash_overwrite``)."""
        new = self.copy()
        if self.hash_overwrite:
            creator, overwrite = self.hash_overwrite
            new.hash_overwrite = (creator, overwrite + suffix)
        new.path += suffix
        return new

    def join_right(self, name: str) -> Path:
        return self.copy_append("/" + name)

    def size(self) -> int:
        """Deprecated (as in the real Sisyphus): the file size."""
        warnings.warn("Path.size() is deprecated", DeprecationWarning, stacklevel=2)
        if not self.available():
            raise FileNotFoundError(f"Path not ready: {self.get_path()}")
        return os.path.getsize(self.get_path())

    def is_zipped(self) -> bool | None:
        """Deprecated: whether the file starts with the gzip magic bytes (None if not available)."""
        warnings.warn("Path.is_zipped() is deprecated", DeprecationWarning, stacklevel=2)
        if not self.available():
            return None
        with open(self.get_path(), "rb") as f:
            return f.read(2) == b"\x1f\x8b"

    def estimate_text_size(self) -> int:
        """Deprecated: the size, times 3.5 for a gzipped file."""
        warnings.warn("Path.estimate_text_size() is deprecated", DeprecationWarning, stacklevel=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return int(self.size() * 3.5) if self.is_zipped() else self.size()

    def lines(self) -> int:
        """Deprecated: the number of lines (of the decompressed file if gzipped)."""
        warnings.warn("Path.lines() is deprecated", DeprecationWarning, stacklevel=2)
        opener = gzip.open if self.is_zipped() else open
        with opener(self.get_path(), "rt") as f:
            return sum(1 for _ in f)


_NON_FINITE = {"nan": float("nan"), "inf": float("inf")}


def literal_with_nan(text: str) -> Any:
    """A Python literal (``ast.literal_eval``) in which ``nan`` and ``inf`` (as ``repr`` writes them) are
    floats: no names, calls (except ``set()``), attributes or builtins, so a file cannot run code."""
    tree = ast.parse(text.strip(), mode="eval")

    class _Floats(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            if node.id in _NON_FINITE:
                return ast.copy_location(ast.Constant(_NON_FINITE[node.id]), node)
            return node  # literal_eval refuses it (except ``set`` of ``set()``)

    return ast.literal_eval(_Floats().visit(tree))


class Variable(AbstractPath):
    """A Python value produced by a job, stored as ``repr`` (or a gzip pickle) in a file."""

    path_type = "Variable"

    def __init__(
        self, path: str, creator: Job | None = None, pickle: bool = False, backup: Any = NoBackup
    ) -> None:
        super().__init__(path, creator)
        self.pickle = pickle
        self.backup = backup

    def is_set(self) -> bool:
        return os.path.isfile(self.get_path())

    def get(self) -> Any:
        """The stored value; ``backup`` (or VariableNotSet) if it is not set yet."""
        path = self.get_path()
        if not self.is_set():
            if self.backup is not NoBackup:
                return self.backup
            if getattr(gs, "RAISE_VARIABLE_NOT_SET_EXCEPTION", True):
                raise VariableNotSet(f"Variable {path} is not set")
            return f"<UNFINISHED VARIABLE: {path}>"
        if self.pickle:
            with gzip.open(path, "rb") as f:
                return pickle.load(f)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            return literal_with_nan(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
            raise ValueError(f"Variable {path}: not a Python literal ({e}): {text[:200]!r}") from None

    def set(self, value: Any) -> None:
        """Store ``value`` (atomically: written to a temporary file, then renamed)."""
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

    def __str__(self) -> str:
        return str(self.get())

    def __repr__(self) -> str:
        if getattr(gs, "LEGACY_VARIABLE_CONVERSION", False):
            return repr(self.get())
        value = f" {self.get()}" if self.is_set() else ""
        return f"<Variable {self.rel_path()}{value}>"
