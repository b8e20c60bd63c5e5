"""State detection from the markers on disk, in-process."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from sisyphus import tk
from sisyphus.engine import LocalEngine
from sisyphus.graph import graph
from sisyphus.manager import Manager
from sisyphus.task import State


def _toy():
    import importlib.util
    from pathlib import Path

    if "toy_recipe" in sys.modules:
        return sys.modules["toy_recipe"]
    spec = importlib.util.spec_from_file_location("toy_recipe", Path(__file__).parent / "toy_recipe.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["toy_recipe"] = module
    spec.loader.exec_module(module)
    return module


def _state(job) -> str:
    return Manager(graph, engine=LocalEngine(cpus=1), quiet=True).job_state(job)[0]


def test_states_follow_markers(fresh_graph):
    toy = _toy()
    dep = toy.SleepJob("dep")
    job = toy.SleepJob("main", inputs=[dep.out])
    tk.register_output("x", job.out)
    assert _state(dep) == State.RUNNABLE
    assert _state(job) == State.WAITING  # input not available

    dep._sis_setup_directory()
    open(dep._sis_path("finished.run.1", abspath=True), "w").close()
    assert _state(dep) == State.FINISHED
    assert os.path.exists(dep._sis_path("finished", abspath=True))
    assert _state(job) == State.RUNNABLE

    job._sis_setup_directory()
    task = job._sis_tasks()[0]
    open(task.path("log", 1), "w").close()
    assert _state(job) == State.INTERRUPTED_NOT_RESUMABLE  # a log but no live worker, no marker

    # a live process holding the task lock makes it running
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, os, sys, time\n"
                f"fd = os.open({task.path('lock', 1)!r}, os.O_RDWR | os.O_CREAT)\n"
                "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(30)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert _state(job) == State.RUNNING
    finally:
        holder.kill()
        holder.wait()
    assert _state(job) == State.INTERRUPTED_NOT_RESUMABLE

    with open(task.path("submit_log"), "w") as f:
        f.write("x\n" * 4)
    assert _state(job) == State.RETRY_ERROR
    open(task.path("error", 1), "w").close()
    assert _state(job) == State.ERROR


def test_resumable_interrupt_and_hold(fresh_graph):
    toy = _toy()
    job = toy.CountJob(3)
    tk.register_output("c", job.out)
    job._sis_setup_directory()
    open(job._sis_tasks()[0].path("log", 1), "w").close()
    assert _state(job) == State.INTERRUPTED_RESUMABLE
    job.hold()
    assert _state(job) == State.HOLD


def test_variable_roundtrip_and_unset(fresh_graph):
    toy = _toy()
    job = toy.SleepJob("v")
    assert job.length.get() is None  # output var not set yet
    job.length.set({"a": [1, 2.5, float("inf")]})
    assert job.length.get() == {"a": [1, 2.5, float("inf")]}
    bare = tk.Variable("nowhere.txt")
    try:
        bare.get()
    except tk.VariableNotSet:
        pass
    else:
        raise AssertionError("a bare unset Variable must raise VariableNotSet")


def test_job_directory_layout_and_run_job(fresh_graph):
    toy = _toy()
    dep = toy.SleepJob("a", sleep=0)
    job = toy.SleepJob("b", inputs=[dep.out], sleep=0)
    tk.run_job(dep)
    tk.run_job(job)
    d = job._sis_path(abspath=True)
    for name in ("output", "work", "input", "info", "job.save", "log.run.1", "finished.run.1", "usage.run.1"):
        assert os.path.exists(os.path.join(d, name)), name
    assert open(job.out.get_path()).read() == "ba"
    info = open(os.path.join(d, "info")).read()
    assert f"INPUT: {dep.out.get_path()}\n" in info and "PARAMETER: name: b\n" in info  # the real format
    assert os.path.realpath(os.path.join(d, "input", dep._sis_id().replace("/", "_"))) == dep._sis_path(
        abspath=True
    )
    assert job._sis_finished()


def test_state_scan_is_fast_enough_for_display(fresh_graph):
    """Not a timing assertion: just that a scan of a few hundred finished jobs works from markers."""
    toy = _toy()
    prev = []
    for i in range(200):
        j = toy.SleepJob(f"n{i}", inputs=prev[-1:])
        j._sis_setup_directory()
        open(j._sis_path("finished", abspath=True), "w").close()
        prev.append(j.out)
    tk.register_output("last", prev[-1])
    start = time.time()
    states = Manager(graph, engine=LocalEngine(cpus=1), quiet=True).scan()
    assert len(states[State.FINISHED]) == 200, time.time() - start


def test_remove_job_and_descendants_moves_the_subgraph_aside(fresh_graph):
    toy = _toy()
    a = toy.SleepJob("a", sleep=0)
    b = toy.SleepJob("b", inputs=[a.out], sleep=0)
    c = toy.SleepJob("c", inputs=[b.out], sleep=0)
    other = toy.SleepJob("other", sleep=0)
    for job in (a, b, c, other):
        tk.run_job(job)
    removed = tk.remove_job_and_descendants(b._sis_path(abspath=True))
    assert sorted(removed) == sorted([b._sis_path(abspath=True), c._sis_path(abspath=True)])
    for job in (b, c):
        assert not os.path.exists(job._sis_path(abspath=True))
        assert os.path.isdir(job._sis_path(abspath=True) + ".cleared.0001")
    assert os.path.isdir(a._sis_path(abspath=True)) and os.path.isdir(other._sis_path(abspath=True))
