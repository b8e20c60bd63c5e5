"""``Job``: a node of the dependency graph, identified by its class and hashed arguments.

Creating a job binds the call's arguments to ``__init__`` (defaults included), hashes them
(``Job.hash``), and returns the already existing instance for that id if there is one.
The id is ``<module path without a leading recipe./dots as slashes>/<Class>.<hash>`` and the
job lives in ``work/<id>/``.
"""

from __future__ import annotations

import copy
import enum
import gzip
import inspect
import logging
import os
import pickle
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from typing import Any

from sisyphus import global_settings as gs
from sisyphus import tools
from sisyphus.hash import short_hash, sis_hash_helper
from sisyphus.job_path import AbstractPath, Path, Variable
from sisyphus.task import Task

log = logging.getLogger("sisyphus")

created_jobs: dict[str, Job] = {}


def extract_paths(obj: Any, _seen: set[int] | None = None, _depth: int = 0) -> set[AbstractPath]:
    """All Paths and Variables inside ``obj``: containers, delayed objects and plain objects are
    searched (dict entries whose key starts with ``_sis_`` are not), Jobs are not."""
    seen = set() if _seen is None else _seen
    found: set[AbstractPath] = set()
    if id(obj) in seen or _depth > 50:
        return found
    seen.add(id(obj))
    if isinstance(obj, AbstractPath):
        found.add(obj)
    elif isinstance(obj, Job) or isinstance(obj, (str, bytes, int, float, bool, type(None), type, enum.Enum)):
        pass
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str) and k.startswith("_sis_"):
                continue
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


JOB_SAVE_MAKER = "diffusion_lm_asr"  # stored in the job.save this core writes (``_sis_core``)


class ForeignJobSave(Exception):
    """A ``job.save`` that this core cannot read (written by another implementation)."""


def job_finished(job_dir: str) -> bool:
    """True if a job directory is marked finished: ``finished`` or, after the cleanup, ``finished.tar.gz``."""
    return os.path.isfile(os.path.join(job_dir, gs.STATE_FINISHED)) or os.path.isfile(
        os.path.join(job_dir, gs.JOB_FINISHED_ARCHIVE)
    )


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
        if sis_tags is None:
            sis_tags = set()
            for p in extract_paths(parsed):
                sis_tags |= set(p.tags)
        if sis_id in created_jobs:
            return created_jobs[sis_id]
        job = object.__new__(cls)
        job._sis_id_cache = sis_id
        job._sis_tags = set(sis_tags)
        job._sis_init(*copy.deepcopy((args, kwargs, parsed)))
        created_jobs[sis_id] = job
        return job


class Job(metaclass=JobSingleton):
    """Base class of all jobs: override ``__init__`` (store args, declare outputs) and ``tasks``.

    The instance attributes are those of the real Sisyphus (``_sis_id_cache``, ``_sis_kwargs``,
    ``_sis_inputs``, ``_sis_outputs``, ``_sis_environment``, ``_sis_task_rqmt_overwrite``, …), so that
    the ``job.save`` of one core can be resumed by the other (see ``__getstate__``)."""

    __sis_version__: Any = None
    __sis_hash_exclude__: dict[str, Any] = {}
    __sis_hash_overwrite__: list[tuple[str, Any, Any]] = []

    def __new__(cls, *args: Any, **kwargs: Any) -> Job:
        # unpickling calls Job.__new__(cls, sis_id) (__getnewargs__): keep jobs singletons
        if len(args) == 1 and not kwargs and isinstance(args[0], str):
            if args[0] in created_jobs:
                return created_jobs[args[0]]
            job = object.__new__(cls)
            created_jobs[args[0]] = job
            return job
        return object.__new__(cls)

    # --- creation ------------------------------------------------------------------------
    def _sis_init(self, args: tuple, kwargs: dict, parsed_args: dict[str, Any]) -> None:
        self._sis_aliases: set[str] | None = None
        self._sis_alias_prefixes: set[str] = set()
        self._sis_vis_name: str | None = None
        self._sis_output_dirs: set[Path] = set()
        self._sis_outputs: dict[str, AbstractPath] = {}
        self._sis_keep_value: int | None = None
        self._sis_hold_job = False
        self._sis_kwargs = parsed_args
        self._sis_task_rqmt_overwrite: dict[str, tuple[dict[str, Any], bool]] = {}
        self._sis_is_finished = False
        self._sis_finished_recent_check_time = float("-inf")
        self._sis_setup_since_restart = False
        self._sis_environment = tools.EnvironmentModifier(cleanup_env=gs.CLEANUP_ENVIRONMENT)
        if gs.CLEANUP_ENVIRONMENT:
            self._sis_environment.keep(gs.DEFAULT_ENVIRONMENT_KEEP)
            self._sis_environment.set(gs.DEFAULT_ENVIRONMENT_SET)
        self._sis_inputs: set[AbstractPath] = set()
        self._sis_core = JOB_SAVE_MAKER
        self.__init__(*args, **kwargs)
        for p in extract_paths([self.__dict__, args, kwargs]):
            if p.creator is not self:
                self._sis_inputs.add(p)
        for p in self._sis_inputs:
            p.add_user(self)
        self._sis_quiet = False
        self._sis_cleanable_cache = False
        self._sis_cleaned_or_not_cleanable = False
        self._sis_needed_for_which_targets: set[Any] = set()
        self._sis_stacktrace: list[Any] = []
        self._sis_updated = False

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
        return self._sis_id_cache

    def job_id(self) -> str:
        """The job id, ``<module path>/<Class>.<hash>``."""
        return self._sis_id_cache

    def _sis_hash(self) -> bytes:
        return b"(Job, " + sis_hash_helper(self._sis_id()) + b")"

    def __deepcopy__(self, memo: dict) -> Job:
        return self

    def __repr__(self) -> str:
        return f"Job<{self._sis_id()}>"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.__dict__.get("_sis_id_cache") == other.__dict__.get(
            "_sis_id_cache"
        )

    def __hash__(self) -> int:
        return hash(self.__dict__.get("_sis_id_cache"))

    def __lt__(self, other: Job) -> bool:
        return self._sis_id() < other._sis_id()

    @property
    def tags(self) -> set[str]:
        return self._sis_tags

    # --- outputs, inputs, aliases --------------------------------------------------------
    def output_path(self, filename: str, directory: bool = False, cached: bool = False) -> Path:
        """A file (or directory, created with the job directory) at ``work/<id>/output/<filename>``."""
        path = Path(filename, self, cached)
        key = path.get_path()
        if key in self._sis_outputs:
            log.warning("Output %s added more than once to %s", filename, self)
            return self._sis_outputs[key]
        self._sis_outputs[key] = path
        if directory:
            self._sis_output_dirs.add(path)
        return path

    def output_var(self, filename: str, pickle: bool = False, backup: Any = None) -> Variable:
        """A value this job sets with ``var.set(v)``, stored at ``work/<id>/output/<filename>``."""
        var = Variable(filename, self, pickle=pickle, backup=backup)
        if var.get_path() in self._sis_outputs:
            raise ValueError(f"{self}: output {filename!r} declared twice")
        self._sis_outputs[var.get_path()] = var
        return var

    def add_input(self, path: AbstractPath) -> AbstractPath:
        if not isinstance(path, AbstractPath):
            raise TypeError(f"add_input needs a tk.Path or tk.Variable, got {type(path).__name__}")
        self._sis_inputs.add(path)
        path.add_user(self)
        return path

    def path_available(self, path: AbstractPath) -> bool:
        """Whether an output of this job is available: by default once the job has finished (jobs
        override this to release outputs early, e.g. checkpoints of a running training)."""
        return self._sis_finished()

    def add_alias(self, alias: str) -> Job:
        """Name the job: ``alias/<alias>`` links to its directory."""
        if self._sis_aliases is None:
            self._sis_aliases = set()
        self._sis_aliases.add(alias)
        return self

    def get_aliases(self) -> set[str]:
        """A copy of the aliases (empty if the job has none; the real Sisyphus returns None then)."""
        return set(self._sis_aliases or ())

    def get_one_alias(self) -> str | None:
        return next(iter(sorted(self._sis_aliases)), None) if self._sis_aliases else None

    def set_vis_name(self, vis_name: str) -> Job:
        """A short name for displays (the status page shows it)."""
        self._sis_vis_name = vis_name
        return self

    def get_vis_name(self) -> str | None:
        return self._sis_vis_name

    def work_path(self) -> str:
        """``work/<id>/work`` (relative to the base directory)."""
        return self._sis_path(gs.JOB_WORK_DIR)

    def set_attrs(self, attrs: dict[str, Any]) -> None:
        """``self.set_attrs(locals())`` in ``__init__``: every entry that is not yet an attribute."""
        for key, value in attrs.items():
            if key == "self" and value is self:
                continue
            if hasattr(self, key):
                log.warning("set_attrs: not overwriting %s of %s", key, self)
            else:
                setattr(self, key, value)

    def set_default(self, name: str, value: Any) -> None:
        """Deprecated (as in the real Sisyphus): set attribute ``name`` to ``value`` if it is None."""
        warnings.warn(
            "Job.set_default is deprecated; set the attribute directly", DeprecationWarning, stacklevel=2
        )
        if getattr(self, name) is None:
            setattr(self, name, value)
            if isinstance(value, AbstractPath):
                self.add_input(value)

    def hold(self) -> None:
        """Do not start this job (its dependencies still run)."""
        self._sis_hold_job = True

    def keep_value(self, value: int | None = None) -> int | None:
        if value is not None:
            if not 0 <= value < 100:
                raise ValueError(f"keep_value must be in 0..99, got {value}")
            self._sis_keep_value = value
        return self._sis_keep_value

    def set_keep_value(self, value: int) -> Job:
        self.keep_value(value)
        return self

    # --- requirements and environment ----------------------------------------------------
    def set_rqmt(self, task_name: str, rqmt: dict[str, Any]) -> Job:
        """Replace the task's requirements (the last call wins)."""
        self._sis_task_rqmt_overwrite[task_name] = (dict(rqmt), True)
        return self

    def update_rqmt(self, task_name: str, rqmt: dict[str, Any]) -> Job:
        """Update the task's requirements with ``rqmt`` (the last call wins)."""
        self._sis_task_rqmt_overwrite[task_name] = (dict(rqmt), False)
        return self

    def set_env(self, key: str, value: str, *, verbatim: bool = True) -> None:
        """Set an environment variable for the job's tasks (``verbatim=False``: ``$NAME`` is substituted
        from the worker's environment)."""
        if verbatim:
            self._sis_environment.set_verbatim(key, value)
        else:
            self._sis_environment.set(key, value)

    def sh(self, command: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``command`` in bash (``set -ueo pipefail``) after formatting it with the job's attributes
        and ``kwargs``; ``sh(cmd, True)`` / ``capture_output=True`` returns its output (see
        ``sisyphus.tools.sh`` for the other options)."""
        return tools.sh(command, *args, sis_quiet=self._sis_quiet, sis_replace=self.__dict__, **kwargs)

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
    def _sis_path(self, name: str | None = None, task_id: int | None = None, abspath: bool = False) -> str:
        rel = os.path.join(gs.WORK_DIR, self._sis_id())
        if name is not None:
            rel = name if os.path.isabs(name) else os.path.join(rel, name)
        if task_id is not None:
            rel += f".{task_id}"
        return os.path.join(gs.BASE_DIR, rel) if abspath and not os.path.isabs(rel) else rel

    def _sis_tasks(self) -> list[Task]:
        cache = self.__dict__.get("_sis_task_cache")
        if cache is None:
            try:
                tasks = list(self.tasks())
            except ValueError as e:  # e.g. an invalid Task argument: say which job
                raise ValueError(f"{self._sis_id()}: {e}") from e
            names = [t.name() for t in tasks]
            if len(set(names)) != len(names):
                raise ValueError(f"{self}: task names must be unique, got {names}")
            for t in tasks:
                t.set_job(self)
            self._sis_task_cache = cache = tasks
        return cache

    def _sis_inputs_available(self) -> bool:
        return all(p.available() for p in list(self._sis_inputs))

    def _sis_update_inputs(self) -> bool:
        """Run ``update()`` once the inputs exist; True while inputs are still missing."""
        if not self._sis_inputs_available():
            return True
        if not self.__dict__.get("_sis_updated", False):
            before = set(self._sis_inputs)
            self.update()
            self._sis_updated = True
            for p in extract_paths(self.__dict__):
                if p.creator is not self:
                    self._sis_inputs.add(p)
            if self._sis_inputs != before:
                return not self._sis_inputs_available()
        return False

    def _sis_is_set_to_hold(self) -> bool:
        return self._sis_hold_job or os.path.exists(self._sis_path("hold", abspath=True))

    def _sis_finished(self) -> bool:
        """True once ``finished`` or ``finished.tar.gz`` exists; writes ``finished`` when every task id
        has finished."""
        if self._sis_is_finished:
            return True
        job_dir = self._sis_path(abspath=True)
        if job_finished(job_dir):
            self._sis_is_finished = True
            return True
        if not os.path.exists(os.path.join(job_dir, gs.JOB_SAVE)):
            return False
        if self._sis_inputs_available() and all(t.finished() for t in self._sis_tasks()):
            try:
                open(os.path.join(job_dir, gs.STATE_FINISHED), "a").close()
            except PermissionError:
                pass  # another user's job directory
            self._sis_is_finished = True
            return True
        return False

    def _sis_cleanable(self) -> bool:
        """A finished job that is not cleaned up yet (and is a directory, not a link)."""
        if self.__dict__.get("_sis_cleaned_or_not_cleanable"):
            return False
        job_dir = self._sis_path(abspath=True)
        if os.path.islink(job_dir) or os.path.isfile(os.path.join(job_dir, gs.JOB_FINISHED_ARCHIVE)):
            self._sis_cleaned_or_not_cleanable = True
            return False
        return self._sis_finished()

    def _sis_cleanup(self) -> bool:
        """The real Sisyphus' cleanup of a finished job: remove ``work/`` (unless
        ``JOB_CLEANUP_KEEP_WORK``), pack everything but ``output/``, ``info``, ``work/`` and ``input/``
        (unless ``JOB_CLEANUP_KEEP_INPUT`` is False) into ``finished.tar.gz`` and delete it. True if done."""
        if not self._sis_cleanable():
            return False
        job_dir = self._sis_path(abspath=True)
        try:
            if not gs.JOB_CLEANUP_KEEP_WORK:
                shutil.rmtree(os.path.join(job_dir, gs.JOB_WORK_DIR), ignore_errors=True)
            keep = {gs.JOB_OUTPUT, gs.JOB_INFO, gs.JOB_WORK_DIR}
            if gs.JOB_CLEANUP_KEEP_INPUT:
                keep.add(gs.JOB_INPUT)
            files = sorted(f for f in os.listdir(job_dir) if f not in keep)
            tmp = f"{gs.JOB_FINISHED_ARCHIVE}.tmp.{os.getpid()}"
            subprocess.run(["tar", "-czf", tmp, *files], cwd=job_dir, check=True, capture_output=True)
            os.replace(os.path.join(job_dir, tmp), os.path.join(job_dir, gs.JOB_FINISHED_ARCHIVE))
            for name in files:
                path = os.path.join(job_dir, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                elif os.path.lexists(path):
                    os.unlink(path)
        except (OSError, subprocess.CalledProcessError) as e:
            log.warning("Could not clean up %s: %s", job_dir, e)
        self._sis_cleaned_or_not_cleanable = True
        return True

    def _sis_setup_directory(self) -> None:
        """Create ``work/<id>/`` with ``input/`` links, ``output/``, ``work/``, ``info`` and ``job.save``."""
        job_dir = self._sis_path(abspath=True)
        for sub in (gs.JOB_WORK_DIR, gs.JOB_OUTPUT, gs.JOB_INPUT, gs.ENGINE_DIR):
            os.makedirs(os.path.join(job_dir, sub), exist_ok=True)
        for p in self._sis_output_dirs:
            os.makedirs(p.get_path(), exist_ok=True)
        for p in self._sis_inputs:
            if p.creator is None:
                continue
            job_id = p.creator._sis_id()
            if len(job_id) > 255:
                job_id = job_id.split("/")[-1]
            link = os.path.join(job_dir, gs.JOB_INPUT, job_id.replace("/", "_"))
            if not os.path.lexists(link):
                os.symlink(p.creator._sis_path(abspath=True), link, target_is_directory=True)
        self._sis_write_info()
        tmp = self._sis_path(f"{gs.JOB_SAVE}.tmp.{os.getpid()}", abspath=True)
        with gzip.open(tmp, "wb") as f:
            pickle.dump(self, f)
        os.replace(tmp, self._sis_path(gs.JOB_SAVE, abspath=True))
        self._sis_setup_since_restart = True

    def _sis_write_info(self) -> None:
        def text(value: Any) -> str:
            try:
                return str(value)
            except Exception:  # noqa: BLE001 - e.g. an unset input Variable
                return repr(type(value).__name__)

        lines = [f"TAG: {t}" for t in sorted(self.tags)]
        lines += [f"INPUT: {p}" for p in sorted(p.get_path() for p in self._sis_inputs)]
        lines += [f"PARAMETER: {k}: {text(v)}" for k, v in sorted(self._sis_kwargs.items())]
        lines += [f"ALIAS: {a}" for a in sorted(self._sis_aliases or ())]
        with open(self._sis_path(gs.JOB_INFO, abspath=True), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")

    # --- pickling (job.save) ---------------------------------------------------------------
    def __getnewargs__(self) -> tuple[str]:
        return (self._sis_id(),)

    def __getstate__(self) -> dict[str, Any]:
        """What ``job.save`` holds: the attributes of the real Sisyphus' jobs (so its worker can run a
        job set up here) plus this core's few own ones; runtime state is dropped."""
        state = dict(self.__dict__)
        for key in (
            "_sis_job_lock",
            "_sis_blocks",
            "current_block",
            "_sis_cleanable_cache",
            "_sis_cleaned_or_not_cleanable",
            "_sis_worker_wrapper",
            "_sis_task_cache",
        ):
            state.pop(key, None)
        state["_sis_is_finished"] = False
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "_sis_id_cache" not in state:
            raise ForeignJobSave(
                f"job.save of {type(self).__name__} has no _sis_id_cache: written by an unknown workflow core "
                f"(keys: {sorted(state)[:8]}…)"
            )
        self.__dict__.update(state)
        # a job.save of the real Sisyphus: fill in what this core needs, drop its runtime state
        self.__dict__.pop("_sis_task_cache", None)
        defaults = {
            "_sis_aliases": None,
            "_sis_output_dirs": set(),
            "_sis_outputs": {},
            "_sis_task_rqmt_overwrite": {},
            "_sis_hold_job": False,
            "_sis_quiet": False,
            "_sis_tags": set(),
            "_sis_vis_name": None,
            "_sis_keep_value": None,
            "_sis_kwargs": {},
            "_sis_stacktrace": [],
        }
        for key, value in defaults.items():
            self.__dict__.setdefault(key, value)
        if not hasattr(self, "_sis_environment"):
            self._sis_environment = tools.EnvironmentModifier(cleanup_env=False)
        self._sis_is_finished = False
        self._sis_cleanable_cache = False
        self._sis_cleaned_or_not_cleanable = False
        for p in self._sis_inputs:
            p.add_user(self)


def _read_job_save(fileobj: Any, where: str) -> Job:
    try:
        job = pickle.load(fileobj)
    except (ModuleNotFoundError, AttributeError, ImportError) as e:
        raise ForeignJobSave(
            f"{where}: cannot read job.save ({e}). It was probably written by another workflow core (e.g. the "
            f"real rwth-i6 Sisyphus with classes this core lacks) or by code that no longer exists."
        ) from e
    if not isinstance(job, Job):
        raise ForeignJobSave(f"{where}: job.save holds a {type(job).__name__}, not a Job")
    return job


def job_save_maker(job: Job) -> str:
    """Which core wrote a loaded job.save: this one, or the real Sisyphus (no ``_sis_core``)."""
    return job.__dict__.get("_sis_core", "rwth-i6/sisyphus")


def load_job(job_dir: str) -> Job:
    """Unpickle the ``job.save`` of a job directory (or of its ``finished.tar.gz`` after the cleanup)."""
    path = os.path.join(job_dir, gs.JOB_SAVE)
    if os.path.isfile(path):
        with gzip.open(path, "rb") as f:
            return _read_job_save(f, path)
    archive = os.path.join(job_dir, gs.JOB_FINISHED_ARCHIVE)
    if os.path.isfile(archive):
        import io
        import tarfile

        with tarfile.open(archive) as tar:
            member = tar.extractfile(gs.JOB_SAVE)
            if member is None:
                raise FileNotFoundError(f"{archive} has no {gs.JOB_SAVE}")
            return _read_job_save(io.BytesIO(gzip.decompress(member.read())), archive)
    raise FileNotFoundError(f"{job_dir}: no {gs.JOB_SAVE} (not a job directory)")


def move_aside(job_dir: str) -> str:
    """Rename ``job_dir`` to ``<job_dir>.cleared.NNNN`` (first free number); returns the new name."""
    n = 1
    while os.path.exists(f"{job_dir}.cleared.{n:04d}"):
        n += 1
    new = f"{job_dir}.cleared.{n:04d}"
    shutil.move(job_dir, new)
    return new
