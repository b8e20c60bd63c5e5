"""Depth-adaptive masking through real RETURNN: spaCy parses -> HDF depth features -> MetaDataset with the
text -> a training step with mix_alpha > 0; features of another SentencePiece model fail naming the
sequence."""

from __future__ import annotations

import os

import pytest

from config.pipeline import lm_returnn_config
from jobs.dependency import ParseDependencyDepthJob
from jobs.returnn import ReturnnTrainingJob
from recipe.data.text_dict import write_text_dict
from recipe.lm.config import LmConfig, preset_dims
from recipe.returnn_glue.datasets import text_ogg_zip_depth_dataset
from recipe.returnn_glue.learning_rates import read_learning_rates
from sisyphus import tk


def _depth_training(data, depth_hdf) -> ReturnnTrainingJob:
    lm_config = LmConfig(
        kind="mdlm",
        vocab_size=data.vocab_size,
        eos_id=data.eos_id,
        max_seq_len=16,
        **preset_dims("tiny"),
        dropout=0.0,
        mix_alpha=0.5,
        depth_mode="dependency",
        reverse=True,
    )
    dataset = text_ogg_zip_depth_dataset(
        tk.Path(str(data.dev_ogg_zip)), tk.Path(str(data.spm_model)), depth_hdf
    )
    config = lm_returnn_config(
        lm_config,
        train_dataset=dataset,
        dev_dataset=dataset,
        learning_rate=3e-3,
        warmup_steps=2,
        batch_size=200,
    )
    return ReturnnTrainingJob(config, num_epochs=1, device="cpu", cpu_rqmt=1)


@pytest.mark.slow
def test_training_reads_text_and_depth_features_through_a_meta_dataset(fresh_graph, tiny_lm_data, tmp_path):
    text_dict = tmp_path / "dev_text.py"
    write_text_dict(text_dict, tiny_lm_data.dev_text)
    parse = ParseDependencyDepthJob(tk.Path(str(text_dict)), tk.Path(str(tiny_lm_data.spm_model)))
    tk.run_job(parse)

    job = _depth_training(tiny_lm_data, parse.out_hdf)
    tk.run_job(job)
    assert job.out_checkpoints[1].exists()
    dev = read_learning_rates(job.out_learning_rates.get_path())[1]["error"]["dev_loss_nelbo"]
    assert 0 < dev < 10

    # depth features of the same texts under another SentencePiece model (the first one shifted by 1)
    other = tmp_path / "other.hdf"
    from recipe.data.dependency_depth import read_depth_hdf, write_depth_hdf

    shifted = [
        (tag, (ids + 1) % tiny_lm_data.vocab_size, depths)
        for tag, (ids, depths) in read_depth_hdf(parse.out_hdf.get_path()).items()
    ]
    write_depth_hdf(other, tiny_lm_data.vocab_size, shifted)
    bad = _depth_training(tiny_lm_data, tk.Path(str(other)))
    with pytest.raises(RuntimeError):
        tk.run_job(bad)
    log = open(os.path.join(bad._sis_path("work", abspath=True), "returnn.log")).read()
    assert "DepthAlignmentError: sequence dev/" in log and "do not line up" in log
    assert not bad.out_checkpoints[1].exists()
