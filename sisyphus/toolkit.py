"""``tk``: the functions configs and recipes call (register outputs and reports, set up
package-relative paths, wait for results in async configs, run jobs from Python)."""

from __future__ import annotations

import gzip
import importlib
import os
import pickle
import sys
from collections.abc import Callable, Generator
from typing import Any

from sisyphus import global_settings as gs
from sisyphus.delayed_ops import Delayed, DelayedBase
from sisyphus.graph import CallbackTarget, OutputTarget, ReportTarget, WaitTarget, graph
from sisyphus.job import Job, extract_paths, move_aside
from sisyphus.job import load_job as _load_job
from sisyphus.job_path import AbstractPath, Path, Variable, VariableNotSet

__all__ = [
    "Path",
    "Variable",
    "AbstractPath",
    "VariableNotSet",
    "Delayed",
    "DelayedBase",
    "gs",
    "is_path",
    "input_path",
    "register_callback",
    "async_gather",
    "running_in_manager",
    "dump",
    "load_file",
    "export_graph",
    "import_work_directory",
    "register_output",
    "register_report",
    "setup_path",
    "async_run",
    "run",
    "uncached_path",
    "running_in_worker",
    "load_job",
    "run_job",
    "remove_job_and_descendants",
]


def register_output(name: str, value: AbstractPath, export_graph: bool = False) -> None:
    """Link ``output/<name>`` to ``value`` once it exists; the manager works towards it.
    ``export_graph``: also pickle ``value`` (with its graph) to ``output/.<name>.sis``."""
    if not isinstance(value, AbstractPath):
        raise TypeError(
            f"register_output({name!r}): expected a tk.Path or tk.Variable, got {type(value).__name__}"
        )
    graph.add_target(OutputTarget(name, value))
    if export_graph:
        dump(value, os.path.join(gs.BASE_DIR, gs.OUTPUT_DIR, f".{name}.sis"))


def register_callback(f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Call ``f(*args, **kwargs)`` once (in the manager) when every path inside the arguments is available."""
    if not callable(f):
        raise TypeError(f"register_callback needs a callable, got {type(f).__name__}")
    graph.add_target(CallbackTarget(f, args, kwargs))


def register_report(
    name: str,
    values: Any,
    template: str | None = None,
    required: Any = None,
    update_frequency: float = 300,
) -> None:
    """Write ``output/<name>`` from ``values`` (Variables resolved) once everything in it exists."""
    graph.add_target(ReportTarget(name, values, template, extract_paths(required) if required else set()))


def is_path(obj: Any) -> bool:
    return isinstance(obj, Path)


def input_path(path: Path | str) -> Path:
    """``path`` as a tk.Path (a str becomes one)."""
    if isinstance(path, str):
        return Path(path)
    if not isinstance(path, Path):
        raise TypeError(f"input_path needs a str or tk.Path, got {type(path).__name__}")
    return path


class RelPath:
    """Makes Paths relative to a package's directory, hashed as ``<package as a path>/<path>``."""

    def __init__(self, origin: str, hash_overwrite: str | None = None) -> None:
        self.origin = origin
        self.hash_overwrite = hash_overwrite

    def __call__(self, path: str, *args: Any, **kwargs: Any) -> Path:
        if self.hash_overwrite and "hash_overwrite" not in kwargs and len(args) < 3:
            kwargs["hash_overwrite"] = os.path.join(self.hash_overwrite, path)
        if not os.path.isabs(path):
            path = os.path.relpath(os.path.join(self.origin, path), gs.BASE_DIR)
        return Path(path, *args, **kwargs)


def setup_path(package: str) -> RelPath:
    """``rel = tk.setup_path(__package__)``: ``rel("data.txt")`` is a Path next to the package's
    ``__init__.py`` (found by importing it, so ``lm.data`` resolves to ``recipe/lm/data`` when ``recipe/``
    is an import path), hashed as ``lm/data/data.txt`` wherever the project lives (as the real one)."""
    if not package:
        raise ValueError("setup_path(__package__) only works in a module inside a package")
    module = importlib.import_module(package)
    if not getattr(module, "__file__", None):
        raise ValueError(f"setup_path: {package} has no __init__.py")
    origin = os.path.dirname(os.path.abspath(module.__file__))
    return RelPath(origin, hash_overwrite=package.replace(".", "/"))


def dump(obj: Any, filename: str) -> None:
    """Pickle ``obj`` into the gzip file ``filename`` (directories are created)."""
    if os.path.dirname(filename):
        os.makedirs(os.path.dirname(filename), exist_ok=True)
    with gzip.open(filename, "wb") as f:
        pickle.dump(obj, f)


def load_file(path: str) -> Any:
    """Unpickle a file written by ``dump`` (gzip or plain)."""
    with open(path, "rb") as f:
        zipped = f.read(2) == b"\x1f\x8b"
    with gzip.open(path, "rb") if zipped else open(path, "rb") as f:
        return pickle.load(f)


def export_graph(output_file: str | None = None) -> None:
    """One line ``<job id> <path>`` per job of the current graph (stdout or ``output_file``)."""
    out = open(output_file, "w", encoding="utf-8") if output_file else sys.stdout
    try:
        for job in graph.jobs():
            out.write(f"{job._sis_id()} {job._sis_path(abspath=True)!r}\n")
    finally:
        if output_file:
            out.close()


def import_work_directory(
    directories: str | list[str], mode: str = "dryrun", use_alias: bool = False
) -> list[str]:
    """Bring finished jobs of the current graph from other ``work/`` directories (``mode``: ``copy``,
    ``symlink``, ``hardlink`` or ``dryrun``; ``use_alias``: find them through ``alias/`` links of the other
    setup instead of their ids). Returns the job ids found."""
    import shutil

    from sisyphus.job import job_finished

    if mode not in ("copy", "symlink", "hardlink", "dryrun"):
        raise ValueError(f"import_work_directory: unknown mode {mode!r}")
    dirs = [directories] if isinstance(directories, str) else list(directories)
    imported: list[str] = []
    done: set[str] = set()
    while True:
        jobs = [j for j in graph.jobs() if j._sis_id() not in done]
        if not jobs:
            return imported
        for job in jobs:
            done.add(job._sis_id())
            local = job._sis_path(abspath=True)
            if os.path.exists(local):
                continue
            for d in dirs:
                if use_alias:
                    targets = {os.path.realpath(os.path.join(d, a)) for a in job.get_aliases() or ()}
                    targets = {t for t in targets if os.path.isdir(t)}
                    if len(targets) != 1:
                        continue
                    src = targets.pop()
                else:
                    src = os.path.realpath(os.path.join(d, job._sis_id()))
                if not (os.path.isdir(src) and job_finished(src)):
                    continue
                imported.append(job._sis_id())
                if mode != "dryrun":
                    os.makedirs(os.path.dirname(local), exist_ok=True)
                    if mode == "symlink":
                        os.symlink(src, local, target_is_directory=True)
                    else:
                        copy = os.link if mode == "hardlink" else shutil.copy2
                        shutil.copytree(src, local, symlinks=True, copy_function=copy)
                break


class _AsyncWait:
    """Awaitable that keeps ``obj``'s paths as manager targets until they are all available."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj
        self.target = WaitTarget(extract_paths(obj))

    def __await__(self) -> Generator[None, None, Any]:
        graph.add_target(self.target)
        while not self.target.done():
            yield None
        return self.obj


def async_run(obj: Any) -> _AsyncWait:
    """``await tk.async_run(obj)`` in an ``async def`` config: resumes once ``obj`` is computed."""
    return _AsyncWait(obj)


def run(obj: Any, quiet: bool = False) -> Any:
    """Run all jobs needed for ``obj`` with the configured engine, then return ``obj``."""
    from sisyphus.manager import Manager

    target = WaitTarget(extract_paths(obj))
    graph.add_target(target)
    try:
        Manager(graph, start=True, quiet=quiet, targets=[target]).run()
    finally:
        graph.remove_target(target)
    if not target.done():
        raise RuntimeError(f"tk.run: could not compute {obj!r} (see the manager output above)")
    return obj


async def async_gather(*args: Any) -> Any:
    """``await tk.async_gather(a, b, …)`` in an ``async def`` config: waits for all of them, returns the
    objects (one object if one was given)."""
    await async_run(list(args))
    return args[0] if len(args) == 1 else list(args)


def uncached_path(path: Path | str) -> str:
    return path.get_path() if isinstance(path, AbstractPath) else str(path)


def running_in_worker() -> bool:
    return os.environ.get("SIS_WORKER") == "1"


def running_in_manager() -> bool:
    """True inside ``sis manager`` and ``sis console`` (set by the command line)."""
    return os.environ.get("SIS_WORKER") != "1" and _in_manager


_in_manager = False


def load_job(path: str) -> Job:
    """Load a job from its directory (or an alias link to it)."""
    return _load_job(os.path.realpath(path))


def run_job(job: Job, task_name: str | None = None, task_id: int | None = None) -> None:
    """Run a job's tasks in this process (for the console and tests); writes the usual markers."""
    from sisyphus.worker import run_worker

    job._sis_setup_directory()
    for task in job._sis_tasks():
        if task_name is not None and task.name() != task_name:
            continue
        for i in task.task_ids() if task_id is None else [task_id]:
            cwd = os.getcwd()
            try:
                code = run_worker(job._sis_path(abspath=True), task.name(), i, redirect_output=False)
            finally:
                os.chdir(cwd)
            if code != 0:
                with open(task.path("error", i), encoding="utf-8") as f:
                    raise RuntimeError(f"{job} task {task.name()}.{i} failed:\n{f.read()}")


def remove_job_and_descendants(job_dir: str) -> list[str]:
    """Move ``job_dir`` and every job directory whose ``input/`` links to it aside (``.cleared.NNNN``)."""
    work = os.path.join(gs.BASE_DIR, gs.WORK_DIR)
    removed: list[str] = []
    todo = [os.path.realpath(job_dir)]
    while todo:
        current = todo.pop()
        if current in removed or not os.path.isdir(current):
            continue
        removed.append(current)
        for root, dirs, _ in os.walk(work):
            if os.path.basename(root) == gs.JOB_INPUT:
                for d in dirs:
                    if os.path.realpath(os.path.join(root, d)) == current:
                        todo.append(os.path.dirname(root))
                dirs[:] = []
    for d in removed:
        move_aside(d)
    return removed
