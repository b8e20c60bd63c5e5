"""``Task``: one step of a job, run by a worker process once per task id.

Each element of ``args`` is one task id (1..N) whose function is called with that element
(unpacked if it is a list or tuple). ``resume`` names the function that continues an
interrupted run; its presence makes an interrupted task resubmittable. ``mini_task`` routes
the task to the engine named ``"short"``.

Marker files in the job directory, per task id: ``log.<name>.<id>``, ``usage.<name>.<id>``,
``finished.<name>.<id>``, ``error.<name>.<id>``; ``submit_log.<name>`` records submissions.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from sisyphus import global_settings as gs

if TYPE_CHECKING:
    from sisyphus.job import Job


class State:
    """Job and task states as shown by the manager."""

    FINISHED = "finished"
    ERROR = "error"
    RETRY_ERROR = "retry_error"
    QUEUE = "queue"
    RUNNING = "running"
    RUNNABLE = "runnable"
    WAITING = "waiting"
    HOLD = "hold"
    INTERRUPTED_RESUMABLE = "interrupted_resumable"
    INTERRUPTED_NOT_RESUMABLE = "interrupted_not_resumable"


def parse_mem_gb(value: Any) -> float:
    """Memory in GB from a number (GB) or a string such as ``"4G"``, ``"500M"``, ``"2T"``."""
    if isinstance(value, (int, float)):
        return float(value)
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)B?\s*", str(value), re.IGNORECASE)
    if not m:
        raise ValueError(f"rqmt 'mem': cannot parse {value!r} (use GB as a number or e.g. '4G')")
    scale = {"": 1.0, "K": 1 / 1024**2, "M": 1 / 1024, "G": 1.0, "T": 1024.0}[m.group(2).upper()]
    return float(m.group(1)) * scale


def parse_time_hours(value: Any) -> float:
    """Time in hours from a number (hours) or ``"H:M:S"`` / ``"H:M"``."""
    if isinstance(value, (int, float)):
        return float(value)
    parts = str(value).split(":")
    if not 1 <= len(parts) <= 3 or not all(p.strip().replace(".", "", 1).isdigit() for p in parts):
        raise ValueError(f"rqmt 'time': cannot parse {value!r} (use hours as a number or 'H:M:S')")
    nums = [float(p) for p in parts] + [0.0] * (3 - len(parts))
    return nums[0] + nums[1] / 60 + nums[2] / 3600


class Task:
    """A step of a job (see module docstring)."""

    def __init__(
        self,
        start: str,
        resume: str | None = None,
        rqmt: dict[str, Any] | None = None,
        args: list[Any] | None = None,
        mini_task: bool = False,
        update_rqmt: Any = None,
        parallel: int = 0,
        tries: int = 1,
        continuable: bool = False,
    ) -> None:
        self._start = start
        self._resume = resume
        self._rqmt = dict(rqmt or {})
        if mini_task:
            self._rqmt = {**gs.MINI_TASK_RQMT, **self._rqmt, "engine": "short"}
        self._args = [[]] if args is None else list(args)
        if not self._args:
            raise ValueError(f"Task {start!r}: args must not be empty")
        self.mini_task = mini_task
        self._update_rqmt = update_rqmt
        self.parallel = parallel
        self.tries = tries
        self.continuable = continuable
        self._job: Job | None = None

    def set_job(self, job: Job) -> None:
        self._job = job

    def name(self) -> str:
        return self._start

    def resumable(self) -> bool:
        return self._resume is not None

    def task_ids(self) -> list[int]:
        return list(range(1, len(self._args) + 1))

    def rqmt(self) -> dict[str, Any]:
        """Requirements with defaults, job-level overrides (``set_rqmt``) and parsed units."""
        assert self._job is not None
        rqmt = {**gs.DEFAULT_RQMT, **self._rqmt, **self._job._sis_rqmt_overrides.get(self._start, {})}
        if self._update_rqmt is not None:
            rqmt = self._update_rqmt(rqmt)
        rqmt["mem"] = parse_mem_gb(rqmt["mem"])
        rqmt["time"] = parse_time_hours(rqmt["time"])
        return gs.check_engine_limits(rqmt, self)

    # --- files ---------------------------------------------------------------------------
    def path(self, kind: str, task_id: int | None = None) -> str:
        assert self._job is not None
        name = f"{kind}.{self._start}" if task_id is None else f"{kind}.{self._start}.{task_id}"
        return self._job._sis_path(name, abspath=True)

    def finished(self, task_id: int | None = None) -> bool:
        ids = self.task_ids() if task_id is None else [task_id]
        return all(os.path.exists(self.path(gs.STATE_FINISHED, i)) for i in ids)

    def error(self, task_id: int) -> bool:
        return os.path.exists(self.path("error", task_id))

    def submit_count(self) -> int:
        try:
            with open(self.path("submit_log"), encoding="utf-8") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def state(self, task_id: int, engine_state: str | None) -> str:
        """State of one task id from its markers and what the engine knows about it."""
        from sisyphus.worker import task_lock_held

        if os.path.exists(self.path(gs.STATE_FINISHED, task_id)):
            return State.FINISHED
        if os.path.exists(self.path("error", task_id)):
            return State.ERROR
        if engine_state in (State.QUEUE, State.RUNNING):
            return engine_state
        if task_lock_held(self.path("lock", task_id)):
            return State.RUNNING
        if not os.path.exists(self.path("log", task_id)):
            return State.RUNNABLE
        if self.submit_count() > gs.MAX_SUBMIT_RETRIES:
            return State.RETRY_ERROR
        return State.INTERRUPTED_RESUMABLE if self.resumable() else State.INTERRUPTED_NOT_RESUMABLE

    # --- running -------------------------------------------------------------------------
    def run(self, task_id: int) -> None:
        """Call the task function for ``task_id`` (resume only marks resubmittability)."""
        assert self._job is not None
        arg = self._args[task_id - 1]
        func = getattr(self._job, self._start)
        if isinstance(arg, (list, tuple)):
            func(*arg)
        else:
            func(arg)

    def __repr__(self) -> str:
        return f"Task({self._start!r}, ids={len(self._args)})"
