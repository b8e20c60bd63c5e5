"""MDLM-ATAT in real RETURNN: after a ``kill -9`` of the training job's worker the resubmitted training
resumes from the last checkpoint in the curriculum phase of its epoch (the phase is a function of
RETURNN's checkpointed epoch); its checkpoint scores the same whether the scoring config names the
estimator or not (scoring ignores it)."""

from __future__ import annotations

import ast
import json
import os
import signal
import tarfile
import time
from pathlib import Path

import pytest

from tests.training.test_returnn_kill import returnn_pids, start_manager, training_job_dir

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


def _epoch_scores(path: Path) -> dict[int, dict[str, float]]:
    from recipe.returnn_glue.learning_rates import read_learning_rates

    return {epoch: data["error"] for epoch, data in read_learning_rates(str(path)).items()}


@pytest.mark.slow
def test_curriculum_phase_survives_kill_9_and_resume(tmp_path, tiny_lm_data):
    root, manager = start_manager(tmp_path, CONFIG, tiny_lm_data)
    try:
        deadline = time.time() + 600
        job_dir = None
        while time.time() < deadline and not (
            job_dir and os.path.exists(f"{job_dir}/output/models/epoch.002.pt")
        ):
            job_dir = training_job_dir(root)
            time.sleep(0.1)
        assert job_dir and returnn_pids(job_dir), "RETURNN did not reach epoch 3"
        assert not os.path.exists(f"{job_dir}/output/models/epoch.004.pt")
        os.kill(json.load(open(f"{job_dir}/usage.run.1"))["pid"], signal.SIGKILL)
        out = manager.communicate(timeout=max(1.0, deadline - time.time()))[0]
    finally:
        if manager.poll() is None:
            manager.kill()
    assert manager.returncode == 0, out[-3000:]
    with tarfile.open(f"{job_dir}/finished.tar.gz") as logs:  # the finished job's logs
        log = logs.extractfile("log.run.1").read().decode()
    resumed = log.split("Load model ", 1)[1]
    assert (
        resumed.startswith(f"{job_dir}/output/models/epoch.002.pt")
        and "Starting training at epoch 3" in resumed
    )
    scores = _epoch_scores(Path(job_dir) / "output" / "learning_rates")
    # p = (epoch - 1) / 4 = 0, .25, .5, .75 with boundaries (.25, .5): easy, medium, hard, hard
    assert [scores[e]["train_loss_curriculum_phase"] for e in (1, 2, 3, 4)] == [0.0, 1.0, 2.0, 2.0]
    assert all("train_loss_importance" in scores[e] and "dev_loss_nelbo" in scores[e] for e in scores)
    # RETURNN scoring builds the model without the estimator and skips its tensors in the checkpoint:
    # the same scores whether the scoring config has the estimator or not
    with_estimator = ast.literal_eval((root / "output" / "with_estimator.scores").read_text())
    assert with_estimator == ast.literal_eval((root / "output" / "without_estimator.scores").read_text())
    assert len(with_estimator) == len(tiny_lm_data.dev_text)
