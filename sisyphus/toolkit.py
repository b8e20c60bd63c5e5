"""``tk``: the functions configs and recipes call (register outputs and reports, set up
package-relative paths, wait for results in async configs, run jobs from Python)."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from typing import Any

from sisyphus import global_settings as gs
from sisyphus.graph import OutputTarget, ReportTarget, WaitTarget, graph
from sisyphus.job import Job, extract_paths, move_aside
from sisyphus.job import load_job as _load_job
from sisyphus.job_path import Path, Variable, VariableNotSet

__all__ = [
    "Path",
    "Variable",
    "VariableNotSet",
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


def register_output(name: str, value: Path, export_graph: bool = False) -> None:
    """Link ``output/<name>`` to ``value`` once it exists; the manager works towards it."""
    if not isinstance(value, Path):
        raise TypeError(f"register_output({name!r}): expected a tk.Path, got {type(value).__name__}")
    graph.add_target(OutputTarget(name, value))


def register_report(
    name: str,
    values: Any,
    template: str | None = None,
    required: Any = None,
    update_frequency: float = 300,
) -> None:
    """Write ``output/<name>`` from ``values`` (Variables resolved) once everything in it exists."""
    graph.add_target(ReportTarget(name, values, template, extract_paths(required) if required else set()))


def setup_path(package: str) -> Callable[[str], Path]:
    """Paths relative to ``package``'s directory, hashed independently of where the project lives."""
    pkg_dir = package.replace(".", "/")

    def make_path(path: str, **kwargs: Any) -> Path:
        return Path(os.path.join(pkg_dir, path), hash_overwrite=(None, f"{package}/{path}"), **kwargs)

    return make_path


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


def uncached_path(path: Path | str) -> str:
    return path.get_path() if isinstance(path, Path) else str(path)


def running_in_worker() -> bool:
    return os.environ.get("SIS_WORKER") == "1"


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
