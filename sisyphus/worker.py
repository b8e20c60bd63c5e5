"""The worker: runs one task id of one job, the process an engine starts.

Crash safety: the worker holds an exclusive ``flock`` on ``lock.<task>.<id>`` in the job
directory while the task runs. The kernel drops it when the process dies (exception,
``kill -9``, reboot), so a held lock means "running" and a second worker for the same task
(e.g. from a second manager) exits without doing anything. The lock covers the task's other
processes as well (``sisyphus.process_tree``): a worker kills the leftovers of an earlier run of its
task before it starts, and ``Task.state`` counts a live leftover as running. ``finished.<task>.<id>`` is written
only after the task function returned; an exception writes ``error.<task>.<id>`` instead. A worker
runs its task id once: ``Task(tries=N)`` is handled by the manager, which resubmits a failed id
(``Task.start_retry``), as the real Sisyphus does.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
import traceback
from typing import IO

from sisyphus import global_settings as gs
from sisyphus.process_tree import OWNER_ENV, kill_task_processes, new_owner_token, task_key

_LOCK_RETRY_SECONDS = 2.0


def task_lock_held(lock_path: str) -> bool:
    """True if a live worker holds the lock (probed with a shared, non-blocking flock)."""
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def try_task_lock(lock_path: str) -> int | None:
    """The task's exclusive lock without waiting (for the manager's short changes of a task's
    markers); None if a worker or another manager holds it. Release with ``release_task_lock``."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def release_task_lock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _acquire_lock(lock_path: str) -> int | None:
    """Exclusive lock; retried briefly since a manager's state probe may hold it shared for an instant."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + _LOCK_RETRY_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.05)


def _write_usage_once(path: str, start: float) -> None:
    """``usage.<task>.<id>``: JSON with host, pid, rss of the task's process tree, cpu, elapsed time."""
    import psutil

    try:
        proc = psutil.Process()
        rss = proc.memory_info().rss
        for child in proc.children(recursive=True):
            try:
                rss += child.memory_info().rss
            except psutil.Error:
                pass  # a child that just ended
        usage = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "rss_gb": round(rss / 1024**3, 3),
            "cpu_times_s": round(sum(proc.cpu_times()[:2]), 1),
            "elapsed_s": round(time.time() - start, 1),
            "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        with open(f"{path}.tmp", "w") as f:
            json.dump(usage, f)
        os.replace(f"{path}.tmp", path)
    except (OSError, psutil.Error) as e:
        print(f"warning: could not write {path}: {e}", flush=True)


def _write_usage(path: str, start: float, stop: threading.Event) -> None:
    while not stop.wait(gs.USAGE_UPDATE_PERIOD):
        _write_usage_once(path, start)


def _touch_atomic(path: str, text: str = "") -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def run_worker(
    job_dir: str, task_name: str, task_id: int, redirect_output: bool = True, force_resume: bool = False
) -> int:
    """Run ``task_name`` id ``task_id`` of the job in ``job_dir``; returns the exit code.
    ``force_resume``: run it even if it has an error marker (which is removed), e.g. to debug a task."""
    from sisyphus.job import load_job

    job_dir = os.path.abspath(job_dir)
    lock_path = os.path.join(job_dir, f"lock.{task_name}.{task_id}")
    finished = os.path.join(job_dir, f"{gs.STATE_FINISHED}.{task_name}.{task_id}")
    error = os.path.join(job_dir, f"error.{task_name}.{task_id}")
    fd = _acquire_lock(lock_path)
    if fd is None:
        print(f"{job_dir} {task_name}.{task_id} is already running in another worker", file=sys.stderr)
        return 0
    if force_resume and os.path.exists(error):
        os.unlink(error)
    if os.path.exists(finished) or os.path.exists(error):
        return 0  # another worker completed it while this one was starting
    # the lock covers the task's other processes too: leftovers of an earlier run (a RETURNN whose
    # worker was killed, a child in a session of its own) die before this run starts
    token = os.environ.get(OWNER_ENV, "")
    if not token.startswith(task_key(job_dir, task_name, task_id)):
        token = os.environ[OWNER_ENV] = new_owner_token(job_dir, task_name, task_id)
    leftovers = kill_task_processes(task_key(job_dir, task_name, task_id), exclude_token=token)

    log_path = os.path.join(job_dir, f"log.{task_name}.{task_id}")
    log_file: IO[str] | None = None
    if redirect_output:
        log_file = open(log_path, "a", buffering=1, encoding="utf-8")
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        sys.stdout = sys.stderr = log_file
    elif not os.path.exists(log_path):
        open(log_path, "a").close()
    start = time.time()
    print(
        f"=== sisyphus worker {task_name}.{task_id} on {socket.gethostname()} pid {os.getpid()} "
        f"at {time.strftime('%Y-%m-%d %H:%M:%S')}",
        flush=True,
    )
    if leftovers:
        print(f"=== killed {len(leftovers)} leftover process(es) of an earlier run: {leftovers}", flush=True)
    stop = threading.Event()
    usage_path = os.path.join(job_dir, f"usage.{task_name}.{task_id}")
    _write_usage_once(usage_path, start)
    usage = threading.Thread(
        target=_write_usage,
        args=(usage_path, start, stop),
        daemon=True,
    )
    usage.start()
    try:
        job = load_job(job_dir)
        task = next((t for t in job._sis_tasks() if t.name() == task_name), None)
        if task is None:
            raise ValueError(f"{job_dir}: job has no task {task_name!r}")
        env = getattr(job, "_sis_environment", None)
        if env is not None:
            env.modify_environment()
        from sisyphus.job_path import AbstractPath

        AbstractPath.cacheing_enabled = True  # cached inputs go through gs.file_caching in tasks
        for path in job._sis_outputs.values():
            path.cached = False  # never the job's own outputs
        os.chdir(os.path.join(job_dir, gs.JOB_WORK_DIR))
        task.run(task_id)
    except KeyboardInterrupt:
        print("=== interrupted", flush=True)  # no marker: the task shows as interrupted
        return 130
    except SystemExit as e:
        if e.code not in (0, None):
            _touch_atomic(error, f"SystemExit: {e.code}\n")
            return 1
    except BaseException as e:  # noqa: BLE001 - every failure must leave an error marker
        tb = traceback.format_exc()
        print(tb, flush=True)
        _touch_atomic(error, f"{type(e).__name__}: {e}\n\n{tb}")
        return 1
    finally:
        stop.set()
    _touch_atomic(finished, time.strftime("%Y-%m-%d %H:%M:%S\n"))
    print(f"=== finished {task_name}.{task_id} after {time.time() - start:.1f} s", flush=True)
    return 0
