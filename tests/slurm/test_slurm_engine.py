"""The Slurm engine against a real single-node Slurm cluster (scripts/local_slurm.sh): graphs run
through sbatch, scheduler kills (scancel; memory limit via JobAcctGatherParams=OverMemoryKill) show
as errors with the reason, a restarted manager does not resubmit, and the sbatch command lines."""

from __future__ import annotations

import glob
import os
import re
import signal
import time
from pathlib import Path

import pytest

from sisyphus.engine import EngineSelector, LocalEngine, TaskCall
from sisyphus.slurm_engine import SlurmEngine, array_spec, job_name, killed_reason, parse_squeue
from tests.slurm.conftest import free_port_pair

pytestmark = pytest.mark.slurm


def _job_dir(root: Path, pattern: str) -> Path:
    found = [p for p in glob.glob(str(root / "work" / pattern)) if ".cleared." not in p]
    assert len(found) == 1, f"{pattern}: {found}"
    return Path(found[0])


def _slurm_ids(job_dir: Path, task: str = "run") -> list[int]:
    text = (job_dir / f"submit_log.{task}").read_text()
    return [int(i) for i in re.findall(r"slurm job_id=(\d+)", text)]


def _wait_for(predicate, what: str, timeout: float = 60.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _squeue_state(cluster, slurm_id: int) -> str:
    return cluster.run("squeue", "-h", "-t", "all", "--array", "-j", str(slurm_id), "-o", "%T").stdout.strip()


GRAPH = """
from sisyphus import tk
from recipe.toy import SleepJob
from recipe.slurm_toy import PartsJob

def py():
    a = SleepJob("a", sleep=0.2)
    b1 = SleepJob("b1", inputs=[a.out], sleep=0.2)
    b2 = SleepJob("b2", inputs=[a.out], sleep=0.2)
    c = SleepJob("c", inputs=[b1.out, b2.out], sleep=0.2)
    tk.register_output("c.txt", c.out)
    tk.register_output("parts.txt", PartsJob(3).out)
"""


def test_graph_runs_every_task_through_sbatch(slurm_project):
    cfg = slurm_project.write_config(GRAPH)
    proc = slurm_project.sis("m", cfg, "-r")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All targets are done." in proc.stdout
    root = slurm_project.root
    assert (root / "output" / "c.txt").read_text() == "cb1ab2a"
    submit_logs = glob.glob(str(root / "work" / "*" / "*" / "submit_log.*"))
    assert len(submit_logs) == 6  # 4 SleepJobs + PartsJob's part and collect tasks
    all_ids = []
    for log in submit_logs:
        lines = Path(log).read_text().splitlines()
        assert len(lines) == 1 and re.search(r"'engine_info': 'slurm job_id=\d+ ", lines[0]), lines
        all_ids += _slurm_ids(Path(log).parent, Path(log).name.split(".", 1)[1])
        assert glob.glob(os.path.join(os.path.dirname(log), "engine", "*.slurm-*.log"))
    assert len(set(all_ids)) == 6
    # the three parts are one array job with indices 1-3
    parts = _job_dir(root, "slurm_toy/PartsJob.*")
    assert "array=1-3" in (parts / "submit_log.part").read_text()
    rows = [line.split() for line in (root / "output" / "parts.txt").read_text().splitlines()]
    (array_id,) = _slurm_ids(parts, "part")
    assert rows == [[str(i), str(array_id), str(i)] for i in (1, 2, 3)]


KILL = """
from sisyphus import tk
from recipe.slurm_toy import HogJob, WaitJob

def py():
    tk.register_output("victim.txt", WaitJob("victim", release={release!r}).out)
    tk.register_output("hog.txt", HogJob(flag={flag!r}, mb=600, mem=0.2).out)
"""


def test_scancel_and_memory_kill_are_errors_with_reason_then_rerun_after_clearing(slurm_project):
    root = slurm_project.root
    release, flag = root / "release", root / "hog_flag"
    flag.write_text("x")
    cfg = slurm_project.write_config(KILL.format(release=str(release), flag=str(flag)))
    manager = slurm_project.sis_background("m", cfg, "-r")
    try:
        _wait_for(lambda: glob.glob(str(root / "work/slurm_toy/WaitJob.*/usage.run.1")), "the victim to run")
        victim = _job_dir(root, "slurm_toy/WaitJob.*")
        (victim_id,) = _slurm_ids(victim)
        slurm_project.cluster.run("scancel", f"{victim_id}_1")
        out, _ = manager.communicate(timeout=90)
    finally:
        if manager.poll() is None:
            manager.kill()
    assert manager.returncode == 1, out  # nothing left to run: two errors
    hog = _job_dir(root, "slurm_toy/HogJob.*")
    (hog_id,) = _slurm_ids(hog)
    assert _squeue_state(slurm_project.cluster, victim_id) == "CANCELLED"
    victim_error = (victim / "error.run.1").read_text()
    hog_error = (hog / "error.run.1").read_text()
    assert victim_error.startswith(f"Slurm job {victim_id}_1 CANCELLED: cancelled"), victim_error
    assert hog_error.startswith(f"Slurm job {hog_id}_1 FAILED: memory limit exceeded (rqmt mem=0.2 GB)")
    assert "exceeded memory limit" in hog_error
    # the manager shows both as errors with the scheduler's reason
    assert re.search(
        rf"error: slurm_toy/WaitJob\.\w+ run\.1: Slurm job {victim_id}_1 CANCELLED: cancelled", out
    )
    assert re.search(rf"error: slurm_toy/HogJob\.\w+ run\.1: Slurm job {hog_id}_1 FAILED: memory limit", out)
    # the same reasons from the Slurm output alone, once Slurm has forgotten the jobs (MinJobAge)
    for job_dir, slurm_id, kind in ((victim, victim_id, "cancelled"), (hog, hog_id, "memory limit exceeded")):
        output = (job_dir / "engine" / f"run.1.slurm-{slurm_id}.log").read_text()
        assert killed_reason(None, output, {"mem": 0.2}).startswith(kind)

    flag.unlink()
    release.write_text("go")
    proc = slurm_project.sis("m", cfg, "-r", "-co")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("cleared (error)") == 2
    assert (root / "output" / "victim.txt").read_text() == "victim"
    assert (root / "output" / "hog.txt").read_text() == "ok"
    assert _slurm_ids(_job_dir(root, "slurm_toy/HogJob.*"))[0] > hog_id  # a new Slurm job


RESTART = """
from sisyphus import tk
from recipe.slurm_toy import WaitJob

def py():
    tk.register_output("running.txt", WaitJob("running", release={release!r}).out)
    tk.register_output("held.txt", WaitJob("held", release={release!r}, sbatch_args=["--hold"]).out)
"""


def test_restarted_manager_does_not_resubmit_queued_or_running_tasks(slurm_project):
    root = slurm_project.root
    release = root / "release"
    cfg = slurm_project.write_config(RESTART.format(release=str(release)))

    def submitted() -> list[Path]:
        return [Path(p).parent for p in glob.glob(str(root / "work/slurm_toy/WaitJob.*/submit_log.run"))]

    first = slurm_project.sis_background("m", cfg, "-r")
    try:
        _wait_for(lambda: glob.glob(str(root / "work/slurm_toy/WaitJob.*/usage.run.1")), "a task to run")
        _wait_for(lambda: len(submitted()) == 2, "both submissions")
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    ids = {d: _slurm_ids(d) for d in submitted()}
    states = sorted(_squeue_state(slurm_project.cluster, i[0]) for i in ids.values())
    assert states == ["PENDING", "RUNNING"]  # the held one waits for `scontrol release`

    second = slurm_project.sis_background("m", cfg, "-r")
    try:
        time.sleep(3)  # a few passes of the new manager
        assert {d: _slurm_ids(d) for d in submitted()} == ids  # nothing submitted again
        held = next(i[0] for i in ids.values() if _squeue_state(slurm_project.cluster, i[0]) == "PENDING")
        slurm_project.cluster.run("scontrol", "release", str(held))
        release.write_text("go")
        out, _ = second.communicate(timeout=60)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, out
    assert "queue: slurm_toy/WaitJob" in out and "running: slurm_toy/WaitJob" in out
    assert {d: _slurm_ids(d) for d in submitted()} == ids
    for d in ids:
        assert len((d / "work" / "starts").read_text().splitlines()) == 1  # each ran once


def _call(tmp_path: Path, rqmt: dict, ids: list[int] = [1]) -> TaskCall:  # noqa: B006
    job_dir = tmp_path / "work" / "toy" / "Some.abc"
    job_dir.mkdir(parents=True, exist_ok=True)
    return TaskCall("toy/Some.abc", str(job_dir), "run", ids, rqmt, ["python", "-m", "sisyphus", "worker"])


def test_squeue_once_per_pass_and_sbatch_failure_is_an_error(slurm_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", slurm_cluster.env["SLURM_CONF"])
    engine = SlurmEngine()
    selector = EngineSelector({"short": LocalEngine(), "long": engine}, "long")  # the common setup
    call = _call(tmp_path, {"cpu": 1, "mem": 100_000, "time": 1}, ids=[1, 2])  # more memory than the node
    selector.reset_cache()  # what the manager does at the start of every pass
    assert [selector.task_state(call, i) for i in (1, 2, 1, 2)] == [None] * 4
    assert engine.squeue_calls == 1
    selector.reset_cache()
    selector.task_state(call, 1)
    assert engine.squeue_calls == 2

    info = engine.submit(call)
    assert info.startswith("slurm sbatch failed:")
    for i in (1, 2):
        text = Path(call.job_dir, f"error.run.{i}").read_text()
        assert text.startswith("sbatch failed (exit 1): sbatch: error:"), text
        assert "--mem=102400000M" in text


def test_unreachable_controller_keeps_the_last_queue_state(slurm_cluster, tmp_path, monkeypatch):
    """squeue failing must not make queued tasks look unknown (they would be submitted again)."""
    monkeypatch.setenv("SLURM_CONF", slurm_cluster.env["SLURM_CONF"])
    engine = SlurmEngine(squeue_retries=1)
    call = _call(tmp_path, {"cpu": 1, "mem": 0.1, "time": 0.1, "sbatch_args": ["--hold"]})
    info = engine.submit(call)
    slurm_id = int(re.search(r"job_id=(\d+)", info).group(1))
    try:
        engine.reset_cache()
        assert engine.task_state(call, 1) == "queue"
        # the same cluster with the controller on a closed port
        conf = Path(slurm_cluster.env["SLURM_CONF"]).read_text()
        dead = re.sub(r"^SlurmctldPort=\d+", f"SlurmctldPort={free_port_pair()}", conf, flags=re.M)
        (tmp_path / "dead.conf").write_text(dead + "MessageTimeout=1\nTCPTimeout=1\n")
        monkeypatch.setenv("SLURM_CONF", str(tmp_path / "dead.conf"))
        engine.reset_cache()
        assert engine.task_state(call, 1) == "queue" and engine.squeue_calls == 2
        with pytest.raises(RuntimeError, match="squeue .* failed"):
            SlurmEngine(squeue_retries=1).task_state(call, 1)
    finally:
        slurm_cluster.run("scancel", str(slurm_id))


def test_sbatch_command_line_for_a_multi_node_gpu_task(tmp_path, monkeypatch):
    from sisyphus import global_settings as gs

    monkeypatch.setattr(gs, "BASE_DIR", str(tmp_path))
    engine = SlurmEngine(partition="gpu", sbatch_args="--qos=high", default_rqmt={"time": "2:00:00"})
    rqmt = {
        "cpu": 8,
        "gpu": 4,
        "gpu_name": "h100",
        "mem": 60,
        "multi_node_slots": 2,
        "sbatch_args": ["-A", "lm"],
    }
    call = _call(tmp_path, rqmt, ids=[1])
    cmd = engine.sbatch_command(call)
    assert cmd[:6] == ["sbatch", "--parsable", "-J", "toy/Some.abc.run", "-a", "1"]
    opts = cmd[6:]
    for expected in (
        "--cpus-per-task=8",
        "--mem=61440M",
        "--time=120",
        "--gres=gpu:h100:4",
        "--nodes=2",
        "--ntasks-per-node=1",
        "--partition=gpu",
        "--qos=high",
        f"--chdir={tmp_path}",
        "--export=ALL,SIS_ENGINE_CPUS=8,OMP_NUM_THREADS=8,MKL_NUM_THREADS=8",
    ):
        assert expected in opts, (expected, opts)
    assert opts[opts.index("-A") + 1] == "lm"
    assert opts[opts.index("-o") + 1] == f"{call.job_dir}/engine/run.%a.slurm-%A.log"
    assert cmd[-1] == '--wrap=exec python -m sisyphus worker "$SLURM_ARRAY_TASK_ID" --redirect_output'
    # the rqmt's partition wins; no gpus, one node: no --gres/--nodes
    cmd = engine.sbatch_command(_call(tmp_path, {"cpu": 1, "mem": 0.5, "partition": "cpu"}))
    assert "--partition=cpu" in cmd and "--mem=512M" in cmd and "--time=120" in cmd
    assert not any(a.startswith(("--gres", "--nodes")) for a in cmd)


def test_names_arrays_and_reasons():
    call = TaskCall("a/b/My Job.x1", "/w", "run", [1], {})
    assert job_name(call) == "a/b/My_Job.x1.run"
    assert array_spec([5, 1, 2, 3, 7, 8]) == "1-3,5,7-8" and array_spec([4]) == "4"
    jobs = parse_squeue(
        "7|1|CANCELLED|None|n.run\n9|1|PENDING|None|n.run\n8|2|RUNNING|None|n.run\n3|N/A|RUNNING|None|x\n"
    )
    assert {k: (j.job_id, j.state) for k, j in jobs.items()} == {
        ("n.run", 1): (9, "PENDING"),
        ("n.run", 2): (8, "RUNNING"),
    }
    timeout = (
        "slurmstepd-node1: error: *** JOB 5 ON node1 CANCELLED AT 2026-01-01T00:00:00 DUE TO TIME LIMIT ***\n"
    )
    assert killed_reason("TIMEOUT", timeout, {"time": 0.5}).startswith(
        "time limit exceeded (rqmt time=0.5 h) [***"
    )
    assert killed_reason(None, timeout, {"time": 0.5}).startswith("time limit exceeded")
    assert killed_reason("NODE_FAIL", "", {}) == "node failure"
    assert killed_reason("OUT_OF_MEMORY", "", {"mem": 2}) == "memory limit exceeded (rqmt mem=2 GB)"
    assert killed_reason("FAILED", "Traceback ...\nValueError: x\n", {}) is None
    assert killed_reason(None, "", {}) is None
