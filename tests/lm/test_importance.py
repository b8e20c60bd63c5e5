"""ATAT (``recipe.lm.importance``): the curriculum's phases and focus weights, the estimator's targets and
training, and scoring that ignores the estimator."""

from __future__ import annotations

import pytest
import torch

from recipe.lm.importance import curriculum_phase, focus_weights, importance_targets
from recipe.returnn_glue.train_step import training_progress


def test_curriculum_switches_phase_at_the_first_epoch_past_each_boundary():
    # 10 (sub-)epochs with boundaries .3 / .7: p = (epoch - 1) / 10, easy while p < .3, medium while p < .7
    phases = [curriculum_phase(training_progress(epoch, 10), (0.3, 0.7)) for epoch in range(1, 11)]
    assert phases == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    # 8 epochs (the default experiment's pretraining): p = 0, .125, ..., .875
    phases = [curriculum_phase(training_progress(epoch, 8), (0.3, 0.7)) for epoch in range(1, 9)]
    assert phases == [0, 0, 0, 1, 1, 1, 2, 2]
    assert [curriculum_phase(p, (0.0, 1.0)) for p in (0.0, 0.5, 0.999)] == [1, 1, 1]
    with pytest.raises(ValueError, match="epoch 9 is not in 1..num_epochs=8"):
        training_progress(9, 8)


def test_focus_weights_pick_the_phase_band_and_have_mean_one_over_real_tokens():
    importance = torch.tensor([[0.1, 0.5, 0.9, 0.29, 0.3], [0.7, 1.0, 0.2, 0.0, 0.0]])
    lengths = torch.tensor([5, 3])
    expected_focus = {  # tokens in [0, .3) / [.3, .7) / [.7, 1] of the real ones
        0: [[1, 0, 0, 1, 0], [0, 0, 1, 0, 0]],
        1: [[0, 1, 0, 0, 1], [0, 0, 0, 0, 0]],
        2: [[0, 0, 1, 0, 0], [1, 1, 0, 0, 0]],
    }
    for phase, focus in expected_focus.items():
        w = focus_weights(importance, lengths, phase, 2.0)
        v = 1.0 + torch.tensor(focus, dtype=torch.float32)  # f = 2 on the band, 1 elsewhere
        for b, n in enumerate(lengths.tolist()):
            assert torch.allclose(w[b, :n], v[b, :n] / v[b, :n].mean())
            assert torch.allclose(w[b, :n].mean(), torch.tensor(1.0))
            assert bool((w[b, n:] == 1.0).all())


def test_importance_targets_are_the_cross_entropy_scaled_to_unit_range_over_masked_tokens():
    nll = torch.tensor([[2.0, 0.0, 4.0], [3.0, 7.0, 0.0]], requires_grad=True)
    masked = torch.tensor([[True, False, True], [True, False, False]])
    y = importance_targets(nll, masked)
    assert torch.allclose(y, torch.tensor([[0.0, 0.0, 1.0], [0.5, 0.0, 0.0]]))
    assert not y.requires_grad
    assert bool((importance_targets(nll, torch.zeros_like(masked)) == 0).all())


@pytest.mark.slow
def test_estimator_loss_falls_on_a_tiny_run(spm_data):
    from recipe.lm.build import build_model
    from recipe.lm.importance import atat_loss

    torch.manual_seed(0)
    config = spm_data.lm_config("mdlm", importance_estimator=True, mix_alpha=1.0)
    model = build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    tokens, lengths = spm_data.batch(list(range(len(spm_data.lengths))))
    estimator_losses = []
    for step in range(20):
        total, count, estimator_loss = atat_loss(
            model, tokens, lengths, (config.sampling_eps, 1.0), step * 3 // 20, generator
        )
        optimizer.zero_grad()
        (total / count + config.importance_loss_weight * estimator_loss).backward()
        optimizer.step()
        estimator_losses.append(estimator_loss.item())
    first, last = sum(estimator_losses[:5]) / 5, sum(estimator_losses[-5:]) / 5
    assert last < 0.6 * first, (first, last)


def test_scoring_loads_a_checkpoint_with_or_without_the_estimator_the_same(spm_data, tmp_path):
    from dataclasses import replace

    from recipe.lm.build import build_model, load_model
    from recipe.lm.likelihood import sequence_log_likelihood

    torch.manual_seed(1)
    config = spm_data.lm_config("bd3lm", importance_estimator=True, mix_alpha=1.0, ema_decay=0.9)
    model = build_model(config)
    model.ema.update(model)
    state = model.state_dict()
    assert any(k.startswith("importance.") for k in state) and any("shadow__importance__" in k for k in state)
    torch.save({"model": state, "epoch": 1}, tmp_path / "epoch.001.pt")
    torch.save({"model": {k: v for k, v in state.items() if "importance" not in k}}, tmp_path / "plain.pt")
    plain = replace(config, importance_estimator=False, mix_alpha=0.0)
    tokens, lengths = spm_data.batch([0, 1, 2])
    scores = []
    for scoring_config, checkpoint in (
        (config, "epoch.001.pt"),
        (plain, "epoch.001.pt"),
        (config, "plain.pt"),
    ):
        scorer = load_model(scoring_config, tmp_path / checkpoint)
        assert not hasattr(scorer, "importance")
        generator = torch.Generator().manual_seed(0)
        scores.append(sequence_log_likelihood(scorer, tokens, lengths, num_samples=2, generator=generator))
    assert torch.equal(scores[0], scores[1]) and torch.equal(scores[0], scores[2])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "ar", "importance_estimator": True}, r"LmConfig\.importance_estimator: only diffusion LMs"),
        ({"curriculum": (0.7, 0.3)}, r"LmConfig\.curriculum: must be \(b_1, b_2\) with 0 <= b_1 <= b_2 <= 1"),
        ({"focus_weight": 0.0}, r"LmConfig\.focus_weight: must be positive"),
        ({"mix_alpha": 0.5}, r"LmConfig\.mix_alpha: .*depth_mode or importance_estimator"),
        (
            {"importance_estimator": True, "depth_mode": "dependency", "mix_alpha": 0.5},
            r"LmConfig\.importance_estimator: one token weight source",
        ),
    ],
)
def test_wrong_atat_options_name_the_field(fields, message):
    from recipe.lm.config import LmConfig

    base = {"kind": "mdlm", "vocab_size": 10, "eos_id": 0, "max_seq_len": 8, "hidden": 8, "n_heads": 2}
    with pytest.raises(ValueError, match=message):
        LmConfig(**{**base, **fields})
    assert LmConfig(
        **{**base, "importance_estimator": True, "mix_alpha": 0.5, "curriculum": [0.2, 0.9]}
    ).curriculum == (0.2, 0.9)
