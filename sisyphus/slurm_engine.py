"""``SlurmEngine``: runs tasks as Slurm array jobs (``sbatch``), tracks them with ``squeue``.

Submission: one ``sbatch`` per call, an array job whose indices are the task ids::

    sbatch --parsable -J <job id>.<task> -a <ids> --cpus-per-task=C --mem=<MB>M --time=<min>
           [--gres=gpu:[<gpu_name>:]G] [--nodes=N --ntasks-per-node=1] [--partition=P] <sbatch_args>
           -o <job dir>/engine/<task>.%a.slurm-%A.log --chdir=<base dir> --export=ALL,...
           --wrap='exec <worker command> "$SLURM_ARRAY_TASK_ID" --redirect_output'

rqmt keys: ``cpu`` (per task/node), ``mem`` (GB per node), ``time`` (hours), ``gpu`` (per node),
``gpu_name``, ``multi_node_slots`` (nodes; the worker runs once, on the first node, and the task
spreads over the others itself, e.g. with ``srun torchrun``), ``partition`` and ``sbatch_args``.

State: ``squeue -h --me -t all --array`` once per manager pass (``reset_cache`` starts a pass),
matched by job name, the newest Slurm job per (name, array index). Queued and running jobs are
found by name, so a restarted manager does not submit them again. A job that ended killed
(CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, ...; or FAILED with slurmstepd's "exceeded memory
limit" in its output) while its task has neither a finished nor an error marker gets an
``error.<task>.<id>`` marker whose first line is the scheduler's reason; only jobs listed in the
task's ``submit_log`` count, so the stale record of a job from before ``-co``/``sis retry`` is ignored.
When Slurm has already forgotten the job (``MinJobAge``), the kill lines of its output decide.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from sisyphus import global_settings as gs
from sisyphus.engine import EngineBase, TaskCall
from sisyphus.task import State, parse_mem_gb, parse_time_hours

# squeue states of jobs that still hold or wait for resources
_ACTIVE = {
    "PENDING": State.QUEUE,
    "CONFIGURING": State.QUEUE,
    "REQUEUED": State.QUEUE,
    "REQUEUE_HOLD": State.QUEUE,
    "REQUEUE_FED": State.QUEUE,
    "RESV_DEL_HOLD": State.QUEUE,
    "SPECIAL_EXIT": State.QUEUE,
    "RUNNING": State.RUNNING,
    "COMPLETING": State.RUNNING,
    "SUSPENDED": State.RUNNING,
    "STOPPED": State.RUNNING,
    "SIGNALING": State.RUNNING,
    "STAGE_OUT": State.RUNNING,
    "RESIZING": State.RUNNING,
}
# ended states that mean the scheduler (or an admin) ended the job
_KILLED = {
    "CANCELLED": "cancelled",
    "TIMEOUT": "time limit exceeded",
    "OUT_OF_MEMORY": "memory limit exceeded",
    "NODE_FAIL": "node failure",
    "BOOT_FAIL": "node boot failure",
    "PREEMPTED": "preempted",
    "DEADLINE": "deadline reached",
    "REVOKED": "revoked",
}
_STEPD_LINE = re.compile(r"^(?:slurmstepd|srun)(?:-[^:]*)?: error: (.*)$")
_JOB_ID = re.compile(r"\bslurm job_id=(\d+)\b")
_SQUEUE_FORMAT = "%F|%K|%T|%r|%j"


@dataclass
class SlurmJob:
    """One array element as squeue reports it."""

    job_id: int
    task_id: int
    state: str
    reason: str


def job_name(call: TaskCall) -> str:
    """Slurm job name of a task: ``<job id>.<task>`` with characters other than ``[\\w./+-]`` as ``_``."""
    return re.sub(r"[^\w./+-]", "_", f"{call.job_id}.{call.task_name}")


def array_spec(task_ids: list[int]) -> str:
    """Array indices as Slurm ranges, e.g. [1, 2, 3, 5] -> ``1-3,5``."""
    ids = sorted(set(task_ids))
    parts: list[str] = []
    start = prev = ids[0]
    for i in [*ids[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(parts)


def batch_log(call: TaskCall, task_id: int, slurm_job_id: int | str) -> str:
    """Path of the Slurm output of one array element (sbatch ``-o`` with %a/%A filled in)."""
    return os.path.join(call.job_dir, gs.ENGINE_DIR, f"{call.task_name}.{task_id}.slurm-{slurm_job_id}.log")


def killed_reason(state: str | None, output: str, rqmt: dict[str, Any]) -> str | None:
    """Why Slurm ended a job, from its final ``state`` (None: no longer known to Slurm) and the
    slurmstepd lines of its ``output``; None if it was not killed by the scheduler."""
    details = []
    for line in output.splitlines():
        m = _STEPD_LINE.match(line.strip())
        if m and m.group(1) not in details:
            details.append(m.group(1))
    text = " ".join(details)
    if state == "OUT_OF_MEMORY" or "exceeded memory limit" in text or "oom-kill" in text.lower():
        kind = f"memory limit exceeded (rqmt mem={rqmt.get('mem')} GB)"
    elif state == "TIMEOUT" or "DUE TO TIME LIMIT" in text:
        kind = f"time limit exceeded (rqmt time={rqmt.get('time')} h)"
    elif state == "NODE_FAIL" or "NODE FAILURE" in text:
        kind = _KILLED["NODE_FAIL"]
    elif state in _KILLED:
        kind = _KILLED[state]
    elif state is None and re.search(r"\*\*\* (JOB|STEP) \S+ ON \S+ CANCELLED", text):
        kind = _KILLED["CANCELLED"]
    else:
        return None
    return f"{kind}" + (f" [{'; '.join(details)}]" if details else "")


class SlurmEngine(EngineBase):
    """Submits tasks to Slurm (see module docstring). ``default_rqmt`` fills keys that a task's rqmt
    lacks (e.g. ``gpu_name``; ``cpu``/``mem``/``time`` come with every task, from gs.DEFAULT_RQMT);
    ``sbatch_args`` are added to every submission; ``partition`` unless the rqmt names one."""

    def __init__(
        self,
        partition: str | None = None,
        default_rqmt: dict[str, Any] | None = None,
        sbatch_args: list[str] | str | None = None,
        squeue_retries: int = 3,
    ) -> None:
        super().__init__()
        self.partition = partition
        self.default_rqmt = dict(default_rqmt or {})
        self.sbatch_args = _arg_list(sbatch_args, "SlurmEngine(sbatch_args=...)")
        self.squeue_retries = squeue_retries
        self._jobs: dict[tuple[str, int], SlurmJob] | None = None  # this pass's squeue snapshot
        self._last_jobs: dict[tuple[str, int], SlurmJob] | None = None
        self.squeue_calls = 0

    # --- submission ------------------------------------------------------------------------
    def sbatch_command(self, call: TaskCall) -> list[str]:
        """The sbatch command line for ``call`` (see module docstring)."""
        rqmt = {**self.default_rqmt, **call.rqmt}
        cpus = max(1, int(rqmt.get("cpu", 1)))
        cmd = ["sbatch", "--parsable", "-J", job_name(call), "-a", array_spec(call.task_ids)]
        cmd.append(f"--cpus-per-task={cpus}")
        cmd.append(f"--mem={max(1, math.ceil(parse_mem_gb(rqmt.get('mem', 1)) * 1024))}M")
        cmd.append(f"--time={max(1, math.ceil(parse_time_hours(rqmt.get('time', 1)) * 60))}")
        gpus = int(rqmt.get("gpu", 0) or 0)
        if gpus:
            name = rqmt.get("gpu_name")
            cmd.append(f"--gres=gpu:{name}:{gpus}" if name else f"--gres=gpu:{gpus}")
        nodes = int(rqmt.get("multi_node_slots", 0) or 0)
        if nodes > 1:
            cmd += [f"--nodes={nodes}", "--ntasks-per-node=1"]
        partition = rqmt.get("partition", self.partition)
        if partition:
            cmd.append(f"--partition={partition}")
        cmd += self.sbatch_args + _arg_list(rqmt.get("sbatch_args"), f"{call.job_id} rqmt sbatch_args")
        out = os.path.join(call.job_dir, gs.ENGINE_DIR, f"{call.task_name}.%a.slurm-%A.log")
        threads = f"SIS_ENGINE_CPUS={cpus},OMP_NUM_THREADS={cpus},MKL_NUM_THREADS={cpus}"
        worker = f'exec {shlex.join(call.command)} "$SLURM_ARRAY_TASK_ID" --redirect_output'
        cmd += ["-o", out, f"--chdir={gs.BASE_DIR}", f"--export=ALL,{threads}", f"--wrap={worker}"]
        return cmd

    def submit(self, call: TaskCall) -> str:
        os.makedirs(os.path.join(call.job_dir, gs.ENGINE_DIR), exist_ok=True)
        cmd = self.sbatch_command(call)
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            message = (proc.stderr or proc.stdout).strip().replace("\n", " ")
            reason = f"sbatch failed (exit {proc.returncode}): {message}"
            for task_id in call.task_ids:
                _write_error(call, task_id, f"{reason}\ncommand: {shlex.join(cmd)}\n")
            return f"slurm sbatch failed: {message}"
        job_id = int(proc.stdout.strip().split(";")[0])
        name = job_name(call)
        for task_id in call.task_ids:
            entry = SlurmJob(job_id, task_id, "PENDING", "None")
            for snapshot in (self._jobs, self._last_jobs):
                if snapshot is not None:
                    snapshot[(name, task_id)] = entry
        return f"slurm job_id={job_id} array={array_spec(call.task_ids)} name={name}"

    # --- state ------------------------------------------------------------------------------
    def reset_cache(self) -> None:
        """Start a manager pass: the next state query runs squeue again."""
        self._jobs = None

    def _snapshot(self) -> dict[tuple[str, int], SlurmJob]:
        if self._jobs is not None:
            return self._jobs
        cmd = ["squeue", "-h", "--me", "-t", "all", "--array", "-o", _SQUEUE_FORMAT]
        error = ""
        for attempt in range(self.squeue_retries):
            self.squeue_calls += 1
            proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if proc.returncode == 0:
                self._jobs = self._last_jobs = parse_squeue(proc.stdout)
                return self._jobs
            error = (proc.stderr or proc.stdout).strip()
            if attempt + 1 < self.squeue_retries:
                time.sleep(min(5.0, 0.5 * 2**attempt))
        if self._last_jobs is None:
            raise RuntimeError(f"SlurmEngine: {shlex.join(cmd)} failed: {error}")
        # a busy controller: go on with the last answer rather than submit queued tasks again
        print(f"warning: squeue failed ({error}); using the previous queue state", file=sys.stderr)
        self._jobs = self._last_jobs
        return self._jobs

    def task_state(self, call: TaskCall, task_id: int) -> str | None:
        job = self._snapshot().get((job_name(call), task_id))
        if job is not None and job.state in _ACTIVE:
            return _ACTIVE[job.state]
        self._mark_if_killed(call, task_id, job)
        return None

    def _mark_if_killed(self, call: TaskCall, task_id: int, job: SlurmJob | None) -> None:
        """Write the error marker of a task whose Slurm job was killed (see module docstring)."""
        from sisyphus.worker import task_lock_held

        base = os.path.join(call.job_dir, f"{{}}.{call.task_name}.{task_id}")
        if any(os.path.exists(base.format(m)) for m in (gs.STATE_FINISHED, "error")):
            return
        submitted = _submitted_job_ids(os.path.join(call.job_dir, f"submit_log.{call.task_name}"))
        if not submitted or (job is not None and job.job_id not in submitted):
            return
        if task_lock_held(base.format("lock")):
            return
        job_id = job.job_id if job is not None else submitted[-1]
        try:
            with open(batch_log(call, task_id, job_id), encoding="utf-8", errors="replace") as f:
                output = f.read()
        except FileNotFoundError:
            output = ""
        reason = killed_reason(job.state if job is not None else None, output, call.rqmt)
        if reason is None:
            return
        state = job.state if job is not None else "ended"
        _write_error(
            call,
            task_id,
            f"Slurm job {job_id}_{task_id} {state}: {reason}\n"
            f"slurm output: {batch_log(call, task_id, job_id)}\n",
        )


def parse_squeue(text: str) -> dict[tuple[str, int], SlurmJob]:
    """``{(name, array index): newest job}`` from ``squeue -o '%F|%K|%T|%r|%j'`` lines."""
    jobs: dict[tuple[str, int], SlurmJob] = {}
    for line in text.splitlines():
        parts = line.strip().split("|", 4)
        if len(parts) != 5 or not parts[0].isdigit() or not parts[1].isdigit():
            continue  # not one of ours: a plain (non-array) job
        job = SlurmJob(int(parts[0]), int(parts[1]), parts[2], parts[3])
        key = (parts[4], job.task_id)
        if key not in jobs or jobs[key].job_id < job.job_id:
            jobs[key] = job
    return jobs


def _submitted_job_ids(submit_log: str) -> list[int]:
    try:
        with open(submit_log, encoding="utf-8") as f:
            return [int(m.group(1)) for m in _JOB_ID.finditer(f.read())]
    except FileNotFoundError:
        return []


def _write_error(call: TaskCall, task_id: int, text: str) -> None:
    path = os.path.join(call.job_dir, f"error.{call.task_name}.{task_id}")
    with open(f"{path}.tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(f"{path}.tmp", path)


def _arg_list(value: list[str] | str | None, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise TypeError(f"{what}: expected a list of strings or a string, got {value!r}")
