"""``Task(tries=…, parallel=…, continuable=…)`` through the real manager, worker and local engine."""

from __future__ import annotations

import ast
import glob
import os
from collections import defaultdict

import pytest

from sisyphus.task import Task


def _job_dir(sis_project, pattern: str) -> str:
    found = glob.glob(str(sis_project.root / "work" / "toy" / pattern))
    assert len(found) == 1, found
    return found[0]


def _lines(path: str) -> list[str]:
    with open(path) as f:
        return f.read().splitlines()


# --- tries --------------------------------------------------------------------------------------
def test_tries_resubmits_a_failing_task_until_it_succeeds(sis_project):
    cfg = sis_project.write_config("""
        from sisyphus import tk
        from recipe.toy import FlakyJob
        def py():
            tk.register_output("flaky.txt", FlakyJob(failures=2, tries=3).out)
    """)
    proc = sis_project.sis("m", cfg, "-r", check=True)
    assert "All targets are done." in proc.stdout
    assert (sis_project.root / "output" / "flaky.txt").read_text() == "ok after 3"
    job_dir = _job_dir(sis_project, "FlakyJob.*")
    # three worker processes, each a submission of its own
    assert len(set(_lines(os.path.join(job_dir, "work", "attempts")))) == 3
    assert len(_lines(os.path.join(job_dir, "submit_log.run"))) == 3
    assert (
        "retry: toy/FlakyJob" in proc.stdout
        and "try 2/3 (try 1 failed: RuntimeError: flaky failure 1)" in proc.stdout
    )
    assert "try 3/3 (try 2 failed: RuntimeError: flaky failure 2)" in proc.stdout
    # the logs of the failed tries are kept, the error marker is gone
    assert "flaky failure 1" in open(os.path.join(job_dir, "log.run.1.error.01")).read()
    assert "flaky failure 2" in open(os.path.join(job_dir, "log.run.1.error.02")).read()
    assert "attempt 3" in open(os.path.join(job_dir, "log.run.1")).read()
    assert not os.path.exists(os.path.join(job_dir, "error.run.1"))
    assert os.path.exists(os.path.join(job_dir, "finished"))


@pytest.mark.parametrize("tries", [1, 2])
def test_tries_exhausted_is_an_error(sis_project, tries):
    cfg = sis_project.write_config(f"""
        from sisyphus import tk
        from recipe.toy import FlakyJob
        def py():
            tk.register_output("flaky.txt", FlakyJob(failures=5, tries={tries}).out)
    """)
    proc = sis_project.sis("m", cfg, "-r")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"RuntimeError: flaky failure {tries}" in proc.stdout and "Nothing left to run" in proc.stdout
    job_dir = _job_dir(sis_project, "FlakyJob.*")
    assert len(_lines(os.path.join(job_dir, "work", "attempts"))) == tries
    assert len(_lines(os.path.join(job_dir, "submit_log.run"))) == tries
    assert os.path.exists(os.path.join(job_dir, "error.run.1"))
    assert sorted(os.path.basename(p) for p in glob.glob(os.path.join(job_dir, "log.run.1.error.*"))) == [
        f"log.run.1.error.{n:02d}" for n in range(1, tries)
    ]
    assert ("retry:" in proc.stdout) == (tries > 1)
    # an exhausted task stays an error: a second manager does not run it again
    again = sis_project.sis("m", cfg, "-r")
    assert again.returncode == 1
    assert len(_lines(os.path.join(job_dir, "work", "attempts"))) == tries


# --- parallel -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "parallel", "chunks"),
    [
        (5, 0, [[0], [1], [2], [3], [4]]),
        (5, 2, [[0, 1, 2], [3, 4]]),
        (7, 3, [[0, 1, 2], [3, 4], [5, 6]]),
        (6, 3, [[0, 1], [2, 3], [4, 5]]),
        (2, 3, [[0], [1], []]),  # as in the real Sisyphus: ids beyond the args run nothing
        (4, 1, [[0, 1, 2, 3]]),
    ],
)
def test_parallel_splits_args_into_task_ids(n, parallel, chunks):
    task = Task("run", args=list(range(n)), parallel=parallel)
    assert task.task_ids() == list(range(1, len(chunks) + 1))
    assert [list(task.arg_indices(i)) for i in task.task_ids()] == chunks


def test_parallel_runs_chunks_of_args_in_one_submission(sis_project):
    cfg = sis_project.write_config("""
        from sisyphus import tk
        from recipe.toy import ChunkJob
        def py():
            tk.register_output("chunks.txt", ChunkJob(5, parallel=2).out)
    """)
    sis_project.sis("m", cfg, "-r", check=True)
    job_dir = _job_dir(sis_project, "ChunkJob.*")
    pids = (sis_project.root / "output" / "chunks.txt").read_text().split()
    assert len(pids) == 5  # every arg ran
    # two task ids, i.e. two worker processes: args 0-2 in the first, 3-4 in the second
    assert pids[0] == pids[1] == pids[2] != pids[3] == pids[4]
    by_pid = defaultdict(list)
    for e in sis_project.events():
        by_pid[e["pid"]].append(int(e["name"]))
    assert sorted(by_pid.values()) == [[0, 1, 2], [3, 4]]
    markers = sorted(os.path.basename(p) for p in glob.glob(os.path.join(job_dir, "finished.run.*")))
    assert markers == ["finished.run.1", "finished.run.2"]
    # both ids went to the engine together, as one submission, and it started one process each
    submits = _lines(os.path.join(job_dir, "submit_log.run"))
    assert len(submits) == 1 and ast.literal_eval(submits[0])[0] == [1, 2]
    engine_logs = sorted(os.listdir(os.path.join(job_dir, "engine")))
    assert [f for f in engine_logs if f.startswith("run.")] == ["run.1.local.log", "run.2.local.log"]


def test_without_parallel_every_arg_is_a_task_id(sis_project):
    cfg = sis_project.write_config("""
        from sisyphus import tk
        from recipe.toy import ChunkJob
        def py():
            tk.register_output("chunks.txt", ChunkJob(3).out)
    """)
    sis_project.sis("m", cfg, "-r", check=True)
    job_dir = _job_dir(sis_project, "ChunkJob.*")
    assert len(set((sis_project.root / "output" / "chunks.txt").read_text().split())) == 3
    markers = sorted(os.path.basename(p) for p in glob.glob(os.path.join(job_dir, "finished.run.*")))
    assert markers == ["finished.run.1", "finished.run.2", "finished.run.3"]
    submits = _lines(os.path.join(job_dir, "submit_log.run"))
    assert len(submits) == 1 and ast.literal_eval(submits[0])[0] == [1, 2, 3]


# --- continuable and invalid values -------------------------------------------------------------
def test_continuable_is_rejected_with_a_clear_error(sis_project):
    with pytest.raises(ValueError, match=r"Task 'run': continuable=True is not supported"):
        Task("run", continuable=True)
    cfg = sis_project.write_config("""
        from sisyphus import tk
        from recipe.toy import ContinuableJob
        def py():
            tk.register_output("c.txt", ContinuableJob().out)
    """)
    proc = sis_project.sis("m", cfg, "-r")
    assert proc.returncode != 0
    assert "toy/ContinuableJob." in proc.stderr
    assert "Task 'run': continuable=True is not supported" in proc.stderr
    assert not (sis_project.root / "output" / "c.txt").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tries": 0}, "tries must be an int >= 1"),
        ({"tries": 1.5}, "tries must be an int >= 1"),
        ({"parallel": -1}, "parallel must be an int >= 0"),
        ({"parallel": True}, "parallel must be an int >= 0"),
    ],
)
def test_invalid_tries_and_parallel_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Task("run", args=[1, 2], **kwargs)
