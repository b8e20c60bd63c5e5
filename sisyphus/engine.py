"""Engines run task ids as worker processes: ``LocalEngine`` on this machine, ``EngineSelector``
to route tasks by ``rqmt["engine"]`` (``mini_task``s go to ``"short"``).

The interface a scheduler engine (e.g. Slurm) implements:
``start_engine()``, ``stop_engine()``, ``submit(call) -> str`` (engine info for the submit log),
``task_state(call, task_id) -> "queue" | "running" | None`` (None: unknown to the engine) and
``reset_cache()``, called by the manager at the start of every pass (a scheduler engine queries the
scheduler at most once per pass). A task the scheduler killed gets an ``error.<task>.<id>`` marker
from the engine whose first line is the scheduler's reason. ``SlurmEngine`` is in
``sisyphus.slurm_engine``.
"""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any

from sisyphus import global_settings as gs
from sisyphus.process_tree import OWNER_ENV, kill_task_processes, new_owner_token


@dataclass
class TaskCall:
    """One submission: a task of a job with the ids to run and their requirements. Engines start
    one worker per task id; with ``Task(parallel=N)`` a task has N ids, each running a chunk of
    its args."""

    job_id: str
    job_dir: str
    task_name: str
    task_ids: list[int]
    rqmt: dict[str, Any]
    command: list[str] = field(default_factory=list)  # worker command line without the task id

    def key(self, task_id: int) -> tuple[str, str, int]:
        return self.job_id, self.task_name, task_id

    def engine_log(self, task_id: int, kind: str) -> str:
        return os.path.join(self.job_dir, gs.ENGINE_DIR, f"{self.task_name}.{task_id}.{kind}")


def worker_command(job_dir: str, task_name: str) -> list[str]:
    """The command an engine runs for a task; the task id is appended."""
    return [*gs.SIS_COMMAND, "worker", job_dir, task_name]


class EngineBase:
    """Common parts: a wake-up event the manager waits on, set when a task changes state."""

    def __init__(self) -> None:
        self.wakeup = threading.Event()

    def start_engine(self) -> None:
        pass

    def stop_engine(self) -> None:
        pass

    def submit(self, call: TaskCall) -> str:
        raise NotImplementedError

    def task_state(self, call: TaskCall, task_id: int) -> str | None:
        raise NotImplementedError

    def reset_cache(self) -> None:
        pass

    def engines(self) -> list[EngineBase]:
        return [self]


class LocalEngine(EngineBase):
    """Runs tasks as local processes without exceeding ``cpus``, ``gpus`` and any other resource
    given as keyword (e.g. ``mem=`` in GB). A task asking for more than the engine has is run
    alone with the engine's maximum.

    The engine owns a task's whole process tree (``sisyphus.process_tree``): a worker starts in a
    session of its own with an owner token in its environment; when it ends (also by ``kill -9``) its
    process group and every process carrying its token are killed before the task's slot is freed,
    i.e. before the manager can see the task as interrupted and resubmit it."""

    def __init__(self, cpus: int = 1, gpus: int = 0, available_gpus: str = "", **other: float) -> None:
        super().__init__()
        gpus = int(other.get("gpu", gpus))  # cpu=/gpu= override cpus/gpus, as in the real LocalEngine
        self.capacity: dict[str, float] = {"cpu": cpus, "gpu": gpus, **other}
        gpu_ids = [g for g in available_gpus.split(",") if g] if available_gpus else []
        self.free_gpus = gpu_ids or [str(i) for i in range(gpus)]
        self.used: dict[str, float] = dict.fromkeys(self.capacity, 0.0)
        self.queue: list[tuple[TaskCall, int]] = []
        self.running: dict[tuple[str, str, int], tuple[subprocess.Popen, dict[str, float], list[str]]] = {}
        self.owner_tokens: dict[int, str] = {}  # worker pid -> SIS_TASK_OWNER of its run
        self.failure: OSError | None = None  # a worker could not be started (full or read-only disk)
        self.peak_used: dict[str, float] = dict.fromkeys(self.capacity, 0.0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start_engine(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="LocalEngine", daemon=True)
            self._thread.start()

    def stop_engine(self) -> None:
        """Stop the loop and terminate running tasks (they become interrupted, resumable ones resume)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            self.queue.clear()
            for proc, _, _ in self.running.values():
                if proc.poll() is None:
                    try:
                        os.killpg(proc.pid, 15)
                    except ProcessLookupError:
                        pass
            for proc, _, _ in self.running.values():
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
                self._reap_tree(proc)
            self.running.clear()

    def _reap_tree(self, proc: subprocess.Popen) -> None:
        """Kill what is left of a worker's task: its process group and every process carrying its
        owner token (a child in a session of its own), and wait until they are gone."""
        kill_task_processes(token=self.owner_tokens.pop(proc.pid, None), pgid=proc.pid)
        if proc.poll() is None:
            proc.wait()

    def submit(self, call: TaskCall) -> str:
        with self._lock:
            for task_id in call.task_ids:
                self.queue.append((call, task_id))
        self.start_engine()
        return f"local pid=pending cpus={self.capacity.get('cpu')}"

    def task_state(self, call: TaskCall, task_id: int) -> str | None:
        if self.failure is not None:
            raise self.failure  # to the manager: the engine's thread cannot raise it there
        key = call.key(task_id)
        with self._lock:
            if key in self.running:
                return "running"
            if any(c.key(i) == key for c, i in self.queue):
                return "queue"
        return None

    def _need(self, rqmt: dict[str, Any]) -> dict[str, float]:
        need = {}
        for res, cap in self.capacity.items():
            want = float(rqmt.get(res, 0) or 0)
            need[res] = min(want, float(cap))
        return need

    def _fits(self, need: dict[str, float]) -> bool:
        return all(self.used[r] + v <= self.capacity[r] + 1e-9 for r, v in need.items())

    def _start(self, call: TaskCall, task_id: int, need: dict[str, float]) -> None:
        gpus = [self.free_gpus.pop(0) for _ in range(int(need.get("gpu", 0)))]
        env = dict(os.environ)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        threads = str(max(1, int(call.rqmt.get("cpu", 1))))
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = threads
        env["SIS_ENGINE_CPUS"] = threads
        env[OWNER_ENV] = token = new_owner_token(call.job_dir, call.task_name, task_id)
        log_path = call.engine_log(task_id, "local.log")
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        with open(log_path, "a") as log:
            proc = subprocess.Popen(
                [*call.command, str(task_id), "--redirect_output"],
                cwd=gs.BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.owner_tokens[proc.pid] = token
        for r, v in need.items():
            self.used[r] += v
            self.peak_used[r] = max(self.peak_used[r], self.used[r])
        self.running[call.key(task_id)] = (proc, need, gpus)

    def _loop(self) -> None:
        while not self._stop.is_set():
            changed = False
            with self._lock:
                for key, (proc, need, gpus) in list(self.running.items()):
                    if proc.poll() is not None:
                        # the task's other processes die before its slot (and a resubmission) is free
                        self._reap_tree(proc)
                        for r, v in need.items():
                            self.used[r] -= v
                        self.free_gpus.extend(gpus)
                        del self.running[key]
                        changed = True
                for item in list(self.queue):
                    call, task_id = item
                    need = self._need(call.rqmt)
                    if self._fits(need):
                        self.queue.remove(item)
                        try:
                            self._start(call, task_id, need)
                        except OSError as e:
                            self.failure = e
                        changed = True
            if changed:
                self.wakeup.set()
            self._stop.wait(0.1)


class EngineSelector(EngineBase):
    """Routes each task to ``engines[rqmt.get("engine", default_engine)]``."""

    def __init__(self, engines: dict[str, EngineBase], default_engine: str) -> None:
        super().__init__()
        if default_engine not in engines:
            raise ValueError(f"EngineSelector: default_engine {default_engine!r} not in {sorted(engines)}")
        self.engine_map = engines
        self.default_engine = default_engine
        for engine in engines.values():
            engine.wakeup = self.wakeup

    def _select(self, call: TaskCall) -> EngineBase:
        name = call.rqmt.get("engine", self.default_engine)
        if name not in self.engine_map:
            raise ValueError(f"Task {call.task_name} of {call.job_id}: unknown engine {name!r}")
        return self.engine_map[name]

    def start_engine(self) -> None:
        for engine in self.engine_map.values():
            engine.start_engine()

    def stop_engine(self) -> None:
        for engine in self.engine_map.values():
            engine.stop_engine()

    def submit(self, call: TaskCall) -> str:
        return self._select(call).submit(call)

    def task_state(self, call: TaskCall, task_id: int) -> str | None:
        return self._select(call).task_state(call, task_id)

    def reset_cache(self) -> None:
        for engine in self.engine_map.values():
            engine.reset_cache()

    def engines(self) -> list[EngineBase]:
        return [e for engine in self.engine_map.values() for e in engine.engines()]
