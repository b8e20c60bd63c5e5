"""``Job``: a node of the dependency graph, identified by its class and hashed arguments.

Creating a job binds the call's arguments to ``__init__`` (defaults included), hashes them
(``Job.hash``), and returns the already existing instance for that id if there is one.
The id is ``<module path without a leading recipe./dots as slashes>/<Class>.<hash>`` and the
job lives in ``work/<id>/``.
"""

from __future__ import annotations

import copy
import gzip
import inspect
import logging
import os
import pickle
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

from sisyphus import global_settings as gs
from sisyphus.hash import short_hash, sis_hash_helper
from sisyphus.job_path import Path, Variable
from sisyphus.task import Task

log = logging.getLogger("sisyphus")

created_jobs: dict[str, Job] = {}


def extract_paths(obj: Any, _seen: set[int] | None = None, _depth: int = 0) -> set[Path]:
    """All Paths inside ``obj``: containers and plain objects are searched, Jobs are not."""
    seen = set() if _seen is None else _seen
    found: set[Path] = set()
    if id(obj) in seen or _depth > 50:
        return found
    seen.add(id(obj))
    if isinstance(obj, Path):
        found.add(obj)
    elif isinstance(obj, Job) or isinstance(obj, (str, bytes, int, float, bool, type(None), type)):
        pass
    elif isinstance(obj, dict):
        for k, v in obj.items():
            found |= extract_paths(k, seen, _depth + 1)
            found |= extract_paths(v, seen, _depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            found |= extract_paths(v, seen, _depth + 1)
    elif hasattr(obj, "__dict__") and not inspect.isroutine(obj) and not inspect.ismodule(obj):
        found |= extract_paths(vars(obj), seen, _depth + 1)
    return found


def job_module_path(cls: type) -> str:
    module = cls.__module__
    if module.startswith("recipe."):
        module = module[len("recipe.") :]
    return module.replace(".", "/")


class JobSingleton(type):
    """Metaclass: one instance per job id, arguments hashed before ``__init__`` runs."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Job:
        sis_tags = kwargs.pop("sis_tags", None)
        try:
            parsed = inspect.getcallargs(cls.__init__, None, *args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{cls.__name__}: {e}") from None
        self_name = next(iter(inspect.signature(cls.__init__).parameters))
        parsed.pop(self_name)
        # **kwargs of __init__ become a nested dict entry, as in the real Sisyphus
        sis_id = f"{job_module_path(cls)}/{cls.__name__}.{cls.hash(parsed)}"
        if sis_id in created_jobs:
            job = created_jobs[sis_id]
            if sis_tags:
                job.tags |= set(sis_tags)
            return job
        job = cls.__new__(cls)
        job._sis_init(sis_id, sis_tags)
        args_copy = copy.deepcopy(args)
        kwargs_copy = copy.deepcopy(kwargs)
        job.__init__(*args_copy, **kwargs_copy)
        job._sis_parsed_args = parsed
        for p in extract_paths(parsed) | extract_paths(vars(job)):
            if p.creator is not job:
                job._sis_inputs.add(p)
        created_jobs[sis_id] = job
        return job


class Job(metaclass=JobSingleton):
    """Base class of all jobs: override ``__init__`` (store args, declare outputs) and ``tasks``."""

    __sis_version__: Any = None
    __sis_hash_exclude__: dict[str, Any] = {}
    __sis_hash_overwrite__: list[tuple[str, Any, Any]] = []

    # --- creation ------------------------------------------------------------------------
    def _sis_init(self, sis_id: str, tags: Any) -> None:
        self._sis_id_value = sis_id
        self.tags: set[str] = set(tags or [])
        self._sis_inputs: set[Path] = set()
        self._sis_aliases: set[str] = set()
        self._sis_rqmt_overrides: dict[str, dict[str, Any]] = {}
        self._sis_environment: dict[str, str] = {}
        self._sis_keep_value: int | None = None
        self._sis_is_finished = False
        self._sis_tasks_cache: list[Task] | None = None
        self._sis_updated = False
        self._sis_parsed_args: dict[str, Any] = {}

    @classmethod
    def hash(cls, parsed_args: dict[str, Any]) -> str:
        """Hash of the job's arguments; excluded args at their old default are dropped."""
        h_args = dict(parsed_args)
        for key, old_default in cls.__sis_hash_exclude__.items():
            if key in h_args and h_args[key] == old_default:
                del h_args[key]
        for key, orig, repl in cls.__sis_hash_overwrite__:
            if key in h_args and h_args[key] == orig:
                h_args[key] = repl
        if cls.__sis_version__ is None:
            return short_hash(h_args)
        return short_hash((h_args, cls.__sis_version__))

    def _sis_id(self) -> str:
        return self._sis_id_value

    def _sis_hash(self) -> bytes:
        return b"(Job, " + sis_hash_helper(self._sis_id()) + b")"

    def __deepcopy__(self, memo: dict) -> Job:
        return self

    def __repr__(self) -> str:
        return f"Job<{self._sis_id()}>"

    def __lt__(self, other: Job) -> bool:
        return self._sis_id() < other._sis_id()

    # --- outputs, inputs, aliases --------------------------------------------------------
    def output_path(self, filename: str, directory: bool = False, cached: bool = False) -> Path:
        """A file (or directory) this job writes, at ``work/<id>/output/<filename>``."""
        return Path(filename, creator=self, cached=cached, is_directory=directory)

    def output_var(self, filename: str, pickle: bool = False, backup: Any = None) -> Variable:
        """A value this job sets with ``var.set(v)``, stored at ``work/<id>/output/<filename>``."""
        return Variable(filename, creator=self, pickle=pickle, backup=backup)

    def add_input(self, path: Path) -> Path:
        self._sis_inputs.add(path)
        return path

    def add_alias(self, alias: str) -> Job:
        """Name the job: ``alias/<alias>`` links to its directory."""
        self._sis_aliases.add(alias)
        return self

    def get_aliases(self) -> set[str]:
        return set(self._sis_aliases)

    def hold(self) -> None:
        os.makedirs(self._sis_path(abspath=True), exist_ok=True)
        open(self._sis_path("hold", abspath=True), "a").close()

    def keep_value(self, value: int | None = None) -> int | None:
        if value is not None:
            if not 0 <= value <= 99:
                raise ValueError(f"keep_value must be in 0..99, got {value}")
            self._sis_keep_value = value
        return self._sis_keep_value

    # --- requirements and environment ----------------------------------------------------
    def set_rqmt(self, task_name: str, rqmt: dict[str, Any]) -> Job:
        self._sis_rqmt_overrides[task_name] = dict(rqmt)
        return self

    def update_rqmt(self, task_name: str, rqmt: dict[str, Any]) -> Job:
        self._sis_rqmt_overrides.setdefault(task_name, {}).update(rqmt)
        return self

    def set_env(self, key: str, value: str) -> None:
        self._sis_environment[key] = value

    def sh(self, command: str, except_return_codes: tuple[int, ...] = (0,), **kwargs: Any) -> int:
        """Run ``command`` in bash with ``set -ueo pipefail``, formatted with the job's attributes."""
        cmd = command.format(**{**vars(self), **kwargs})
        ret = subprocess.call(["bash", "-c", "set -ueo pipefail; " + cmd])
        if ret not in except_return_codes:
            raise subprocess.CalledProcessError(ret, cmd)
        return ret

    # --- override points -----------------------------------------------------------------
    def tasks(self) -> Iterator[Task]:
        yield Task("run")

    def update(self) -> None:
        """Called once all current inputs are available; may add further inputs."""

    def info(self) -> str | None:
        """A short status text shown by the manager while the job runs."""
        return None

    def completed_fraction(self) -> float | None:
        """Progress in [0, 1] while running, if the job can tell."""
        return None

    # --- directory -----------------------------------------------------------------------
    def _sis_path(self, name: str | None = None, abspath: bool = False) -> str:
        parts = [gs.WORK_DIR, self._sis_id()] + ([name] if name else [])
        rel = os.path.join(*parts)
        return os.path.join(gs.BASE_DIR, rel) if abspath else rel

    def _sis_tasks(self) -> list[Task]:
        if self._sis_tasks_cache is None:
            try:
                tasks = list(self.tasks())
            except ValueError as e:  # e.g. an invalid Task argument: say which job
                raise ValueError(f"{self._sis_id()}: {e}") from e
            names = [t.name() for t in tasks]
            if len(set(names)) != len(names):
                raise ValueError(f"{self}: task names must be unique, got {names}")
            for t in tasks:
                t.set_job(self)
            self._sis_tasks_cache = tasks
        return self._sis_tasks_cache

    def _sis_inputs_available(self) -> bool:
        return all(p.available() for p in self._sis_inputs)

    def _sis_update_inputs(self) -> bool:
        """Run ``update()`` once the inputs exist; True while inputs are still missing."""
        if not self._sis_inputs_available():
            return True
        if not self._sis_updated:
            before = set(self._sis_inputs)
            self.update()
            self._sis_updated = True
            for p in extract_paths(vars(self)):
                if p.creator is not self:
                    self._sis_inputs.add(p)
            if self._sis_inputs != before:
                return not self._sis_inputs_available()
        return False

    def _sis_finished(self) -> bool:
        """True once the ``finished`` marker exists (written when every task id has finished)."""
        if self._sis_is_finished:
            return True
        marker = self._sis_path(gs.STATE_FINISHED, abspath=True)
        if os.path.exists(marker):
            self._sis_is_finished = True
            return True
        if not os.path.isdir(self._sis_path(abspath=True)) or not os.path.exists(
            self._sis_path(gs.JOB_SAVE, abspath=True)
        ):
            return False
        if self._sis_inputs_available() and all(t.finished() for t in self._sis_tasks()):
            open(marker, "a").close()
            self._sis_is_finished = True
            return True
        return False

    def _sis_setup_directory(self) -> None:
        """Create ``work/<id>/`` with ``input/`` links, ``output/``, ``work/``, ``info`` and ``job.save``."""
        job_dir = self._sis_path(abspath=True)
        for sub in (gs.JOB_OUTPUT, gs.JOB_WORK_DIR, gs.JOB_INPUT, gs.ENGINE_DIR):
            os.makedirs(os.path.join(job_dir, sub), exist_ok=True)
        for p in self._sis_inputs:
            if p.creator is None:
                continue
            creator_dir = p.creator._sis_path(abspath=True)
            link = os.path.join(job_dir, gs.JOB_INPUT, p.creator._sis_id().replace("/", "_"))
            if not os.path.islink(link):
                os.symlink(creator_dir, link)
        self._sis_write_info()
        tmp = self._sis_path(f"{gs.JOB_SAVE}.tmp.{os.getpid()}", abspath=True)
        with gzip.open(tmp, "wb") as f:
            pickle.dump(self, f)
        os.replace(tmp, self._sis_path(gs.JOB_SAVE, abspath=True))

    def _sis_write_info(self) -> None:
        lines = [f"TAG: {t}" for t in sorted(self.tags)]
        lines += [f"INPUT: {p.rel_path()}" for p in sorted(self._sis_inputs, key=lambda p: p.rel_path())]
        lines += [f"PARAMETER: {k}: {v!r}" for k, v in sorted(self._sis_parsed_args.items())]
        lines += [f"ALIAS: {a}" for a in sorted(self._sis_aliases)]
        with open(self._sis_path(gs.JOB_INFO, abspath=True), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_sis_tasks_cache"] = None
        state["_sis_is_finished"] = False
        return state


def load_job(job_dir: str) -> Job:
    """Unpickle ``job.save`` of a job directory."""
    with gzip.open(os.path.join(job_dir, gs.JOB_SAVE), "rb") as f:
        return pickle.load(f)


def move_aside(job_dir: str) -> str:
    """Rename ``job_dir`` to ``<job_dir>.cleared.NNNN`` (first free number); returns the new name."""
    n = 1
    while os.path.exists(f"{job_dir}.cleared.{n:04d}"):
        n += 1
    new = f"{job_dir}.cleared.{n:04d}"
    shutil.move(job_dir, new)
    return new
