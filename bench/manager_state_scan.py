"""Benchmark: time of one manager state scan over a graph of 2,000 jobs (target: under 2 s).

Prints a markdown table for three graphs states: nothing run yet, all finished, and half
finished (with the rest runnable or waiting). Run: `.venv/bin/python bench/manager_state_scan.py`.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "core"))

from sisyphus import global_settings as gs  # noqa: E402
from sisyphus import job as job_module  # noqa: E402
from sisyphus import tk  # noqa: E402
from sisyphus.engine import LocalEngine  # noqa: E402
from sisyphus.graph import graph  # noqa: E402
from sisyphus.manager import Manager  # noqa: E402

N_JOBS = 2000


def build(toy) -> list:
    """A layered graph: 40 layers of 50 jobs, each depending on two jobs of the layer before."""
    jobs, prev = [], []
    for layer in range(N_JOBS // 50):
        current = []
        for i in range(50):
            inputs = [prev[i].out, prev[(i + 1) % 50].out] if prev else []
            current.append(toy.SleepJob(f"l{layer}n{i}", inputs=inputs, sleep=0))
        jobs += current
        prev = current
    for j in prev:
        tk.register_output(j._sis_id(), j.out)
    return jobs


def mark_finished(jobs: list) -> None:
    for j in jobs:
        j._sis_setup_directory()
        open(j._sis_path("finished", abspath=True), "w").close()


def scan_seconds(repeat: int = 3) -> tuple[float, dict[str, int]]:
    best, counts = float("inf"), {}
    for _ in range(repeat):
        for j in job_module.created_jobs.values():  # no in-memory cache: read state from disk
            j._sis_is_finished = False
        manager = Manager(graph, engine=LocalEngine(cpus=1), quiet=True)
        start = time.perf_counter()
        states = manager.scan()
        best = min(best, time.perf_counter() - start)
        counts = {k: len(v) for k, v in states.items()}
    return best, counts


def main() -> None:
    import toy_recipe

    rows = []
    for case in ("nothing run", "half finished", "all finished"):
        with tempfile.TemporaryDirectory() as tmp:
            gs.BASE_DIR = tmp
            job_module.created_jobs.clear()
            graph.clear()
            jobs = build(toy_recipe)
            if case == "half finished":
                mark_finished(jobs[: N_JOBS // 2])
            elif case == "all finished":
                mark_finished(jobs)
            seconds, counts = scan_seconds()
            rows.append((case, seconds, counts))
    print(f"| graph ({N_JOBS} jobs) | scan time (s, best of 3) | states |")
    print("|---|---|---|")
    for case, seconds, counts in rows:
        states = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        print(f"| {case} | {seconds:.3f} | {states} |")


if __name__ == "__main__":
    main()
