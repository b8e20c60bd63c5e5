"""BD3-LM: the 2L x 2L mask, the MDLM limit, block causality, clipped schedules and the var_min search."""

from __future__ import annotations

import pytest
import torch

from recipe.lm.block_diffusion import (
    BD3LM,
    bd3_attention_mask,
    bd3_training_mask,
    block_mean_losses,
    noise_range_candidates,
    search_noise_range,
)
from recipe.lm.build import build_model
from recipe.lm.mdlm import MDLM


def _perturb_time_conditioning(model: torch.nn.Module) -> None:
    """adaLN starts at zero (sigma has no effect); give it weights so that sigma matters."""
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ada" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize(("length", "block"), [(8, 2), (12, 4), (6, 1), (6, 6)])
def test_mask_matches_brute_force_rules(length: int, block: int) -> None:
    mask = bd3_attention_mask(length, block)
    assert mask.shape == (2 * length, 2 * length) and mask.dtype == torch.bool
    for i in range(2 * length):
        for j in range(2 * length):
            qi_clean, kj_clean = i >= length, j >= length
            bi, bj = (i % length) // block, (j % length) // block
            if not qi_clean and not kj_clean:
                want = bi == bj
            elif not qi_clean and kj_clean:
                want = bj < bi
            elif qi_clean and kj_clean:
                want = bj <= bi
            else:
                want = False
            assert bool(mask[i, j]) == want, (i, j)
    with pytest.raises(ValueError, match="multiple"):
        bd3_attention_mask(10, 4)
    full = bd3_training_mask(length, block)
    assert full.shape == (2 * length + 1, 2 * length + 1)
    assert torch.equal(full[1:, 1:], mask)
    assert bool(full[:, 0].all()), "every query sees BOS"
    assert full[0].tolist() == [True] + [False] * (2 * length), "BOS sees only itself"


def test_full_block_equals_mdlm_on_same_noise(spm_data) -> None:
    torch.manual_seed(0)
    mdlm = build_model(spm_data.lm_config("mdlm", time_conditioning=True))
    _perturb_time_conditioning(mdlm)
    bd3 = build_model(spm_data.lm_config("bd3lm", time_conditioning=True, block_size=32))
    bd3.load_state_dict(mdlm.state_dict(), strict=True)
    mdlm.eval(), bd3.eval()
    x0, lengths = spm_data.batch([0, 1, 2, 3])
    x0 = x0.masked_fill(x0 < 0, 0)
    t = torch.tensor([[0.15], [0.4], [0.65], [0.95]])
    mask = mdlm.draw_mask(t, lengths, x0.shape[1], torch.Generator().manual_seed(2), (1e-3, 1.0))
    with torch.no_grad():
        a = mdlm.nelbo_terms(x0, lengths, t, mask)
        b = bd3.nelbo_terms(x0, lengths, t, mask)
    assert int(mask.sum()) > 10
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    assert a.sum().item() > 0


def test_blocks_only_see_earlier_clean_blocks(spm_data) -> None:
    torch.manual_seed(0)
    model = build_model(spm_data.lm_config("bd3lm", block_size=4)).eval()
    x0, lengths = spm_data.batch([1, 2])
    x0 = x0.masked_fill(x0 < 0, 0)
    t = torch.full((2, 7), 0.6)
    mask = model.draw_mask(t, lengths, x0.shape[1], torch.Generator().manual_seed(0), (1e-3, 1.0))
    mask[:, :12] = torch.arange(12) % 3 == 0
    changed = x0.clone()
    changed[:, 12:] = (changed[:, 12:] + 1) % spm_data.vocab_size
    with torch.no_grad():
        a = model.nelbo_terms(x0, lengths, t, mask)
        b = model.nelbo_terms(changed, lengths, t, mask)
    assert torch.allclose(a[:, :12], b[:, :12], atol=1e-6)
    assert not torch.allclose(a[:, 12:], b[:, 12:], atol=1e-3)


def test_internal_padding_to_block_multiple(spm_data) -> None:
    torch.manual_seed(0)
    model = build_model(spm_data.lm_config("bd3lm", block_size=8)).eval()
    x0, lengths = spm_data.batch([0, 2, 3])
    x0 = x0.masked_fill(x0 < 0, 0)
    assert x0.shape[1] % 8 != 0
    t = torch.tensor([[0.3, 0.6, 0.9], [0.5, 0.2, 0.8], [0.7, 0.7, 0.1]])
    mask = model.draw_mask(t, lengths, x0.shape[1], torch.Generator().manual_seed(5), (1e-3, 1.0))
    wide = torch.nn.functional.pad(x0, (0, 24 - x0.shape[1]), value=3)
    wide_mask = torch.nn.functional.pad(mask, (0, 24 - x0.shape[1]))
    with torch.no_grad():
        a = model.nelbo_terms(x0, lengths, t, mask)
        b = model.nelbo_terms(wide, lengths, t, wide_mask)
    assert torch.allclose(a, b[:, : x0.shape[1]], atol=1e-5)


def test_block_size_must_divide_max_seq_len(spm_data) -> None:
    with pytest.raises(ValueError, match="LmConfig.block_size: 5 does not divide max_seq_len"):
        build_model(spm_data.lm_config("bd3lm", block_size=5))


def test_per_block_t_is_antithetic_over_batch_and_blocks(spm_data) -> None:
    model = build_model(spm_data.lm_config("bd3lm", block_size=4))
    t = model.draw_t(3, 5, torch.Generator().manual_seed(1), torch.device("cpu"), 0.5, 1.0)
    assert t.shape == (3, 5)
    gaps = torch.diff(torch.sort(t.flatten()).values)
    assert torch.allclose(gaps, torch.full_like(gaps, 0.5 / 15), atol=1e-6)
    assert torch.equal(model.expand_t(t, 18)[:, :8], t[:, :2].repeat_interleave(4, dim=1))


def test_resample_keeps_block_mask_fractions_in_clip_range(spm_data) -> None:
    model = build_model(spm_data.lm_config("bd3lm", block_size=4, resample=True))
    lengths = torch.full((64,), 32)
    g = torch.Generator().manual_seed(0)
    t = model.draw_t(64, 8, g, torch.device("cpu"), 0.45, 0.95)
    mask = model.draw_mask(t, lengths, 32, g, (0.45, 0.95))
    frac = mask.float().view(64, 8, 4).mean(-1)
    assert bool(((frac >= 0.45) & (frac <= 0.95)).all())
    plain = build_model(spm_data.lm_config("bd3lm", block_size=4))
    raw = plain.draw_mask(t, lengths, 32, torch.Generator().manual_seed(0), (0.45, 0.95))
    raw_frac = raw.float().view(64, 8, 4).mean(-1)
    assert not bool(((raw_frac >= 0.45) & (raw_frac <= 0.95)).all())


def test_noise_range_candidates() -> None:
    cands = noise_range_candidates([0.5, 0.6, 0.7, 0.8, 0.9], 0.05, 1e-3)
    assert cands[0] == (1e-3, 1.0)
    assert len(cands) == 1 + 11 + 9 + 7 + 5 + 3
    assert (1e-3, 0.5) in cands and (0.5, 1.0) in cands and (0.1, 1.0) in cands
    assert all(0 < lo < hi <= 1.0 + 1e-9 for lo, hi in cands)


def test_var_min_search_picks_the_lowest_variance_noise_range(spm_data) -> None:
    torch.manual_seed(0)
    model = build_model(spm_data.lm_config("bd3lm", block_size=4))
    assert isinstance(model, BD3LM) and isinstance(model, MDLM)
    model.train()
    batches = [spm_data.batch(list(range(0, 10))), spm_data.batch(list(range(10, 20)))]
    best, table = search_noise_range(model, batches, [0.5, 0.9], 0.1, torch.Generator().manual_seed(0))
    assert model.training
    assert len(table) == 1 + 6 + 2
    assert table[best] == min(table.values())
    assert best != (model.schedule.eps, 1.0)
    assert table[(model.schedule.eps, 1.0)] > 2 * table[best]


def test_block_mean_losses_by_hand() -> None:
    terms = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 0.0], [2.0, 0.0, 6.0, 0.0, 0.0, 0.0]])
    # blocks of 2; sequence 0 has 5 real tokens (last block 1 token), sequence 1 has 3
    got = block_mean_losses(terms, torch.tensor([5, 3]), 2)
    assert torch.equal(got, torch.tensor([1.5, 3.5, 5.0, 1.0, 6.0]))


def test_var_min_block_statistic_is_the_summed_variance_of_block_means(spm_data) -> None:
    """bd3lms' var_min statistic, recomputed here from the same noise draws: per batch the (unbiased)
    variance of the per-block mean losses, summed over the batches."""
    torch.manual_seed(0)
    model = build_model(spm_data.lm_config("bd3lm", block_size=4)).eval()
    batches = [spm_data.batch(list(range(0, 6))), spm_data.batch(list(range(6, 12)))]
    _, table = search_noise_range(
        model, batches, [0.5], 0.5, torch.Generator().manual_seed(3), statistic="block"
    )
    generator = torch.Generator().manual_seed(3)
    for low, high in table:
        total = 0.0
        for tokens, lengths in batches:
            x0 = tokens.masked_fill(torch.arange(tokens.shape[1])[None] >= lengths[:, None], 0)
            t = model.draw_t(x0.shape[0], model.num_blocks(x0.shape[1]), generator, x0.device, low, high)
            mask = model.draw_mask(t, lengths, x0.shape[1], generator, (low, high))
            with torch.no_grad():
                terms = model.nelbo_terms(x0, lengths, t, mask)
            means = []
            for i in range(len(lengths)):
                n = int(lengths[i])
                means += [float(terms[i, b : min(b + 4, n)].mean()) for b in range(0, n, 4)]
            total += float(torch.tensor(means).var())
        assert table[(low, high)] == pytest.approx(total, rel=1e-5)
    with pytest.raises(ValueError, match="statistic"):
        search_noise_range(model, batches, [0.5], 0.5, statistic="seq")
