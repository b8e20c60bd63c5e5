"""Faults on the real local engine: ``kill -9`` of workers whose task has children, interrupted mini
tasks, and the reasons the manager shows."""

from __future__ import annotations

import glob
import json
import os
import signal

import pytest

from tests.sis_project import wait_for


def _wait_for(predicate, timeout: float = 60.0) -> None:
    wait_for(predicate, timeout)


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
    # the manager says why: the worker vanished, and what the task's log said last
    assert "no error marker: the worker was killed or lost; last log line: step " in out, out


def _spawn_config(sis_project, plot_mini: bool) -> str:
    return sis_project.write_config(f"""
        from sisyphus import tk
        from recipe.toy import SpawnJob
        def py():
            job = SpawnJob(3, step_time=0.1, plot_sleep=60, plot_mini={plot_mini})
            job.add_alias("spawn")
            tk.register_output("plot.txt", job.plot_out)
    """)


def _kill_plot(sis_project, manager) -> tuple[str, str]:
    """Wait until ``plot`` runs (``run`` finished), kill -9 its worker; (job dir, manager output)."""
    try:
        _wait_for(lambda: (d := _job_dir(sis_project, "SpawnJob.*")) and os.path.exists(f"{d}/usage.plot.1"))
        job_dir = _job_dir(sis_project, "SpawnJob.*")
        _wait_for(lambda: os.path.exists(f"{job_dir}/work/plot_starts"))
        assert os.path.exists(f"{job_dir}/finished.run.1")
        os.kill(json.load(open(f"{job_dir}/usage.plot.1"))["pid"], signal.SIGKILL)
        out, _ = manager.communicate(timeout=120)
    finally:
        if manager.poll() is None:
            manager.kill()
    return job_dir, out


def _starts(job_dir: str, name: str) -> int:
    return len(open(f"{job_dir}/work/{name}").read().split())


def test_killed_mini_task_after_finished_run_reruns_only_itself(sis_project):
    cfg = _spawn_config(sis_project, plot_mini=True)
    job_dir, out = _kill_plot(sis_project, sis_project.sis_background("m", cfg, "-r"))
    assert "All targets are done." in out, out
    assert _starts(job_dir, "children") == 1  # the training ran once
    assert _starts(job_dir, "plot_starts") == 2  # plot was rerun, nothing else
    assert (sis_project.root / "output" / "plot.txt").read_text() == "plot of 3"
    assert not glob.glob(job_dir + ".cleared*")
    assert "interrupted_resumable" in out


def test_interrupted_task_after_finished_resumable_run_sis_retry_and_cio_keep_the_run(sis_project):
    cfg = _spawn_config(sis_project, plot_mini=False)
    job_dir, out = _kill_plot(sis_project, sis_project.sis_background("m", cfg, "-r"))
    assert "interrupted_not_resumable" in out, out
    # sis retry resets the interrupted task in place
    retry = sis_project.sis("retry", "alias/spawn", check=True)
    assert "reset 1 interrupted task(s)" in retry.stdout
    assert glob.glob(f"{job_dir}/log.plot.1.interrupted.01")
    # -cio on a job whose resumable run finished reruns only the unfinished tasks, in place
    os.unlink(f"{job_dir}/work/plot_starts")  # plot sleeps again on its next start
    job_dir2, out = _kill_plot(sis_project, sis_project.sis_background("m", cfg, "-r"))
    assert job_dir2 == job_dir and "interrupted_not_resumable" in out
    rerun = sis_project.sis("m", cfg, "-r", "-cio", check=True)
    assert "cleared in place (interrupted_not_resumable)" in rerun.stdout, rerun.stdout
    assert "keeps finished run" in rerun.stdout
    assert not glob.glob(job_dir + ".cleared*")
    assert _starts(job_dir, "children") == 1  # the training was never rerun
    assert (sis_project.root / "output" / "plot.txt").read_text() == "plot of 3"


def test_error_of_a_subprocess_shows_its_cause(sis_project):
    cfg = sis_project.write_config("""
        from sisyphus import tk
        from recipe.toy import SubprocessFailJob
        def py():
            tk.register_output("out.txt", SubprocessFailJob("hidden=64 in the checkpoint vs 96 in the config").out)
    """)
    proc = sis_project.sis("m", cfg, "-r")
    assert proc.returncode == 1
    line = next(x for x in proc.stdout.splitlines() if x.strip().startswith("error:") and "run.1" in x)
    assert "CalledProcessError" in line
    assert "(log: ValueError: hidden=64 in the checkpoint vs 96 in the config)" in line, proc.stdout


def _unshare_works() -> bool:
    import subprocess

    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_read_only_or_full_work_dir_is_a_one_line_error(sis_project, fault):
    import shlex
    import subprocess
    import sys

    if not _unshare_works():
        pytest.skip(
            "needs `unshare -m` (a mount namespace) to mount the work dir read-only or as a full tmpfs"
        )
    cfg = sis_project.write_config("""
        from sisyphus import tk
        from recipe.toy import SleepJob
        def py():
            tk.register_output("a.txt", SleepJob("a", sleep=0).out)
    """)
    work = shlex.quote(str(sis_project.root / "work"))
    (sis_project.root / "work").mkdir()
    mount = (
        f"mount --bind -o ro {work} {work}"
        if fault == "read-only"
        else f"mount -t tmpfs -o size=256k tmpfs {work} && (dd if=/dev/zero of={work}/fill bs=4k 2>/dev/null; true)"
    )
    sis = shlex.join([sys.executable, "-m", "sisyphus", "m", cfg, "-r"])
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"{mount} && {sis}"],
        cwd=sis_project.root,
        env=sis_project.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("sis m")]
    expected = "Read-only file system" if fault == "read-only" else "No space left on device"
    assert len(errors) == 1 and expected in errors[0], proc.stderr


def test_missing_output_of_a_finished_job_is_reported(sis_project):
    cfg = sis_project.write_config("""
        from sisyphus import tk
        from recipe.toy import SleepJob
        def py():
            tk.register_output("a.txt", SleepJob("a", sleep=0).out)
    """)
    first = sis_project.sis("m", cfg, "-r", check=True)
    assert "missing output" not in first.stdout
    target = os.path.realpath(sis_project.root / "output" / "a.txt")
    os.unlink(target)
    again = sis_project.sis("m", cfg, "-r", check=True)
    assert (
        "missing output: output/a.txt -> " in again.stdout and "finished but the file is gone" in again.stdout
    )
    assert "1 registered output(s) are missing" in again.stdout


def test_variable_is_parsed_as_a_literal_never_run(tmp_path):
    import math

    from sisyphus.job_path import Variable

    var = Variable(str(tmp_path / "v"))
    var.set({"wer": float("nan"), "best": -float("inf"), "epochs": (1, 2), "tags": {"a"}, "none": None})
    value = var.get()
    assert math.isnan(value["wer"]) and value["best"] == -math.inf and value["epochs"] == (1, 2)
    assert value["tags"] == {"a"} and value["none"] is None
    pwned = tmp_path / "PWNED"
    for payload in (
        f"__import__('os').system('touch {pwned}')",
        f"open({str(pwned)!r}, 'w')",
        "().__class__",
    ):
        (tmp_path / "v").write_text(payload)
        with pytest.raises(ValueError, match="not a Python literal"):
            var.get()
    assert not pwned.exists()


def test_orphan_of_a_dead_worker_counts_as_running_and_is_never_doubled(sis_project):
    """Manager and worker both killed (no engine left to reap the task): the task's child in its own
    session keeps running; a new manager shows the task as running instead of starting a second child,
    and resumes it once the orphan has ended."""
    cfg = sis_project.write_config("""
        from sisyphus import tk
        from recipe.toy import SpawnJob
        def py():
            tk.register_output("count.txt", SpawnJob(30, step_time=0.2).out)
    """)
    manager = sis_project.sis_background("m", cfg, "-r")
    try:
        _wait_for(lambda: (d := _job_dir(sis_project, "SpawnJob.*")) and _read_int(f"{d}/work/ckpt") >= 3)
        job_dir = _job_dir(sis_project, "SpawnJob.*")
        worker = json.load(open(f"{job_dir}/usage.run.1"))["pid"]
        manager.kill()
        manager.wait()
        os.kill(worker, signal.SIGKILL)
    finally:
        if manager.poll() is None:
            manager.kill()
    orphan = int(open(f"{job_dir}/work/children").read().split()[0])
    assert _alive(orphan)
    proc = sis_project.sis("m", cfg, "-r", check=True)
    assert "running: toy/SpawnJob" in proc.stdout, proc.stdout
    children = [int(p) for p in open(f"{job_dir}/work/children").read().split()]
    assert children[0] == orphan and len(children) == 2
    assert not os.path.exists(f"{job_dir}/work/CONCURRENT"), "two children ran at once"
    assert open(f"{job_dir}/output/count.txt").read() == "30"
