"""``Task``: one step of a job, run by a worker process once per task id.

The task function is called once per element of ``args`` (unpacked if it is a list or tuple).
Without ``parallel`` every element is its own task id (1..len(args)), i.e. its own worker
process; ``parallel=N`` makes N task ids instead, task id k running the k-th of N contiguous
chunks of ``args`` one after the other (the first ``len(args) % N`` chunks one element longer,
as in the real Sisyphus; ids beyond ``len(args)`` run nothing). The manager submits all runnable
ids of a task in one engine submission (a Slurm array). ``tries=N``: a failed task id is
resubmitted by the manager until it has run N times; the log of each failed try is kept as
``log.<name>.<id>.error.NN``. ``continuable=True`` is rejected (see ``Task.__init__``).
``resume`` names the function that continues an interrupted run; its presence makes an
interrupted task resubmittable (the worker calls the start function, as the real one does).
``mini_task`` routes the task to the engine named ``"short"``; an interrupted mini task (cheap and
idempotent: a plot, a config file) is resubmitted like a resumable one instead of blocking its job.

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


_GENERIC_ERRORS = {"CalledProcessError", "SystemExit", "KeyboardInterrupt"}
_NOISE = (
    "Traceback (most recent call last):",
    "During handling of the above exception",
    "The above exception",
)


def _log_tail(path: str, size: int = 65536) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - size))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def last_meaningful_line(text: str) -> str:
    """The last line of a log that says something: not empty, not a worker ``===`` line, not part of a
    traceback's frames (indented lines, ``Traceback ...``, ``^^^`` markers); typically the exception
    message."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)  # colours (RETURNN's tracebacks)
    for line in reversed(text.splitlines()):
        stripped = line.strip()
        if not stripped or stripped.startswith("===") or line[:1].isspace() or stripped.startswith(_NOISE):
            continue
        if set(stripped) <= set("^~ "):
            continue
        return stripped[:500]
    return ""


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
        if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 0:
            raise ValueError(
                f"Task {start!r}: parallel must be an int >= 0 (0: one task id per arg), got {parallel!r}"
            )
        if isinstance(tries, bool) or not isinstance(tries, int) or tries < 1:
            raise ValueError(f"Task {start!r}: tries must be an int >= 1, got {tries!r}")
        if continuable:
            raise ValueError(
                f"Task {start!r}: continuable=True is not supported by this workflow core. In the real "
                f"Sisyphus it only stops the worker from writing the finished marker, so the job never "
                f"finishes and the task is resubmitted after every successful run; use resume= for a task "
                f"that continues an interrupted run, or a new job (e.g. more epochs) to train further."
            )
        self.mini_task = mini_task
        self._update_rqmt = update_rqmt
        self._parallel = parallel or len(self._args)
        self.tries = tries
        self.continuable = False
        self._job: Job | None = None

    def set_job(self, job: Job) -> None:
        self._job = job

    def name(self) -> str:
        return self._start

    def resumable(self) -> bool:
        return self._resume is not None

    def task_ids(self) -> list[int]:
        return list(range(1, self._parallel + 1))

    def arg_indices(self, task_id: int) -> range:
        """Indices into ``args`` that task id ``task_id`` runs (see module docstring)."""
        if not 1 <= task_id <= self._parallel:
            raise ValueError(f"Task {self._start!r}: no task id {task_id} (ids 1..{self._parallel})")
        size, longer = divmod(len(self._args), self._parallel)
        first = (task_id - 1) * size + min(task_id - 1, longer)
        return range(first, first + size + (1 if task_id <= longer else 0))

    def rqmt(self) -> dict[str, Any]:
        """Requirements with defaults, job-level overrides (``set_rqmt``) and parsed units."""
        assert self._job is not None
        rqmt = {**gs.DEFAULT_RQMT, **self._rqmt}
        overwrite = self._job._sis_task_rqmt_overwrite.get(self._start)
        if overwrite is not None:  # (rqmt, replace) from Job.set_rqmt / update_rqmt
            rqmt = {**gs.DEFAULT_RQMT, **overwrite[0]} if overwrite[1] else {**rqmt, **overwrite[0]}
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
            return State.RUNNABLE if self._try_log_slot(task_id) else State.ERROR
        if engine_state in (State.QUEUE, State.RUNNING):
            return engine_state
        if task_lock_held(self.path("lock", task_id)):
            return State.RUNNING
        if os.path.exists(self.path("log", task_id)) and self.live_processes(task_id):
            return State.RUNNING  # the worker is gone, a process it started (RETURNN...) is not
        if not os.path.exists(self.path("log", task_id)):
            return State.RUNNABLE
        if self.submit_count() > gs.MAX_SUBMIT_RETRIES:
            return State.RETRY_ERROR
        if self.resumable() or self.mini_task:  # a mini task is cheap and idempotent: rerun alone
            return State.INTERRUPTED_RESUMABLE
        return State.INTERRUPTED_NOT_RESUMABLE

    def live_processes(self, task_id: int) -> list[int]:
        """Pids of live processes on this machine that a run of this task id started."""
        from sisyphus.process_tree import find_task_processes, task_key

        assert self._job is not None
        return find_task_processes(task_key(self._job._sis_path(abspath=True), self._start, task_id))

    def failure_reason(self, task_id: int) -> str:
        """Why a task id failed or was interrupted, in one line: the error marker's exception, with
        the last meaningful line of the log when the exception alone does not say why (a subprocess's
        exit status, ``SystemExit``); for an interrupted run the last meaningful line of its log."""
        error = self.path("error", task_id)
        log = _log_tail(self.path("log", task_id))
        if os.path.exists(error):
            with open(error, encoding="utf-8", errors="replace") as f:
                first = (f.read().strip().splitlines() or [""])[0].strip()
            if first.split(":", 1)[0] not in _GENERIC_ERRORS and first.split(":", 1)[-1].strip():
                return first
            if "Traceback (most recent call last):" in log:  # the worker's own traceback is the last one
                log = log[: log.rindex("Traceback (most recent call last):")]
            cause = last_meaningful_line(log)
            return f"{first} (log: {cause})" if cause else first
        cause = last_meaningful_line(log)
        return "no error marker: the worker was killed or lost" + (
            f"; last log line: {cause}" if cause else ""
        )

    # --- tries ---------------------------------------------------------------------------
    def _try_log_slot(self, task_id: int) -> str | None:
        """Where the log of a failed try goes if the task id has tries left: the first free
        ``log.<name>.<id>.error.NN`` with NN < tries (``sis retry`` archives logs the same way)."""
        log = self.path("log", task_id)
        for n in range(1, self.tries):
            if not os.path.exists(f"{log}.error.{n:02d}"):
                return f"{log}.error.{n:02d}"
        return None

    def start_retry(self, task_id: int) -> str | None:
        """Make a failed task id with tries left runnable again: its log (or, without a log, its
        error marker) moves to the next ``log.<name>.<id>.error.NN`` and the error marker goes.
        Returns the first line of the error, or None if there was nothing to retry. Done under the
        task's worker lock, so two managers cannot archive the same failure twice."""
        from sisyphus.worker import release_task_lock, try_task_lock

        error = self.path("error", task_id)
        fd = try_task_lock(self.path("lock", task_id))
        if fd is None:
            return None  # a worker (or another manager's retry) holds it
        try:
            slot = self._try_log_slot(task_id)
            if slot is None or not os.path.exists(error):
                return None
            with open(error, encoding="utf-8", errors="replace") as f:
                reason = (f.read().strip().splitlines() or [""])[0]
            log = self.path("log", task_id)
            if os.path.exists(log):
                os.replace(log, slot)
                os.unlink(error)
            else:
                os.replace(error, slot)
            return reason
        finally:
            release_task_lock(fd)

    def tries_used(self, task_id: int) -> int:
        """How many failed tries of ``task_id`` have been archived (see ``start_retry``)."""
        log = self.path("log", task_id)
        return sum(os.path.exists(f"{log}.error.{n:02d}") for n in range(1, self.tries))

    # --- running -------------------------------------------------------------------------
    def run(self, task_id: int) -> None:
        """Call the task function for each arg of ``task_id`` (see module docstring; resume only
        marks resubmittability)."""
        assert self._job is not None
        func = getattr(self._job, self._start)
        indices = self.arg_indices(task_id)
        for i in indices:
            arg = self._args[i]
            if len(indices) > 1:
                print(f"=== {self._start} arg {i + 1}/{len(self._args)}: {arg!r}", flush=True)
            if isinstance(arg, (list, tuple)):
                func(*arg)
            else:
                func(arg)

    def __repr__(self) -> str:
        return f"Task({self._start!r}, ids={self._parallel}, args={len(self._args)})"


def reset_task_id(job_dir: str, task_name: str, task_id: int) -> str | None:
    """Make a failed or interrupted (not finished, not running) task id runnable again in place:
    its log is kept as ``log.<task>.<id>.error.NN`` (failed) or ``.interrupted.NN`` (interrupted),
    the error marker goes, outputs of the job stay. Done under the task's lock; returns what was reset
    ("error" / "interrupted") or None (finished, running, never run)."""
    from sisyphus.process_tree import find_task_processes, task_key
    from sisyphus.worker import release_task_lock, try_task_lock

    def path(kind: str) -> str:
        return os.path.join(job_dir, f"{kind}.{task_name}.{task_id}")

    if os.path.exists(path(gs.STATE_FINISHED)):
        return None
    fd = try_task_lock(path("lock"))
    if fd is None:
        return None
    try:
        if find_task_processes(task_key(job_dir, task_name, task_id)):
            return None  # a process of an earlier run still works in the job directory
        kind = "error" if os.path.exists(path("error")) else "interrupted"
        log = path("log")
        if kind == "interrupted" and not os.path.exists(log):
            return None
        if os.path.exists(log):
            n = 1
            while os.path.exists(f"{log}.{kind}.{n:02d}"):
                n += 1
            os.replace(log, f"{log}.{kind}.{n:02d}")
        if kind == "error":
            os.unlink(path("error"))
        return kind
    finally:
        release_task_lock(fd)
