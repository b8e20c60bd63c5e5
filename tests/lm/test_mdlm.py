"""MDLM loss math: SUBS zeroing, 1/t weights, antithetic t, padding invariance."""

from __future__ import annotations

import math

import pytest
import torch

from recipe.lm.build import build_model
from recipe.lm.config import LmConfig, preset_dims
from recipe.lm.mdlm import MDLM, subs_log_probs


def _mdlm(vocab: int, eos: int, **extra) -> MDLM:
    cfg = {"vocab_size": vocab, "eos_id": eos, "max_seq_len": 32, **preset_dims("tiny"), "dropout": 0.0}
    torch.manual_seed(0)
    model = build_model(LmConfig(kind="mdlm", **{**cfg, **extra}))
    assert isinstance(model, MDLM)
    return model.eval()


def test_subs_zero_masking_and_carry_over() -> None:
    mask_id = 5
    logits = torch.randn(2, 4, 5)
    xt = torch.tensor([[5, 1, 5, 3], [0, 5, 4, 5]])
    out = subs_log_probs(logits, xt, mask_id)
    assert out.shape == (2, 4, 6) and out.dtype == torch.float32
    assert bool(torch.isneginf(out[..., mask_id]).all())
    masked = xt == mask_id
    assert torch.allclose(out[masked][:, :mask_id].exp().sum(-1), torch.ones(int(masked.sum())))
    assert torch.allclose(out[masked][:, :mask_id], torch.log_softmax(logits[masked], -1))
    for b, i in (~masked).nonzero().tolist():
        row = out[b, i]
        assert row[xt[b, i]].item() == 0.0
        assert int(torch.isneginf(row).sum()) == mask_id


def test_nelbo_equals_full_subs_path_and_unmasked_contribute_zero(spm_data) -> None:
    model = _mdlm(spm_data.vocab_size, spm_data.eos_id)
    x0, lengths = spm_data.batch([0, 1, 2])
    x0 = x0.masked_fill(x0 < 0, 0)
    t = torch.tensor([[0.2], [0.5], [0.9]])
    mask = model.draw_mask(t, lengths, x0.shape[1], torch.Generator().manual_seed(1), (1e-3, 1.0))
    with torch.no_grad():
        fast = model.nelbo_terms(x0, lengths, t, mask)
        xt = torch.where(mask, model.mask_id, x0)
        full = model.denoiser_log_probs(xt, lengths, xt)
    logp_x0 = torch.gather(full, -1, x0[..., None])[..., 0]
    valid = torch.arange(x0.shape[1])[None] < lengths[:, None]
    assert bool((logp_x0[valid & ~mask] == 0).all())
    assert bool((fast[~mask] == 0).all())
    slow = -(1.0 / t) * torch.where(valid, logp_x0, torch.zeros(()))
    assert torch.allclose(fast, slow, atol=1e-5)
    assert int(mask.sum()) > 5


def test_hand_computed_loss_with_uniform_denoiser(spm_data) -> None:
    """Zero output layer -> uniform x_theta over V -> every masked token costs log V, weighted by 1/t."""
    model = _mdlm(spm_data.vocab_size, spm_data.eos_id)
    with torch.no_grad():
        model.backbone.out.weight.zero_()
    x0, lengths = spm_data.batch([3, 4])
    x0 = x0.masked_fill(x0 < 0, 0)
    t = torch.tensor([[0.25], [0.8]])
    mask = torch.zeros_like(x0, dtype=torch.bool)
    mask[0, [0, 3, 5]] = True
    mask[1, [1, 2]] = True
    with torch.no_grad():
        terms = model.nelbo_terms(x0, lengths, t, mask)
    log_v = math.log(spm_data.vocab_size)
    assert terms[0].sum().item() == pytest.approx(3 * log_v / 0.25, rel=1e-5)
    assert terms[1].sum().item() == pytest.approx(2 * log_v / 0.8, rel=1e-5)


def test_draw_t_is_antithetic_within_the_noise_range(spm_data) -> None:
    model = _mdlm(spm_data.vocab_size, spm_data.eos_id)
    t = model.draw_t(8, 1, torch.Generator().manual_seed(0), torch.device("cpu"), 0.2, 0.6)
    assert t.shape == (8, 1)
    gaps = torch.diff(torch.sort(t[:, 0]).values)
    assert torch.allclose(gaps, torch.full_like(gaps, 0.4 / 8), atol=1e-6)
    assert bool(((t >= 0.2) & (t < 0.6)).all())


def test_mask_rate_follows_schedule() -> None:
    model = _mdlm(60, 2)
    t = torch.full((4000, 1), 0.3)
    lengths = torch.full((4000,), 20)
    mask = model.draw_mask(t, lengths, 24, torch.Generator().manual_seed(0), (1e-3, 1.0))
    assert not bool(mask[:, 20:].any())
    assert mask[:, :20].float().mean().item() == pytest.approx(0.3 * (1 - 1e-3), abs=0.005)


def test_padding_never_matters(spm_data) -> None:
    model = _mdlm(spm_data.vocab_size, spm_data.eos_id)
    x0, lengths = spm_data.batch([0, 5])
    x0 = x0.masked_fill(x0 < 0, 0)
    t = torch.tensor([[0.7], [0.4]])
    mask = model.draw_mask(t, lengths, x0.shape[1], torch.Generator().manual_seed(4), (1e-3, 1.0))
    with torch.no_grad():
        ref = model.nelbo_terms(x0, lengths, t, mask)
        other = x0.clone()
        other[0, lengths[0] :] = 7
        wide = torch.nn.functional.pad(other, (0, 5), value=9)
        wide_mask = torch.nn.functional.pad(mask, (0, 5))
        got = model.nelbo_terms(wide, lengths, t, wide_mask)
    assert torch.allclose(got[:, : x0.shape[1]], ref, atol=1e-5)
    assert bool((got[:, x0.shape[1] :] == 0).all())


def test_loss_returns_sum_and_token_count(spm_data) -> None:
    model = _mdlm(spm_data.vocab_size, spm_data.eos_id)
    tokens, lengths = spm_data.batch([0, 1, 2, 3])
    total, count = model.loss(tokens, lengths, generator=torch.Generator().manual_seed(0))
    assert total.dtype == torch.float32 and total.dim() == 0 and total.item() > 0
    assert int(count) == int(lengths.sum())
    again, _ = model.loss(tokens, lengths, generator=torch.Generator().manual_seed(0))
    assert again.item() == total.item()
