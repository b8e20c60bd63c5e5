"""Nothing loaded from a file runs code: checkpoints are read as tensors only, RETURNN learning-rate files
as literals. Each crafted file carries a payload whose side effect (creating a file) must not happen."""

from __future__ import annotations

import math
import os
import pickle

import pytest
import torch

from recipe.lm.build import build_model, load_model
from recipe.lm.checkpoints import read_checkpoint
from recipe.lm.config import LmConfig, preset_dims
from recipe.returnn_glue.learning_rates import read_learning_rates


class _Payload:
    """Unpickling this calls os.system (what a crafted checkpoint does)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_checkpoint_is_refused_without_running_its_payload(tmp_path):
    marker = tmp_path / "payload_ran"
    config = LmConfig(kind="mdlm", vocab_size=20, eos_id=0, max_seq_len=8, **preset_dims("tiny"))
    crafted = tmp_path / "epoch.001.pt"
    state = build_model(config).state_dict()
    torch.save({"model": state, "epoch": 1, "extra": _Payload(str(marker))}, crafted)
    with pytest.raises(ValueError, match=r"epoch\.001\.pt cannot be read as tensors"):
        load_model(config, crafted)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(ValueError, match=r"plain\.pkl cannot be read as tensors"):
        read_checkpoint(plain)
    assert not marker.exists()
    honest = tmp_path / "epoch.002.pt"
    torch.save({"model": state, "epoch": 2, "step": 10, "effective_learning_rate": 1e-3}, honest)
    assert torch.equal(load_model(config, honest).backbone.embed.weight, state["backbone.embed.weight"])


def test_learning_rate_files_are_parsed_without_evaluating_code(tmp_path):
    good = tmp_path / "learning_rates"
    good.write_text(
        "{\n1: EpochData(learningRate=0.001, error={\n'dev_loss_nelbo': 5.5,\n':meta:epoch_num_train_steps': 3,\n"
        "'train_loss_nelbo': nan,\n}),\n2: EpochData(learningRate=-inf, error={}),\n}\n"
    )
    epochs = read_learning_rates(str(good))
    assert epochs[1]["error"]["dev_loss_nelbo"] == 5.5 and math.isnan(epochs[1]["error"]["train_loss_nelbo"])
    assert epochs[1]["meta"] == {"epoch_num_train_steps": 3} and epochs[2]["learning_rate"] == -math.inf
    marker = tmp_path / "payload_ran"
    bad = tmp_path / "bad_learning_rates"
    bad.write_text(f"{{1: EpochData(learningRate=__import__('os').system('touch {marker}'), error={{}})}}\n")
    with pytest.raises(ValueError, match=r"bad_learning_rates:1: not allowed in a learning-rate file"):
        read_learning_rates(str(bad))
    assert not marker.exists()
