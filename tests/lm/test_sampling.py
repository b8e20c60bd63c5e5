"""Sampling: valid tokens, EOS and length handling, KV cache == recomputation, nucleus and categorical draws."""

from __future__ import annotations

import pytest
import torch

from recipe.lm.build import build_model
from recipe.lm.sampling import (
    _block_probs,
    bos_cache,
    categorical,
    nucleus_filter,
    sample_ar,
    sample_bd3lm,
    sample_mdlm,
)


def _check_valid(samples, vocab: int, eos: int, max_len: int, expect_eos: bool) -> None:
    for seq in samples.sequences:
        assert 1 <= len(seq) <= max_len
        assert all(0 <= tok < vocab for tok in seq)
        assert eos not in seq[:-1]
        if expect_eos:
            assert seq[-1] == eos or len(seq) == max_len


def test_nucleus_filter_by_hand() -> None:
    probs = torch.tensor([[0.15, 0.5, 0.05, 0.3]], dtype=torch.float64)
    assert torch.allclose(
        nucleus_filter(probs, 0.7), torch.tensor([[0.0, 0.625, 0.0, 0.375]], dtype=torch.float64)
    )
    assert torch.allclose(
        nucleus_filter(probs, 0.5), torch.tensor([[0.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    )
    assert torch.equal(nucleus_filter(probs, 1.0), probs)
    with pytest.raises(ValueError, match="nucleus_p"):
        nucleus_filter(probs, 0.0)


def test_categorical_frequencies() -> None:
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3], dtype=torch.float64).expand(20000, 4)
    draws = categorical(probs, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).double() / 20000
    assert torch.allclose(freq, probs[0], atol=0.01)
    assert int((draws == 1).sum()) == 0


@pytest.mark.parametrize("time_conditioning", [False, True])
def test_block_kv_cache_equals_recomputation(spm_data, time_conditioning: bool) -> None:
    torch.manual_seed(0)
    cfg = {
        "kind": "bd3lm",
        "vocab_size": spm_data.vocab_size,
        "eos_id": spm_data.eos_id,
        "max_seq_len": 32,
        "preset": "tiny",
        "dropout": 0.0,
        "block_size": 4,
        "time_conditioning": time_conditioning,
    }
    model = build_model(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ada" in name:
                p.normal_(0, 0.2)
    prefix = spm_data.batch([0, 1])[0][:, :8].clamp(min=0)
    block = torch.tensor(
        [[model.mask_id, 7, model.mask_id, 9], [5, model.mask_id, model.mask_id, model.mask_id]]
    )
    sigma = torch.tensor([0.3, 1.2]) if time_conditioning else None
    with torch.no_grad():
        zero = None if sigma is None else torch.zeros(2)
        cache = bos_cache(model, 2, torch.device("cpu"))
        _, cache = model.backbone.hidden(prefix[:, :4], torch.arange(1, 5), sigma=zero, past_kv=cache)
        _, cache = model.backbone.hidden(prefix[:, 4:], torch.arange(5, 9), sigma=zero, past_kv=cache)
        cached = _block_probs(model, prefix, block, sigma, cache, 1.0)
        full = _block_probs(model, prefix, block, sigma, None, 1.0)
        other = _block_probs(model, prefix.flip(1), block, sigma, None, 1.0)
    assert torch.allclose(cached, full, atol=1e-6)
    assert not torch.allclose(full, other, atol=1e-3)


@pytest.mark.parametrize("first_hitting", [True, False])
def test_bd3lm_cache_path_equals_no_cache_path(spm_data, trained, first_hitting: bool) -> None:
    model = trained["bd3lm"]
    runs = [
        sample_bd3lm(
            model,
            6,
            40,
            num_steps=6,
            first_hitting=first_hitting,
            use_kv_cache=cache,
            generator=torch.Generator().manual_seed(3),
        )
        for cache in (True, False)
    ]
    assert runs[0].sequences == runs[1].sequences
    _check_valid(runs[0], spm_data.vocab_size, spm_data.eos_id, 40, expect_eos=True)
    assert len({len(s) for s in runs[0].sequences}) > 1


def test_bd3lm_samples_stop_at_eos_and_respect_lengths(spm_data, trained) -> None:
    model = trained["bd3lm"]
    gen = torch.Generator().manual_seed(0)
    out = sample_bd3lm(model, 8, 64, generator=gen)
    _check_valid(out, spm_data.vocab_size, spm_data.eos_id, 64, expect_eos=True)
    assert sum(s[-1] == spm_data.eos_id for s in out.sequences) >= 6
    blocks = sum(-(-len(s) // 4) for s in out.sequences)
    assert out.num_forward <= 1 + 5 * max(-(-len(s) // 4) for s in out.sequences) and blocks > 0
    for max_len in (10, 50):
        fixed = sample_bd3lm(model, 3, max_len, stop_at_eos=False, generator=gen)
        assert [len(s) for s in fixed.sequences] == [max_len] * 3
        assert all(0 <= tok < spm_data.vocab_size for s in fixed.sequences for tok in s)


def _tiny(kind: str, **extra):
    torch.manual_seed(0)
    cfg = {"kind": kind, "vocab_size": 4, "eos_id": 0, "max_seq_len": 8, "preset": "tiny", "dropout": 0.0}
    model = build_model({**cfg, **extra}).eval()
    with torch.no_grad():
        model.backbone.out.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(1))
    return model


def _pair_frequencies(sequences: list[list[int]]) -> torch.Tensor:
    freq = torch.zeros(4, 4, dtype=torch.float64)
    for a, b in sequences:
        freq[a, b] += 1
    return freq / len(sequences)


def test_first_hitting_and_ddpm_sample_the_exact_block_law() -> None:
    """One block of L' = 2 over V = 4, enumerated: first hitting unmasks a uniformly chosen position from
    x_theta(MM), then the other from x_theta given the first; one DDPM step draws both from x_theta(MM)."""
    model = _tiny("bd3lm", block_size=2)
    m = model.mask_id
    empty = torch.zeros(1, 0, dtype=torch.long)

    def probs(block: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return _block_probs(model, empty, torch.tensor([block]), None, None, 1.0)[0]

    p_mm = probs([m, m])
    exact_fh = torch.zeros(4, 4, dtype=torch.float64)
    for a in range(4):
        for b in range(4):
            exact_fh[a, b] = 0.5 * p_mm[0, a] * probs([a, m])[1, b] + 0.5 * p_mm[1, b] * probs([m, b])[0, a]
    assert exact_fh.sum().item() == pytest.approx(1.0)
    exact_ddpm = p_mm[0][:, None] * p_mm[1][None, :]
    assert (exact_fh - exact_ddpm).abs().max() > 0.05, "the two laws must differ for the test to be sharp"
    for first_hitting, exact in ((True, exact_fh), (False, exact_ddpm)):
        out = sample_bd3lm(
            model,
            20000,
            2,
            num_steps=1,
            first_hitting=first_hitting,
            stop_at_eos=False,
            generator=torch.Generator().manual_seed(0),
        )
        assert torch.allclose(_pair_frequencies(out.sequences), exact, atol=0.02), first_hitting


def test_mdlm_ddpm_two_steps_sample_the_exact_law() -> None:
    """Length 2, two DDPM steps: each token is unmasked at step 1 with probability 1/2, the rest at step 2
    (from the cached x_theta(MM) if nothing changed)."""
    model = _tiny("mdlm")
    m = model.mask_id

    def probs(x: list[int]) -> torch.Tensor:
        xt = torch.tensor([x])
        with torch.no_grad():
            return model.denoiser_log_probs(xt, torch.tensor([2]), xt)[0, :, :4].double().exp()

    p_mm = probs([m, m])
    exact = torch.zeros(4, 4, dtype=torch.float64)
    for a in range(4):
        for b in range(4):
            exact[a, b] = (
                0.5 * p_mm[0, a] * p_mm[1, b]
                + 0.25 * p_mm[0, a] * probs([a, m])[1, b]
                + 0.25 * p_mm[1, b] * probs([m, b])[0, a]
            )
    out = sample_mdlm(
        model, 20000, 2, num_steps=2, stop_at_eos=False, generator=torch.Generator().manual_seed(0)
    )
    assert torch.allclose(_pair_frequencies(out.sequences), exact, atol=0.02)


def test_mdlm_ddpm_cache_sampling(spm_data, trained) -> None:
    model = trained["mdlm"]
    out = sample_mdlm(model, 4, 12, num_steps=48, generator=torch.Generator().manual_seed(0))
    _check_valid(out, spm_data.vocab_size, spm_data.eos_id, 12, expect_eos=False)
    assert out.num_forward < 48, "steps without an unmasking reuse the cached denoiser output"
    assert any(len(s) == 12 or s[-1] == spm_data.eos_id for s in out.sequences)
    with pytest.raises(TypeError, match="MDLM"):
        sample_mdlm(trained["bd3lm"], 1, 4)


def test_ar_sampling(spm_data, trained) -> None:
    out = sample_ar(trained["ar"], 5, 40, generator=torch.Generator().manual_seed(0))
    _check_valid(out, spm_data.vocab_size, spm_data.eos_id, 40, expect_eos=True)
    assert sum(s[-1] == spm_data.eos_id for s in out.sequences) >= 4


@pytest.mark.parametrize("first_hitting", [True, False])
def test_time_conditioned_sampling_cache_equals_no_cache(first_hitting: bool) -> None:
    model = _tiny("bd3lm", block_size=2, time_conditioning=True)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ada" in name:
                p.normal_(0, 0.2)
    runs = [
        sample_bd3lm(
            model,
            16,
            9,
            num_steps=3,
            first_hitting=first_hitting,
            use_kv_cache=cache,
            generator=torch.Generator().manual_seed(0),
        )
        for cache in (True, False)
    ]
    assert runs[0].sequences == runs[1].sequences
    _check_valid(runs[0], 4, 0, 9, expect_eos=True)
    mdlm = sample_mdlm(_tiny("mdlm", time_conditioning=True), 4, 6, num_steps=5)
    _check_valid(mdlm, 4, 0, 6, expect_eos=False)
    assert mdlm.num_forward == 5
