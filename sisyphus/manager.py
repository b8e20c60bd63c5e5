"""The manager: scans the state of every job the targets need, submits runnable tasks to the
engine, keeps ``alias/`` and ``output/`` up to date and prints the state display.

A pass: step async configs → job states → set up and submit runnable / resumable tasks (all
such ids of a task in one engine submission; a failed id with ``Task(tries=N)`` tries left is
runnable: its log is archived as ``log.<task>.<id>.error.NN`` and it is resubmitted) → update
outputs and reports → print changes and a summary. It exits when every target is
done, or when nothing can make progress (errors, non-resumable interrupts).
"""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from typing import Any, TextIO

from sisyphus import global_settings as gs
from sisyphus.engine import EngineBase, TaskCall, worker_command
from sisyphus.graph import Graph, _symlink
from sisyphus.job import Job, move_aside
from sisyphus.task import State, Task

# what a job's state is when its task ids are in several states: the first that occurs wins
_PRIORITY = [
    State.ERROR,
    State.RETRY_ERROR,
    State.RUNNING,
    State.QUEUE,
    State.INTERRUPTED_NOT_RESUMABLE,
    State.INTERRUPTED_RESUMABLE,
    State.RUNNABLE,
]
_SUMMARY_ORDER = [
    State.ERROR,
    State.RETRY_ERROR,
    State.INTERRUPTED_NOT_RESUMABLE,
    State.INTERRUPTED_RESUMABLE,
    State.HOLD,
    State.QUEUE,
    State.RUNNING,
    State.RUNNABLE,
    State.WAITING,
    State.FINISHED,
]


class Manager:
    """Drives the graph to completion with an engine (see module docstring)."""

    def __init__(
        self,
        graph: Graph,
        engine: EngineBase | None = None,
        start: bool = False,
        clear_errors: bool = False,
        clear_interrupts: bool = False,
        quiet: bool = False,
        targets: list[Any] | None = None,
        out: TextIO | None = None,
        interactive: bool = False,
    ) -> None:
        self.graph = graph
        self.engine = engine if engine is not None else gs.engine()
        self.start = start
        self.clear_errors = clear_errors
        self.clear_interrupts = clear_interrupts
        self.quiet = quiet
        self.targets = targets
        self.out = out or sys.stdout
        self.interactive = interactive  # -i: ask before each submission (yes / skip / never)
        self.never_submit: set[tuple[str, str]] = set()
        self.calls: dict[tuple[str, str], TaskCall] = {}
        self.last_states: dict[str, str] = {}
        self.reported: set[tuple[str, str]] = set()
        self.last_heartbeat = 0.0
        self.start_time = time.time()
        self.last_cleanup = 0.0
        self.http_server: Any = None
        self.last_states_by_job: dict[str, tuple[Job, str, str]] = {}  # for the status page

    # --- state ---------------------------------------------------------------------------
    def _call(self, job: Job, task: Task) -> TaskCall:
        key = (job._sis_id(), task.name())
        if key not in self.calls:
            job_dir = job._sis_path(abspath=True)
            self.calls[key] = TaskCall(
                job._sis_id(),
                job_dir,
                task.name(),
                task.task_ids(),
                task.rqmt(),
                gs.worker_wrapper(job, task.name(), worker_command(job_dir, task.name())),
            )
        return self.calls[key]

    def job_state(self, job: Job) -> tuple[str, Task | None, list[int]]:
        """(state, current task, ids of that task in the state) of a job."""
        if job._sis_finished():
            return State.FINISHED, None, []
        if job._sis_is_set_to_hold():
            return State.HOLD, None, []
        if job._sis_update_inputs():
            return State.WAITING, None, []
        for task in job._sis_tasks():
            if task.finished():
                continue
            call = self._call(job, task)
            by_state: dict[str, list[int]] = defaultdict(list)
            for i in task.task_ids():
                by_state[task.state(i, self.engine.task_state(call, i))].append(i)
            for state in _PRIORITY:
                if state in by_state:
                    return state, task, by_state[state]
        # every task finished: job._sis_finished() writes the marker on the next scan
        return (State.FINISHED if job._sis_finished() else State.RUNNABLE), None, []

    def scan(self) -> dict[str, list[tuple[Job, Task | None, list[int]]]]:
        states: dict[str, list[tuple[Job, Task | None, list[int]]]] = defaultdict(list)
        self.engine.reset_cache()
        for job in self.graph.jobs():
            state, task, ids = self.job_state(job)
            states[state].append((job, task, ids))
        return states

    # --- actions -------------------------------------------------------------------------
    def submit(self, job: Job, task: Task, ids: list[int]) -> bool:
        """Submit ``ids`` of ``task`` as one engine submission; False if none was ready."""
        if not os.path.exists(job._sis_path(gs.JOB_SAVE, abspath=True)):
            job._sis_setup_directory()
        call = self._call(job, task)
        ids = [i for i in ids if self._ready_to_submit(job, task, i)]
        if not ids or not self._confirm(job, task, ids):
            return False
        sub = TaskCall(call.job_id, call.job_dir, call.task_name, ids, call.rqmt, call.command)
        info = self.engine.submit(sub)
        # the real Sisyphus' format, a Python literal per submission: (ids, rqmt + engine info)
        record = {**call.rqmt, "engine_info": info, "engine_name": info.split(" ", 1)[0]}
        record["completed_fraction"] = job.completed_fraction()
        record["submitted"] = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(task.path("submit_log"), "a", encoding="utf-8") as f:
            f.write(f"{(ids, record)!r}\n")
        for i in ids:  # a resubmitted task starts over: old markers of an interrupted run go
            stale = task.path("usage", i)
            if os.path.exists(stale):
                os.unlink(stale)
        return True

    def _confirm(self, job: Job, task: Task, ids: list[int]) -> bool:
        """With ``-i``: ask "(Yes/skip/never)" before submitting, as the real manager does."""
        if not self.interactive:
            return True
        key = (job._sis_id(), task.name())
        if key in self.never_submit:
            return False
        try:
            answer = input(f"Submit {self._name(job)} {task.name()}{ids}? (Yes/skip/never) ").strip().lower()
        except EOFError:
            answer = "skip"
        if answer in ("", "y", "yes"):
            return True
        if answer in ("n", "never"):
            self.never_submit.add(key)
        return False

    def _ready_to_submit(self, job: Job, task: Task, task_id: int) -> bool:
        """False for a failed id whose retry (``Task(tries=N)``) could not be started now."""
        if not task.error(task_id):
            return True
        reason = task.start_retry(task_id)
        if reason is None:
            return False
        used = task.tries_used(task_id)
        self._print(
            f"  retry: {self._name(job)} {task.name()}.{task_id} try {used + 1}/{task.tries} "
            f"(try {used} failed: {reason})"
        )
        return True

    def update_aliases(self, jobs: list[Job]) -> None:
        for job in jobs:
            for alias in job.get_aliases():
                _symlink(job._sis_path(abspath=True), os.path.join(gs.BASE_DIR, gs.ALIAS_DIR, alias))

    def clear(self, job: Job, why: str) -> None:
        """``-co`` / ``-cio``: move the job aside to rerun it from scratch; but a job with a finished
        resumable task (a training) keeps its directory and reruns only its unfinished tasks."""
        kept = [t.name() for t in job._sis_tasks() if t.resumable() and t.finished()]
        if kept:
            from sisyphus.task import reset_task_id

            job_dir = job._sis_path(abspath=True)
            reset = []
            for task in job._sis_tasks():
                if not task.finished():
                    reset += [
                        f"{task.name()}.{i}"
                        for i in task.task_ids()
                        if reset_task_id(job_dir, task.name(), i)
                    ]
                    if os.path.exists(task.path("submit_log")):
                        os.unlink(task.path("submit_log"))
            self._print(
                f"cleared in place ({why}): {job._sis_id()} reruns {', '.join(reset) or 'nothing'}; "
                f"keeps finished {', '.join(kept)}"
            )
            return
        new = move_aside(job._sis_path(abspath=True))
        job.__dict__.pop("_sis_task_cache", None)
        job._sis_is_finished = False
        self.calls = {k: v for k, v in self.calls.items() if k[0] != job._sis_id()}
        self._print(f"cleared ({why}): {job._sis_id()} -> {os.path.basename(new)}")

    def step_coroutines(self) -> None:
        for coro in list(self.graph.coroutines):
            try:
                coro.send(None)
            except StopIteration:
                self.graph.coroutines.remove(coro)

    def _coroutines_progress(self) -> bool:
        """Step async configs once more; True if that registered something new or ended one."""
        before = (len(self.graph.targets), len(self.graph.coroutines))
        self.step_coroutines()
        return (len(self.graph.targets), len(self.graph.coroutines)) != before

    def cleanup(self, jobs: list[Job], force: bool = False) -> int:
        """The real Sisyphus' auto-cleanup (``gs.JOB_AUTO_CLEANUP``): finished jobs get their ``work/``
        removed and their logs, markers and ``job.save`` packed into ``finished.tar.gz``; at most once per
        ``gs.JOB_CLEANER_INTERVAL`` unless ``force``. Returns how many jobs were cleaned."""
        if not gs.JOB_AUTO_CLEANUP or not self.start:
            return 0
        now = time.time()
        if not force and now - self.last_cleanup < gs.JOB_CLEANER_INTERVAL:
            return 0
        self.last_cleanup = now
        return sum(job._sis_cleanup() for job in jobs if job._sis_cleanable())

    # --- display -------------------------------------------------------------------------
    def _print(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.out, flush=True)

    @staticmethod
    def _name(job: Job) -> str:
        aliases = sorted(job.get_aliases())
        return f"{job._sis_id()} [{aliases[0]}]" if aliases else job._sis_id()

    def display(self, states: dict[str, list[tuple[Job, Task | None, list[int]]]]) -> None:
        changed = []
        for state in _SUMMARY_ORDER:
            for job, task, ids in states.get(state, []):
                if self.last_states.get(job._sis_id()) != state:
                    where = f" {task.name()}{ids}" if task is not None and ids else ""
                    changed.append(f"  {state}: {self._name(job)}{where}")
                self.last_states[job._sis_id()] = state
        now = time.time()
        heartbeat = now - self.last_heartbeat > gs.WAIT_PERIOD_HEARTBEAT
        if not changed and not heartbeat:
            return
        for line in changed:
            self._print(line)
        summary = " ".join(f"{s}({len(states[s])})" for s in _SUMMARY_ORDER if states.get(s))
        self._print(f"[{time.strftime('%H:%M:%S')} +{now - self.start_time:.0f}s] {summary}")
        if heartbeat:  # progress of what runs, at most once per heartbeat period
            self.last_heartbeat = now
            for job, task, ids in states.get(State.RUNNING, []):
                name = task.name() if task else ""
                self._print(f"    running {self._name(job)} {name}{ids}{self._progress(job, task, ids)}")

    @staticmethod
    def _progress(job: Job, task: Task | None, ids: list[int]) -> str:
        parts = []
        frac = job.completed_fraction()
        if frac is not None:
            parts.append(f"{100 * frac:.0f}%")
        info = job.info()
        if info:
            parts.append(info)
        if task is not None and ids:
            try:
                parts.append(f"{time.time() - os.path.getmtime(task.path('lock', ids[0])):.0f}s")
            except OSError:
                pass
        return (" (" + ", ".join(parts) + ")") if parts else ""

    def report_problems(self, states: dict[str, list[tuple[Job, Task | None, list[int]]]]) -> None:
        """Print why each task id failed or was interrupted (``Task.failure_reason``), once per run
        of it (an interrupted resumable task is reported again after its next submission)."""
        for state in (
            State.ERROR,
            State.RETRY_ERROR,
            State.INTERRUPTED_NOT_RESUMABLE,
            State.INTERRUPTED_RESUMABLE,
        ):
            for job, task, ids in states.get(state, []):
                if task is None:
                    continue
                key = (job._sis_id(), state, task.name(), task.submit_count())
                if key in self.reported:
                    continue
                self.reported.add(key)
                if state == State.ERROR:
                    gs.on_job_failure(job)
                for i in ids:
                    self._print(
                        f"  {state}: {self._name(job)} {task.name()}.{i}: {task.failure_reason(i)}\n"
                        f"      log: {task.path('log', i)}"
                    )

    def report_missing_outputs(self) -> int:
        """Registered outputs whose job finished but whose file is gone (deleted by hand, a damaged
        disk): reported once each; returns how many there are now."""
        from sisyphus.graph import OutputTarget

        missing = 0
        for target in self.graph.targets:
            if not isinstance(target, OutputTarget) or target.path.creator is None:
                continue
            path = target.path.get_path()
            if not target.done() or os.path.exists(path):
                continue
            missing += 1
            key = ("missing", path)
            if key not in self.reported:
                self.reported.add(key)
                self._print(
                    f"  missing output: output/{target.name} -> {path}: job {self._name(target.path.creator)} "
                    f"finished but the file is gone; move the job directory aside (or delete it) to rerun it"
                )
        return missing

    # --- main loop -----------------------------------------------------------------------
    def targets_done(self) -> bool:
        targets = self.targets if self.targets is not None else self.graph.targets
        return all(t.done() for t in targets) and (self.targets is not None or not self.graph.coroutines)

    def run(self) -> int:
        """Run passes until the targets are done (0) or nothing can progress (1)."""
        self.engine.start_engine()
        try:
            return self._loop()
        finally:
            self.engine.stop_engine()
            if self.http_server is not None:
                self.http_server.stop()

    def serve_http(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve the status page (``sis m --http PORT``) while the manager runs; returns the port."""
        from sisyphus.http_server import StatusServer

        self.http_server = StatusServer(self, port, host)
        return self.http_server.port

    def _loop(self) -> int:
        self.update_aliases(self.graph.jobs())
        while True:
            self.step_coroutines()
            self.engine.wakeup.clear()
            states = self.scan()
            if self.clear_errors or self.clear_interrupts:
                kinds = ([State.ERROR, State.RETRY_ERROR] if self.clear_errors else []) + (
                    [State.INTERRUPTED_NOT_RESUMABLE] if self.clear_interrupts else []
                )
                cleared = [(j, s) for s in kinds for j, _, _ in states.get(s, [])]
                for job, state in cleared:
                    self.clear(job, state)
                self.clear_errors = self.clear_interrupts = False
                if cleared:
                    states = self.scan()
            jobs = [j for entries in states.values() for j, _, _ in entries]
            self.last_states_by_job = {
                j._sis_id(): (j, state, t.name() if t is not None else "")
                for state, entries in states.items()
                for j, t, _ in entries
            }
            self.update_aliases(jobs)
            for job, _, _ in states.get(State.FINISHED, []):
                if self.last_states.get(job._sis_id()) not in (None, State.FINISHED):
                    gs.on_job_finished(job)
            self.graph.update_targets()
            self.display(states)
            self.report_problems(states)
            missing = self.report_missing_outputs()
            if self.targets_done():
                self.cleanup([j for j, _, _ in states.get(State.FINISHED, [])], force=True)
                if missing:
                    self._print(
                        f"All targets are done. But {missing} registered output(s) are missing (see above)."
                    )
                else:
                    self._print("All targets are done.")
                return 0
            self.cleanup([j for j, _, _ in states.get(State.FINISHED, [])])
            if not self.start:
                return 0
            submitted = deferred = False
            for state in (State.RUNNABLE, State.INTERRUPTED_RESUMABLE):
                for job, task, ids in states.get(state, []):
                    if task is not None and (job._sis_id(), task.name()) not in self.never_submit:
                        if self.submit(job, task, ids):
                            submitted = True
                        else:  # a retry whose task lock another process held: next pass
                            deferred = True
            busy = deferred or any(states.get(s) for s in (State.RUNNING, State.QUEUE))
            grown = len(self.graph.jobs()) != len(jobs)  # update() of a job added new input jobs
            if not submitted and not busy and not grown and not self._coroutines_progress():
                stuck = sum(
                    len(states.get(s, []))
                    for s in (State.ERROR, State.RETRY_ERROR, State.INTERRUPTED_NOT_RESUMABLE, State.HOLD)
                )
                self._print(
                    f"Nothing left to run: {stuck} job(s) in error, interrupted or on hold block "
                    f"the remaining targets. Fix the cause, then rerun with -co / -cio or "
                    f"`sis retry <job dir>`."
                )
                return 1
            if submitted or grown:
                continue
            self.engine.wakeup.wait(gs.WAIT_PERIOD_BETWEEN_CHECKS)
