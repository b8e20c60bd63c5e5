"""Faults on the real local engine: ``kill -9`` of workers whose task has children, interrupted mini
tasks, and the reasons the manager shows."""

from __future__ import annotations

import glob
import json
import os
import signal
import time


def _wait_for(predicate, timeout: float = 60.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _job_dir(sis_project, pattern: str) -> str | None:
    found = glob.glob(str(sis_project.root / "work" / "toy" / pattern))
    return found[0] if found else None


def _read_int(path: str) -> int:
    try:
        return int(open(path).read() or 0)
    except (OSError, ValueError):
        return 0


def test_kill_9_of_worker_kills_child_in_own_session_and_one_run_proceeds(sis_project):
    cfg = sis_project.write_config("""
        from sisyphus import tk
        from recipe.toy import SpawnJob
        def py():
            tk.register_output("count.txt", SpawnJob(25, step_time=0.2).out)
    """)
    manager = sis_project.sis_background("m", cfg, "-r")
    try:
        _wait_for(lambda: (d := _job_dir(sis_project, "SpawnJob.*")) and _read_int(f"{d}/work/ckpt") >= 3)
        job_dir = _job_dir(sis_project, "SpawnJob.*")
        first_child = int(open(f"{job_dir}/work/children").read().split()[0])
        worker = json.load(open(f"{job_dir}/usage.run.1"))["pid"]
        assert _alive(first_child)
        os.kill(worker, signal.SIGKILL)
        _wait_for(lambda: not _alive(first_child), timeout=20)
        out, _ = manager.communicate(timeout=120)
    finally:
        if manager.poll() is None:
            manager.kill()
    assert manager.returncode == 0, out
    children = [int(p) for p in open(f"{job_dir}/work/children").read().split()]
    assert len(children) == 2, children  # exactly one run after the resubmission
    assert not os.path.exists(f"{job_dir}/work/CONCURRENT"), "two children ran at once"
    assert not any(_alive(p) for p in children)
    assert open(f"{job_dir}/output/count.txt").read() == "25"
    assert "interrupted_resumable" in out
