"""`sis manager` end to end through the CLI and the local engine, in a temporary project."""

from __future__ import annotations

import glob
import json
import os
import signal

from tests.sis_project import wait_for

DIAMOND = """
from sisyphus import tk
from recipe.toy import SleepJob

def py():
    a = SleepJob("a", cpu=1, sleep=1.0)
    a.add_alias("toy/a")
    b1 = SleepJob("b1", inputs=[a.out], cpu=1, sleep=1.0)
    b2 = SleepJob("b2", inputs=[a.out], cpu=1, sleep=1.0)
    wide = SleepJob("wide", cpu=2, sleep=1.0)          # needs both cpus: must run alone
    c = SleepJob("c", inputs=[b1.out, b2.out], sleep=0.2)
    c.add_alias("toy/c")
    tk.register_output("c.txt", c.out)
    tk.register_output("wide.txt", wide.out)
    tk.register_report("lengths.txt", {"c": c.length, "wide": wide.length})
"""


def _max_cpu_in_use(events: list[dict]) -> float:
    timeline = sorted((e["t"], e["cpu"] if e["event"] == "start" else -e["cpu"]) for e in events)
    used = peak = 0
    for _, delta in sorted(timeline, key=lambda x: (x[0], x[1])):  # ends before starts at equal times
        used += delta
        peak = max(peak, used)
    return peak


def test_diamond_with_parallel_branches_honours_rqmt(sis_project):
    cfg = sis_project.write_config(DIAMOND)
    proc = sis_project.sis("m", cfg, "-r", check=True)
    assert "All targets are done." in proc.stdout
    root = sis_project.root
    assert (root / "output" / "c.txt").read_text() == "cb1ab2a"
    assert os.path.islink(root / "output" / "c.txt")
    assert os.path.realpath(root / "alias" / "toy" / "a").startswith(str(root / "work" / "toy" / "SleepJob."))
    assert eval((root / "output" / "lengths.txt").read_text()) == {"c": 7, "wide": 4}
    events = sis_project.events()
    assert sorted(e["name"] for e in events if e["event"] == "start") == ["a", "b1", "b2", "c", "wide"]
    assert _max_cpu_in_use(events) <= 2  # the engine has 2 cpus
    starts = {e["name"]: e["t"] for e in events if e["event"] == "start"}
    ends = {e["name"]: e["t"] for e in events if e["event"] == "end"}
    assert (
        starts["b1"] >= ends["a"] and starts["b2"] >= ends["a"] and starts["c"] >= max(ends["b1"], ends["b2"])
    )
    assert starts["b1"] < ends["b2"] and starts["b2"] < ends["b1"]  # the parallel branches overlapped
    # a second run finds everything finished and submits nothing
    again = sis_project.sis("m", cfg, "-r", check=True)
    assert "finished(5)" in again.stdout and "queue" not in again.stdout


def _worker_pid(job_dir: str) -> int:
    return json.load(open(os.path.join(job_dir, "usage.run.1")))["pid"]


def test_kill_minus_9_resumes_resumable_task(sis_project):
    cfg = sis_project.write_config("""
        from sisyphus import tk
        from recipe.toy import CountJob
        def py():
            tk.register_output("count.txt", CountJob(15, resumable=True, step_time=0.2).out)
    """)
    manager = sis_project.sis_background("m", cfg, "-r")
    job_dir = None

    def started() -> bool:
        nonlocal job_dir
        found = glob.glob(str(sis_project.root / "work/toy/CountJob.*/work/ckpt"))
        if found and int(open(found[0]).read() or 0) >= 3:
            job_dir = os.path.dirname(os.path.dirname(found[0]))
            return True
        return False

    wait_for(started)
    os.kill(_worker_pid(job_dir), signal.SIGKILL)
    out, _ = manager.communicate(timeout=60)
    assert manager.returncode == 0, out
    assert "interrupted_resumable" in out
    starts = [int(x) for x in open(os.path.join(job_dir, "work", "starts")).read().split()]
    assert starts[0] == 0 and starts[1] >= 3  # the second run continued from the checkpoint
    assert open(os.path.join(job_dir, "output", "count.txt")).read() == "15"


def test_kill_minus_9_of_non_resumable_task_is_interrupted_never_finished(sis_project):
    cfg = sis_project.write_config("""
        from sisyphus import tk
        from recipe.toy import CountJob
        def py():
            tk.register_output("count.txt", CountJob(10, resumable=False, step_time=0.2).out)
    """)
    manager = sis_project.sis_background("m", cfg, "-r")
    pattern = str(sis_project.root / "work/toy/CountJob.*/usage.run.1")
    wait_for(lambda: bool(glob.glob(pattern)))
    job_dir = os.path.dirname(glob.glob(pattern)[0])
    os.kill(_worker_pid(job_dir), signal.SIGKILL)
    out, _ = manager.communicate(timeout=60)
    assert manager.returncode == 1 and "interrupted_not_resumable" in out
    assert not os.path.exists(os.path.join(job_dir, "finished"))
    assert not os.path.exists(sis_project.root / "output" / "count.txt")  # partial output never linked
    rerun = sis_project.sis("m", cfg, "-r", "-cio", check=True)
    assert "cleared (interrupted_not_resumable)" in rerun.stdout
    assert (sis_project.root / "output" / "count.txt").read_text() == "10"
    assert glob.glob(job_dir + ".cleared.0001")


def test_error_clear_retry(sis_project):
    flag = sis_project.root / "fail_flag"
    flag.write_text("")
    cfg = sis_project.write_config(f"""
        from sisyphus import tk
        from recipe.toy import FailJob
        def py():
            FailJob({str(flag)!r}).add_alias("toy/fail")
            tk.register_output("ok.txt", FailJob({str(flag)!r}).out)
    """)
    first = sis_project.sis("m", cfg, "-r")
    assert first.returncode == 1
    assert "error: toy/FailJob" in first.stdout and f"flag file {flag} exists" in first.stdout
    job_dir = os.path.realpath(sis_project.root / "alias" / "toy" / "fail")
    assert os.path.exists(os.path.join(job_dir, "error.run.1"))
    flag.unlink()
    # an error stays an error until cleared
    assert sis_project.sis("m", cfg, "-r").returncode == 1
    # clearing in place (sis retry) reruns the task in the same directory
    sis_project.sis("retry", "alias/toy/fail", check=True)
    sis_project.sis("m", cfg, "-r", check=True)
    assert (sis_project.root / "output" / "ok.txt").read_text() == "ok"
    assert open(os.path.join(job_dir, "work", "attempts")).read().count("x") == 2


def test_error_cleared_with_co_moves_job_aside(sis_project):
    flag = sis_project.root / "fail_flag"
    flag.write_text("")
    cfg = sis_project.write_config(f"""
        from sisyphus import tk
        from recipe.toy import FailJob
        def py():
            tk.register_output("ok.txt", FailJob({str(flag)!r}).out)
    """)
    assert sis_project.sis("m", cfg, "-r").returncode == 1
    flag.unlink()
    proc = sis_project.sis("m", cfg, "-r", "-co", check=True)
    assert "cleared (error)" in proc.stdout
    assert len(glob.glob(str(sis_project.root / "work/toy/FailJob.*.cleared.0001"))) == 1
    assert (sis_project.root / "output" / "ok.txt").read_text() == "ok"


def test_two_managers_never_run_a_task_twice(sis_project):
    cfg = sis_project.write_config("""
        from sisyphus import tk
        from recipe.toy import PidJob
        def py():
            for name in ("p1", "p2", "p3"):
                tk.register_output(name, PidJob(name, sleep=1.5).out)
    """)
    managers = [sis_project.sis_background("m", cfg, "-r") for _ in range(2)]
    outs = [m.communicate(timeout=90)[0] for m in managers]
    assert all(m.returncode == 0 for m in managers), outs
    starts = [e["name"] for e in sis_project.events() if e["event"] == "start"]
    assert sorted(starts) == ["p1", "p2", "p3"], starts


def test_async_config_branches_on_a_computed_value(sis_project):
    cfg = sis_project.write_config("""
        from sisyphus import tk
        from recipe.toy import SleepJob

        async def py():
            first = SleepJob("abc", sleep=0)
            await tk.async_run(first.length)
            n = first.length.get()
            tk.register_output("second.txt", SleepJob("x" * n, inputs=[first.out], sleep=0).out)
    """)
    proc = sis_project.sis("m", cfg, "-r", check=True)
    assert (sis_project.root / "output" / "second.txt").read_text() == "xxxabc", proc.stdout


def test_update_adds_inputs_once_the_current_ones_exist(sis_project):
    cfg = sis_project.write_config("""
        from sisyphus import tk
        from recipe.toy import GrowJob, SleepJob
        def py():
            tk.register_output("grown.txt", GrowJob(SleepJob("ab", sleep=0).length).out)
    """)
    proc = sis_project.sis("m", cfg, "-r", check=True)
    assert (sis_project.root / "output" / "grown.txt").read_text() == "yy!", proc.stdout
