"""A tiny LM pipeline of the project's real jobs (SentencePiece → MDLM training with RETURNN → best
checkpoint → perplexity) with ``sis manager`` and settings.py pointing at the SlurmEngine on the
local cluster: every task goes through sbatch and the graph finishes."""

from __future__ import annotations

import ast
import glob
import re
import textwrap
from pathlib import Path

import pytest

from tests.slurm.conftest import REPO, SETTINGS, SlurmProject
from tests.training.conftest import tiny_lm_data  # noqa: F401 - the session fixture

pytestmark = pytest.mark.slurm

PIPELINE = """
from config.pipeline import lm_returnn_config, train_lm
from jobs.lm_eval import ComputePerplexityJob
from jobs.returnn import GetBestPtCheckpointJob
from jobs.sentencepiece import TrainSentencePieceJob
from recipe.returnn_datasets import lm_train_dataset, text_ogg_zip_dev_dataset
from sisyphus import tk

TRAIN_TEXT = tk.Path({train!r})
DEV_OGG_ZIP = tk.Path({dev!r})


def py():
    spm = TrainSentencePieceJob(TRAIN_TEXT, 40, additional_options={{"hard_vocab_limit": False}})
    lm = {{"kind": "mdlm", "vocab_size": 40, "eos_id": 0, "preset": "tiny", "dropout": 0.0, "max_seq_len": 16}}
    config = lm_returnn_config(
        lm,
        train_dataset=lm_train_dataset(TRAIN_TEXT, spm.out_model, partition_epoch=4),
        dev_dataset=text_ogg_zip_dev_dataset(DEV_OGG_ZIP, spm.out_model),
        learning_rate=3e-3,
        warmup_steps=5,
        batch_size=400,
    )
    train = train_lm("lm/mdlm", config, num_epochs=2, cpu_rqmt=1, mem_rqmt=2, time_rqmt=0.2, device="cpu")
    best = GetBestPtCheckpointJob(train.out_model_dir, train.out_learning_rates, key="dev_loss_nelbo")
    ppl = ComputePerplexityJob(
        best.out_checkpoint, lm, text_ogg_zip_dev_dataset(DEV_OGG_ZIP, spm.out_model), num_samples=2,
        device="cpu", mem_rqmt=2,
    )
    tk.register_report("ppl.txt", {{"ppl": ppl.out_perplexity, "epoch": best.out_epoch}})
"""


@pytest.mark.slow
def test_tiny_lm_pipeline_through_slurm(tmp_path: Path, slurm_cluster, tiny_lm_data):  # noqa: F811
    root = tmp_path / "project"
    root.mkdir()
    (root / "settings.py").write_text(textwrap.dedent(SETTINGS))
    (root / "pipeline.py").write_text(
        PIPELINE.format(train=str(tiny_lm_data.train_text), dev=str(tiny_lm_data.dev_ogg_zip))
    )
    project = SlurmProject(root, slurm_cluster, extra_pythonpath=[str(REPO)])
    proc = project.sis("m", "pipeline.py", "-r", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All targets are done." in proc.stdout

    report = ast.literal_eval((root / "output" / "ppl.txt").read_text())
    assert report["epoch"] in (1, 2) and 1 < report["ppl"] < 40
    assert (root / "output" / "lm" / "mdlm" / "learning_rates").exists()
    # every task of every job went through sbatch: one Slurm job id per submit log
    submit_logs = sorted(glob.glob(str(root / "work" / "jobs" / "*" / "*" / "submit_log.*")))
    tasks = {re.sub(r"^.*/work/(.*)/submit_log\.(.*)$", r"\1:\2", p) for p in submit_logs}
    assert {re.sub(r"\.\w{12}:", ":", t) for t in tasks} == {
        "jobs/sentencepiece/TrainSentencePieceJob:run",
        "jobs/returnn/ReturnnTrainingJob:create_files",
        "jobs/returnn/ReturnnTrainingJob:run",
        "jobs/returnn/ReturnnTrainingJob:plot",
        "jobs/returnn/GetBestPtCheckpointJob:run",
        "jobs/lm_eval/ComputePerplexityJob:run",
    }
    ids = []
    for log in submit_logs:
        lines = Path(log).read_text().splitlines()
        assert len(lines) == 1, lines
        ids += [int(i) for i in re.findall(r"engine=slurm job_id=(\d+) ", lines[0])]
    assert len(set(ids)) == len(submit_logs)
