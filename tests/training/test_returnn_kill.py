"""``kill -9`` of the worker while real RETURNN trains MDLM-ATAT (after its second epoch):

- no RETURNN process of the task survives its worker, the manager resubmits the task, and at no time do two
  RETURNN trainings of the job run at once;
- the resubmitted training resumes from the last checkpoint in the curriculum phase of its epoch (the
  phase is a function of RETURNN's checkpointed epoch);
- the checkpoint scores the same whether the scoring config names the estimator or not (scoring ignores
  it)."""

from __future__ import annotations

import ast
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from tests.pipeline_run import REPO

CONFIG = """
from dataclasses import replace

from config.pipeline import lm_returnn_config
from jobs.lm_eval import ComputePerplexityJob
from jobs.returnn import ReturnnTrainingJob
from recipe.lm.config import LmConfig, preset_dims
from recipe.returnn_glue.datasets import lm_train_dataset, text_ogg_zip_dev_dataset
from sisyphus import tk


def py():
    spm = tk.Path({spm!r})
    config = LmConfig(
        kind="mdlm", vocab_size={vocab}, eos_id={eos}, max_seq_len=16, **preset_dims("tiny"),
        importance_estimator=True, mix_alpha=1.0, curriculum=(0.25, 0.5),
    )
    returnn_config = lm_returnn_config(
        config,
        train_dataset=lm_train_dataset(tk.Path({train!r}), spm, partition_epoch=1),
        dev_dataset=text_ogg_zip_dev_dataset(tk.Path({dev!r}), spm),
        learning_rate=1e-3,
        warmup_steps=5,
        batch_size=100,
    )
    job = ReturnnTrainingJob(returnn_config, num_epochs=4, device="cpu", cpu_rqmt=1)
    tk.register_output("learning_rates", job.out_learning_rates)
    plain = replace(config, importance_estimator=False, mix_alpha=0.0)
    for name, scoring_config in (("with_estimator", config), ("without_estimator", plain)):
        ppl = ComputePerplexityJob(
            job.out_checkpoints[4], scoring_config, text_ogg_zip_dev_dataset(tk.Path({dev!r}), spm),
            num_samples=2, device="cpu",
        )
        tk.register_output(f"{{name}}.scores", ppl.out_scores)
"""


def returnn_pids(job_dir: str) -> list[int]:
    """Processes running RETURNN on this job's config (matched by their command line)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
            state = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"returnn" in cmdline and any(job_dir.encode() in part for part in cmdline) and state not in "ZX":
            pids.append(int(entry))
    return pids


def start_manager(tmp_path: Path, config: str, data) -> tuple[Path, subprocess.Popen]:
    """A Sisyphus project with ``config`` (formatted with the tiny LM data's paths) and ``sis m -r`` running
    in it (stdout piped); returns (project root, manager process)."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "settings.py", root / "settings.py")
    paths = {"spm": str(data.spm_model), "train": str(data.train_text), "dev": str(data.dev_ogg_zip)}
    (root / "kill_test.py").write_text(config.format(vocab=data.vocab_size, eos=data.eos_id, **paths))
    manager = subprocess.Popen(
        [sys.executable, "-m", "sisyphus", "m", "kill_test.py", "-r"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return root, manager


def training_job_dir(root: Path) -> str | None:
    """The work directory of the project's (only) ReturnnTrainingJob, once the manager created it."""
    found = glob.glob(str(root / "work" / "jobs" / "returnn" / "ReturnnTrainingJob.*"))
    return found[0] if found else None


def _top_level(pids: list[int]) -> list[int]:
    """The RETURNN processes among ``pids`` whose parent is none of them: one per training, also while a
    training has a forked helper process (which keeps its parent's command line)."""
    top = []
    for pid in pids:
        try:
            ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid not in pids:
            top.append(pid)
    return top


def _epoch_scores(path: Path) -> dict[int, dict[str, float]]:
    from recipe.returnn_glue.learning_rates import read_learning_rates

    return {epoch: data["error"] for epoch, data in read_learning_rates(str(path)).items()}


def test_kill_9_of_the_worker_leaves_no_returnn_and_training_resumes_in_its_curriculum_phase(
    tmp_path, tiny_lm_data
):
    root, manager = start_manager(tmp_path, CONFIG, tiny_lm_data)
    most_at_once = 0
    try:
        deadline = time.time() + 600
        job_dir = None
        while time.time() < deadline and not (
            job_dir and os.path.exists(f"{job_dir}/output/models/epoch.002.pt")
        ):
            job_dir = training_job_dir(root)
            time.sleep(0.1)
        first = returnn_pids(job_dir) if job_dir else []
        assert first, "RETURNN did not reach epoch 3"
        assert not os.path.exists(f"{job_dir}/output/models/epoch.004.pt")
        os.kill(json.load(open(f"{job_dir}/usage.run.1"))["pid"], signal.SIGKILL)
        end = time.time() + 30
        while time.time() < end and any(p in returnn_pids(job_dir) for p in first):
            time.sleep(0.2)
        assert not any(p in returnn_pids(job_dir) for p in first), "RETURNN survived its worker"
        while manager.poll() is None and time.time() < deadline:
            most_at_once = max(most_at_once, len(_top_level(returnn_pids(job_dir))))
            time.sleep(0.2)
        out = manager.communicate(timeout=60)[0]
    finally:
        if manager.poll() is None:
            manager.kill()
    assert manager.returncode == 0, out[-3000:]
    assert most_at_once == 1, out[-3000:]  # the resubmitted training, and only it (no two at once)
    assert not returnn_pids(job_dir)
    with tarfile.open(f"{job_dir}/finished.tar.gz") as logs:  # the finished job's logs
        log = logs.extractfile("log.run.1").read().decode()
    resumed = log.split("Load model ", 1)[-1]
    assert (
        resumed.startswith(f"{job_dir}/output/models/epoch.002.pt")
        and "Starting training at epoch 3" in resumed
    ), log[-5000:]
    scores = _epoch_scores(Path(job_dir) / "output" / "learning_rates")
    # p = (epoch - 1) / 4 = 0, .25, .5, .75 with boundaries (.25, .5): easy, medium, hard, hard
    assert [scores[e].get("train_loss_curriculum_phase") for e in (1, 2, 3, 4)] == [0.0, 1.0, 2.0, 2.0], (
        scores
    )
    assert all("train_loss_importance" in scores[e] and "dev_loss_nelbo" in scores[e] for e in scores), scores
    # RETURNN scoring builds the model without the estimator and skips its tensors in the checkpoint:
    # the same scores whether the scoring config has the estimator or not
    with_estimator = ast.literal_eval((root / "output" / "with_estimator.scores").read_text())
    assert with_estimator == ast.literal_eval((root / "output" / "without_estimator.scores").read_text())
    assert len(with_estimator) == len(tiny_lm_data.dev_text)
