"""Training through real RETURNN: checkpoints, dev scores, reload, and BD3-LM finetuning from MDLM."""

from __future__ import annotations

import os

import pytest
import torch

from config.pipeline import lm_returnn_config
from jobs.returnn import GetBestPtCheckpointJob, ReturnnTrainingJob
from recipe.lm.build import build_model, load_model
from recipe.lm.config import LmConfig, preset_dims
from recipe.returnn_glue.datasets import lm_train_dataset, text_ogg_zip_dev_dataset
from recipe.returnn_glue.learning_rates import read_learning_rates
from recipe.returnn_glue.train_step import warmup_learning_rate
from sisyphus import tk

TINY = {**preset_dims("tiny"), "dropout": 0.0, "max_seq_len": 16}


def _lm_config(data, kind: str, **extra) -> LmConfig:
    return LmConfig(kind=kind, vocab_size=data.vocab_size, eos_id=data.eos_id, **{**TINY, **extra})


def _returnn_config(data, lm_config: LmConfig, **kwargs):
    return lm_returnn_config(
        lm_config,
        train_dataset=lm_train_dataset(
            tk.Path(str(data.train_text)), tk.Path(str(data.spm_model)), partition_epoch=2
        ),
        dev_dataset=text_ogg_zip_dev_dataset(tk.Path(str(data.dev_ogg_zip)), tk.Path(str(data.spm_model))),
        learning_rate=3e-3,
        warmup_steps=5,
        batch_size=400,
        **kwargs,
    )


@pytest.mark.slow
def test_mdlm_training_then_bd3lm_finetuning(fresh_graph, tiny_lm_data):
    mdlm_config = _lm_config(tiny_lm_data, "mdlm")
    job = ReturnnTrainingJob(
        _returnn_config(tiny_lm_data, mdlm_config), num_epochs=2, device="cpu", cpu_rqmt=1
    )
    tk.run_job(job)
    assert sorted(job.out_checkpoints) == [1, 2]
    for ckpt in job.out_checkpoints.values():
        assert ckpt.exists()
        model = load_model(mdlm_config, ckpt)  # reloads into the same architecture
        assert isinstance(model, torch.nn.Module)
    epochs = read_learning_rates(job.out_learning_rates.get_path())
    assert sorted(epochs) == [1, 2]
    dev = [epochs[e]["error"]["dev_loss_nelbo"] for e in (1, 2)]
    assert all(0 < v < 10 for v in dev)
    assert os.path.exists(job.out_plot_se.get_path()) and os.path.getsize(job.out_plot_se.get_path()) > 1000

    best = GetBestPtCheckpointJob(job.out_model_dir, job.out_learning_rates, key="dev_loss_nelbo")
    tk.run_job(best)
    assert best.out_epoch.get() in (1, 2) and best.out_checkpoint.exists()

    # BD3-LM (L'=4) initialised from the MDLM checkpoint
    bd3_config = _lm_config(tiny_lm_data, "bd3lm", block_size=4, noise_range=(0.5, 1.0))
    finetune = ReturnnTrainingJob(
        _returnn_config(tiny_lm_data, bd3_config, preload_checkpoint=best.out_checkpoint),
        num_epochs=1,
        device="cpu",
        cpu_rqmt=1,
    )
    tk.run_job(finetune)
    log = open(os.path.join(finetune._sis_path("work", abspath=True), "returnn.log")).read()
    assert "Pre-load weights for key 'init'" in log and "checkpoint.pt" in log
    assert finetune.out_checkpoints[1].exists()
    # the noise range belongs to the config, never to a (preloaded) checkpoint
    assert (
        "noise_clip"
        not in torch.load(finetune.out_checkpoints[1].path.get_path(), weights_only=True)["model"]
    )
    first_dev = read_learning_rates(finetune.out_learning_rates.get_path())[1]["error"]["dev_loss_nelbo"]
    assert first_dev < 10


def test_checkpoints_of_earlier_versions_with_a_noise_clip_entry_still_load(tiny_lm_data):
    """Earlier versions stored the training noise range in the state dict; it is config now."""
    mdlm = build_model(_lm_config(tiny_lm_data, "mdlm"))
    bd3 = build_model(_lm_config(tiny_lm_data, "bd3lm", block_size=4, noise_range=(0.5, 1.0)))
    legacy = {**mdlm.state_dict(), "noise_clip": torch.tensor([0.3, 0.8])}
    bd3.load_state_dict(legacy, strict=True)  # what RETURNN's preload_from_files does
    assert "noise_clip" not in bd3.state_dict()
    assert torch.equal(bd3.backbone.embed.weight, mdlm.backbone.embed.weight)


def test_mismatching_preload_is_a_clear_error(fresh_graph, tiny_lm_data, tmp_path):
    """A checkpoint of another size fails before training starts, naming the file."""
    other = build_model(_lm_config(tiny_lm_data, "mdlm", hidden=48, n_heads=2))
    bad = tmp_path / "other.pt"
    torch.save({"model": other.state_dict(), "epoch": 1}, bad)
    job = ReturnnTrainingJob(
        _returnn_config(
            tiny_lm_data,
            _lm_config(tiny_lm_data, "bd3lm", block_size=4),
            preload_checkpoint=tk.Path(str(bad)),
        ),
        num_epochs=1,
        device="cpu",
        cpu_rqmt=1,
    )
    with pytest.raises(RuntimeError) as e:
        tk.run_job(job)
    assert (
        "other.pt" in str(e.value)
        or "other.pt" in open(os.path.join(job._sis_path("work", abspath=True), "returnn.log")).read()
    )
    assert not job.out_checkpoints[1].exists()


def test_training_job_hash_ignores_epochs_and_rqmt(fresh_graph, tiny_lm_data):
    cfg = _returnn_config(tiny_lm_data, _lm_config(tiny_lm_data, "ar"))
    a = ReturnnTrainingJob(cfg, num_epochs=2)
    b = ReturnnTrainingJob(cfg, num_epochs=5, cpu_rqmt=1, mem_rqmt=8)
    c = ReturnnTrainingJob(
        _returnn_config(tiny_lm_data, _lm_config(tiny_lm_data, "ar", hidden=32)), num_epochs=2
    )
    assert a._sis_id() == b._sis_id() != c._sis_id()
    # inputs are part of the graph: the SentencePiece model and the data files
    assert {os.path.basename(p.get_path()) for p in a._sis_inputs} >= {
        "spm.model",
        "train.txt",
        "dev.ogg.zip",
    }


def test_nan_loss_is_a_clear_error_and_leaves_no_checkpoint(fresh_graph, tiny_lm_data):
    """A learning rate of 1e30 turns the weights to inf after one update; the next loss is non-finite."""
    config = _lm_config(tiny_lm_data, "ar")
    returnn_config = lm_returnn_config(
        config,
        train_dataset=lm_train_dataset(
            tk.Path(str(tiny_lm_data.train_text)), tk.Path(str(tiny_lm_data.spm_model))
        ),
        dev_dataset=text_ogg_zip_dev_dataset(
            tk.Path(str(tiny_lm_data.dev_ogg_zip)), tk.Path(str(tiny_lm_data.spm_model))
        ),
        learning_rate=1e30,
        warmup_steps=1,
        batch_size=400,
        grad_clip=0.0,
    )
    job = ReturnnTrainingJob(returnn_config, num_epochs=1, device="cpu", cpu_rqmt=1)
    with pytest.raises(RuntimeError):
        tk.run_job(job)
    log = open(os.path.join(job._sis_path("work", abspath=True), "returnn.log")).read()
    assert "non-finite nll loss" in log
    assert not job.out_checkpoints[1].exists() and not job._sis_finished()


def test_warmup_learning_rate_rises_linearly_then_stays_constant():
    rates = [warmup_learning_rate(1e-3, step, warmup_steps=4) for step in (0, 1, 3, 4, 1000)]
    assert rates == pytest.approx([2.5e-4, 5e-4, 1e-3, 1e-3, 1e-3])
    assert warmup_learning_rate(1e-3, 0, warmup_steps=0) == pytest.approx(1e-3)
