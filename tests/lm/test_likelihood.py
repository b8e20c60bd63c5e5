"""Sequence scores: exact AR likelihood, the L' = 1 identity, the bound, agreement and variance reduction."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from recipe.lm.block_diffusion import BD3LM
from recipe.lm.build import build_model
from recipe.lm.config import LmConfig, preset_dims
from recipe.lm.likelihood import (
    _group_noise,
    align_to_pivot,
    aligned_block_mask,
    conditioned_block_mask,
    nelbo_samples,
    sequence_log_likelihood,
)


def _model(kind: str, vocab: int, eos: int, sharpen: float = 0.0, **extra):
    torch.manual_seed(0)
    cfg = {"vocab_size": vocab, "eos_id": eos, "max_seq_len": 32, **preset_dims("tiny"), "dropout": 0.0}
    model = build_model(LmConfig(kind=kind, **{**cfg, **extra}))
    if sharpen:
        with torch.no_grad():
            model.backbone.out.weight.normal_(0.0, sharpen, generator=torch.Generator().manual_seed(1))
    return model.eval()


def _kind_options(kind: str, **extra) -> tuple[str, dict]:
    """("bd3lms_layout_<kind>", options) -> (kind, options with bd3lms_layout and a max_seq_len whose
    successor the test block sizes divide); other kinds unchanged."""
    if kind.startswith("bd3lms_layout_"):
        return kind.removeprefix("bd3lms_layout_"), {**extra, "bd3lms_layout": True, "max_seq_len": 31}
    return kind, extra


def _all_sequences(vocab: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.tensor(list(itertools.product(range(vocab), repeat=length)))
    return tokens, torch.full((tokens.shape[0],), length)


def test_conditioned_mask_has_the_conditional_bernoulli_law() -> None:
    rows, n, p = 40000, 3, 0.3
    g = torch.Generator().manual_seed(0)
    u, v = torch.rand(rows, 4, generator=g), torch.rand(rows, 1, generator=g)
    mask = conditioned_block_mask(u, v, torch.full((rows, 1), p), torch.full((rows, 1), n), 4)
    assert not bool(mask[:, 3].any()), "positions beyond the real tokens stay unmasked"
    assert bool(mask[:, :3].any(dim=1).all()), "never empty"
    q = 1 - p
    for pattern in itertools.product([0, 1], repeat=n):
        k = sum(pattern)
        if k == 0:
            continue
        want = p**k * q ** (n - k) / (1 - q**n)
        got = (mask[:, :3] == torch.tensor(pattern, dtype=torch.bool)).all(dim=1).float().mean().item()
        assert got == pytest.approx(want, abs=0.01), pattern
    empty = conditioned_block_mask(u[:5], v[:5], torch.full((5, 1), 0.9), torch.zeros(5, 1), 4)
    assert not bool(empty.any())
    full = conditioned_block_mask(u[:5], v[:5], torch.ones(5, 1), torch.full((5, 1), 3), 4)
    assert bool(full[:, :3].all())


@pytest.mark.parametrize("noise_range", [(1e-3, 1.0), (0.3, 0.6)])
def test_block_size_one_gives_the_exact_autoregressive_likelihood(spm_data, noise_range) -> None:
    """L' = 1: each block is one token; its NELBO (1 - (1 - t)) / t * CE = CE for every t, so the estimate
    is the exact sum of log p(x_l | x_<l) of the same model (fully masked block given the clean prefix)."""
    model = _model("bd3lm", spm_data.vocab_size, spm_data.eos_id, sharpen=1.0, block_size=1)
    assert isinstance(model, BD3LM)
    tokens, lengths = spm_data.batch([0, 1, 2, 3, 4])
    x0 = tokens.masked_fill(tokens < 0, 0)
    valid = torch.arange(x0.shape[1])[None] < lengths[:, None]
    with torch.no_grad():
        exact = -model.masked_nll(x0, lengths, torch.where(valid, model.mask_id, x0), None).double().sum(1)
    for seed, k, shared in [(0, 1, False), (1, 3, True), (2, 5, False)]:
        got = sequence_log_likelihood(
            model,
            tokens,
            lengths,
            num_samples=k,
            noise_range=noise_range,
            shared_noise=shared,
            generator=torch.Generator().manual_seed(seed),
        )
        assert torch.allclose(got, exact, rtol=1e-6, atol=1e-4), (got, exact)
    assert bool((exact < -10).all())


def test_ar_score_is_a_normalised_exact_likelihood() -> None:
    model = _model("ar", 5, 0, sharpen=1.0)
    tokens, lengths = _all_sequences(5, 3)
    scores = sequence_log_likelihood(model, tokens, lengths)
    assert scores.dtype == torch.float64
    assert scores.exp().sum().item() == pytest.approx(1.0, abs=1e-5)
    assert scores.max() - scores.min() > 1.0


def test_diffusion_score_is_a_lower_bound() -> None:
    """Over all x in V^n the model's p sums to 1, so sum exp(-NELBO) <= 1; the L' = 1 BD3-LM is tight."""
    tokens, lengths = _all_sequences(5, 3)
    mdlm = _model("mdlm", 5, 0, sharpen=1.0)
    scores = sequence_log_likelihood(
        mdlm, tokens, lengths, num_samples=64, generator=torch.Generator().manual_seed(0)
    )
    total = scores.exp().sum().item()
    assert 0.3 < total < 1.0
    ar_like = _model("bd3lm", 5, 0, sharpen=1.0, block_size=1)
    tight = sequence_log_likelihood(ar_like, tokens, lengths, num_samples=1)
    assert tight.exp().sum().item() == pytest.approx(1.0, abs=1e-4)


def test_estimate_is_unbiased_against_the_training_nelbo(spm_data) -> None:
    model = _model("bd3lm", spm_data.vocab_size, spm_data.eos_id, sharpen=0.5, block_size=4)
    tokens, lengths = spm_data.batch([0])
    x0 = tokens
    reps = 400
    samples = nelbo_samples(
        model, tokens, lengths, num_samples=reps, generator=torch.Generator().manual_seed(0)
    )
    g = torch.Generator().manual_seed(1)
    rows, rows_len = x0.repeat(reps, 1), lengths.repeat(reps)
    t = model.draw_t(reps, model.num_blocks(x0.shape[1]), g, torch.device("cpu"), 1e-3, 1.0)
    with torch.no_grad():
        naive = model.nelbo_terms(
            rows, rows_len, t, model.draw_mask(t, rows_len, x0.shape[1], g, (1e-3, 1.0))
        )
    naive = naive.double().sum(1)
    se = (samples.var() / reps + naive.var() / reps).sqrt().item()
    assert abs(samples.mean().item() - naive.mean().item()) < 4 * se + 2e-3 * naive.mean().item()
    assert samples.var().item() < naive.var().item()


def test_two_seeds_agree(spm_data, trained) -> None:
    model = trained["mdlm"]
    tokens, lengths = spm_data.batch([0, 1, 2])
    a = nelbo_samples(model, tokens, lengths, num_samples=256, generator=torch.Generator().manual_seed(0))
    b = nelbo_samples(model, tokens, lengths, num_samples=256, generator=torch.Generator().manual_seed(1))
    se = ((a.var(1) + b.var(1)) / 256).sqrt()
    assert bool(((a.mean(1) - b.mean(1)).abs() < 4 * se).all())
    assert bool(((a.mean(1) - b.mean(1)).abs() < 0.1 * a.mean(1)).all())
    assert not torch.equal(a, b)


@pytest.mark.parametrize("kind", ["mdlm", "bd3lm"])
def test_shared_noise_reduces_variance_of_score_differences(spm_data, trained, kind: str) -> None:
    """Two n-best-like hypotheses (one token apart): with shared noise their score difference is much
    less noisy than with independent noise."""
    tokens, lengths = spm_data.batch([1, 1])
    tokens[1, 5] = (tokens[1, 5] + 1) % spm_data.vocab_size
    variances = {}
    for shared in (False, True):
        diffs = []
        for seed in range(40):
            scores = sequence_log_likelihood(
                trained[kind],
                tokens,
                lengths,
                num_samples=4,
                shared_noise=shared,
                generator=torch.Generator().manual_seed(seed),
            )
            diffs.append((scores[0] - scores[1]).item())
        variances[shared] = torch.tensor(diffs).var().item()
    assert variances[True] < 0.25 * variances[False], variances


def test_stratification_reduces_variance_of_scores(spm_data, trained) -> None:
    tokens, lengths = spm_data.batch([1, 4])
    variances = {}
    for stratified in (False, True):
        scores = torch.stack(
            [
                sequence_log_likelihood(
                    trained["bd3lm"],
                    tokens,
                    lengths,
                    num_samples=16,
                    stratified=stratified,
                    generator=torch.Generator().manual_seed(seed),
                )
                for seed in range(60)
            ]
        )
        variances[stratified] = scores.var(0).sum().item()
    assert variances[True] < 0.85 * variances[False], variances


def test_bad_arguments(spm_data) -> None:
    model = _model("mdlm", spm_data.vocab_size, spm_data.eos_id)
    tokens, lengths = spm_data.batch([0, 1])
    with pytest.raises(ValueError, match="noise_range"):
        nelbo_samples(model, tokens, lengths, noise_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="num_samples"):
        nelbo_samples(model, tokens, lengths, num_samples=0)
    with pytest.raises(ValueError, match="groups"):
        nelbo_samples(model, tokens, lengths, groups=torch.zeros(3, dtype=torch.long))


# --- the cached clean half, aligned noise, lattice t: equality and unbiasedness against enumeration ---


@pytest.mark.parametrize("time_conditioning", [False, True])
@pytest.mark.parametrize("block_size", [1, 4, 8])
@pytest.mark.parametrize("noise", ["shared", "aligned"])
def test_bd3lm_cached_clean_half_gives_the_uncached_scores(time_conditioning, block_size, noise) -> None:
    """x_0 keys/values computed once per sequence (``BD3LM.clean_kv``), only the noisy blocks run per
    sample, and blocks equal across hypotheses (same prefix, mask and t) run once: the same estimates as
    the full x_t + x_0 pass under the same noise draws (padding, a length-1 sequence, lengths not a
    multiple of L', several chunks)."""
    model = _model("bd3lm", 11, 0, block_size=block_size, time_conditioning=time_conditioning)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(p.numel()))
    tokens = torch.randint(0, 11, (4, 13), generator=torch.Generator().manual_seed(0))
    tokens[1] = tokens[0]
    tokens[1, 9] = (tokens[0, 9] + 1) % 11  # a hypothesis sharing the first 9 tokens: shared units
    lengths, groups = torch.tensor([13, 12, 1, 10]), torch.tensor([0, 0, 1, 1])
    got, want = (
        nelbo_samples(
            model,
            tokens,
            lengths,
            5,
            groups=groups,
            generator=torch.Generator().manual_seed(3),
            max_rows=rows,
            noise=noise,
            cache=cache,
        )
        for cache, rows in ((True, 7), (False, 256))
    )
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), (got - want).abs().max()
    assert bool((want > 1.0).all())


def test_aligned_mask_has_the_conditional_bernoulli_law() -> None:
    rows, n, p = 40000, 3, 0.3
    g = torch.Generator().manual_seed(0)
    u = torch.rand(rows, 4, generator=g)
    mask = aligned_block_mask(u, torch.full((rows, 1), p), torch.full((rows, 1), n), 4)
    assert not bool(mask[:, 3].any()) and bool(mask[:, :3].any(dim=1).all())
    q = 1 - p
    for pattern in itertools.product([0, 1], repeat=n):
        if sum(pattern):
            want = p ** sum(pattern) * q ** (n - sum(pattern)) / (1 - q**n)
            got = (mask[:, :3] == torch.tensor(pattern, dtype=torch.bool)).all(dim=1).float().mean().item()
            assert got == pytest.approx(want, abs=0.01), pattern
    two = aligned_block_mask(
        u[:, :4], torch.tensor([[0.9, 0.05]]).expand(rows, 2), torch.tensor([[2, 1]]).expand(rows, 2), 2
    )
    assert bool(two[:, 2].all()) and not bool(two[:, 3].any())  # a 1-token block is always masked
    assert two[:, :2].all(dim=1).float().mean().item() == pytest.approx(0.81 / 0.99, abs=0.01)


def test_aligned_masks_agree_on_aligned_tokens() -> None:
    """An insertion near the start: with aligned noise the later tokens keep the pivot's mask (mostly);
    with noise shared by position they do not."""
    pivot = [3, 4, 5, 6, 7, 8, 9, 2, 1]
    assert align_to_pivot([3, 10, 4, 5, 6, 7, 8, 9, 2, 1], pivot) == [0, -1, 1, 2, 3, 4, 5, 6, 7, 8]
    assert align_to_pivot([3, 10, 5], pivot)[:2] == [0, 1]
    model = _model("mdlm", 11, 0)
    tokens = torch.tensor([pivot + [0], [3, 10, *pivot[1:]]])
    lengths = torch.tensor([9, 10])
    agree = {}
    for noise in ("shared", "aligned"):
        t, mask = _group_noise(
            model, tokens, lengths, 400, (1e-3, 1.0), torch.Generator().manual_seed(0), True, noise, False
        )
        agree[noise] = (mask[0, :, 1:9] == mask[1, :, 2:10]).all(dim=1).float().mean().item()
        assert torch.equal(t[0], t[1])
    assert agree["aligned"] > 0.85 and agree["shared"] < 0.5, agree


@torch.no_grad()
def _exact_nelbo(
    model, ids: list[int], beta: float = 1e-3, omega: float = 1.0, skip_first: bool = False
) -> float:
    """NELBO of one sequence (no time conditioning) by enumerating, per block, all non-empty masks M of
    its n_b tokens (earlier blocks clean): sum_b sum_M CE(M) E_t[t^(|M| - 1) (1 - t)^(n_b - |M|)], the
    t-integral in closed form. skip_first: position 0 is never masked (bd3lms' ignore_bos)."""
    n = len(ids)
    x = torch.tensor([ids])
    block = model.block_len(n)
    total = 0.0
    for start in range(-model.bos_offset, n, block):  # BOS inside block 0 (bd3lms layout) takes a slot
        pos = [p for p in range(max(start, 0), min(n, start + block)) if p or not skip_first]
        for m in itertools.product((False, True), repeat=len(pos)):
            k = sum(m)
            if not k:
                continue
            mask = torch.zeros(1, n, dtype=torch.bool)
            mask[0, [p for p, on in zip(pos, m, strict=True) if on]] = True
            ce = float(
                model.masked_nll(x, torch.tensor([n]), torch.where(mask, model.mask_id, x), None).sum()
            )
            rest = len(pos) - k
            integral = sum(
                math.comb(rest, j) * (-1) ** j * (omega ** (k + j) - beta ** (k + j)) / (k + j)
                for j in range(rest + 1)
            )
            total += ce * integral / (omega - beta)
    return total


@pytest.mark.parametrize(
    ("kind", "noise", "lattice", "stratified"),
    [
        ("mdlm", "independent", False, False),
        ("mdlm", "shared", False, True),
        ("mdlm", "aligned", False, True),
        ("mdlm", "aligned", True, True),
        ("mdlm", "shared", True, True),
        ("bd3lm", "shared", False, True),
        ("bd3lm", "aligned", False, True),
        ("bd3lm", "aligned", True, True),
        ("bd3lm", "aligned", False, False),
        ("bd3lms_layout_bd3lm", "shared", False, True),
        ("bd3lms_layout_bd3lm", "aligned", False, True),
        ("bd3lms_layout_mdlm", "aligned", True, True),
    ],
)
def test_every_noise_option_is_unbiased_against_exact_enumeration(kind, noise, lattice, stratified) -> None:
    """Each hypothesis's estimate (K = 4 samples) averaged over 300 independent groups equals its exact
    NELBO within 4.5 standard errors; the group holds a pivot, an insertion, a deletion and a
    substitution so that the aligned noise maps uniforms and block times across hypotheses."""
    kind, extra = _kind_options(kind, **({"block_size": 2} if kind.endswith("bd3lm") else {}))
    model = _model(kind, 7, 0, sharpen=1.0, **extra)
    hyps = [[3, 4, 5, 6, 0], [3, 2, 4, 5, 6, 0], [3, 5, 6, 0], [3, 4, 1, 6, 0]]
    exact = torch.tensor([_exact_nelbo(model, h) for h in hyps], dtype=torch.float64)
    reps, k = 300, 4
    tokens = torch.zeros(len(hyps), 6, dtype=torch.long)
    for i, h in enumerate(hyps):
        tokens[i, : len(h)] = torch.tensor(h)
    lengths = torch.tensor([len(h) for h in hyps])
    groups = torch.arange(reps).repeat_interleave(len(hyps))
    samples = nelbo_samples(
        model,
        tokens.repeat(reps, 1),
        lengths.repeat(reps),
        k,
        groups=None if noise == "independent" else groups,
        stratified=stratified,
        generator=torch.Generator().manual_seed(0),
        noise="shared" if noise == "independent" else noise,
        lattice=lattice,
        max_rows=4096,
    )
    estimates = samples.mean(1).view(reps, len(hyps))
    se = estimates.std(0) / reps**0.5
    assert bool(((estimates.mean(0) - exact).abs() < 4.5 * se).all()), (estimates.mean(0), exact, se)
    assert bool((se < 0.05 * exact).all())


@pytest.mark.parametrize(
    ("kind", "block_size", "noise"),
    [
        ("mdlm", None, "shared"),
        ("bd3lm", 2, "shared"),
        ("bd3lm", 4, "shared"),
        ("bd3lm", 2, "aligned"),
        ("bd3lms_layout_bd3lm", 2, "shared"),
        ("bd3lms_layout_mdlm", None, "aligned"),
    ],
)
def test_ignore_first_is_unbiased_for_the_nelbo_without_position_zero(kind, block_size, noise) -> None:
    """bd3lms' ignore_bos: position 0 is never masked; the estimate (cached BD3-LM path included)
    averages to the NELBO enumerated over the masks of positions 1.. only (also after the model's own
    BOS inside block 0 in the bd3lms layout)."""
    kind, extra = _kind_options(kind, **({"block_size": block_size} if block_size else {}))
    model = _model(kind, 7, 0, sharpen=1.0, **extra)
    ids = [0, 3, 4, 5, 6, 0]
    exact = _exact_nelbo(model, ids, skip_first=True)
    assert abs(exact - _exact_nelbo(model, ids)) > 0.1
    reps = 400
    tokens = torch.tensor([ids]).repeat(reps, 1)
    lengths = torch.full((reps,), len(ids))
    samples = nelbo_samples(
        model,
        tokens,
        lengths,
        4,
        generator=torch.Generator().manual_seed(0),
        ignore_first=True,
        max_rows=4096,
        groups=torch.arange(reps),
        noise=noise,
    )
    estimates = samples.mean(1)
    se = float(estimates.std()) / reps**0.5
    assert abs(float(estimates.mean()) - exact) < 4.5 * se, (float(estimates.mean()), exact, se)


def test_ignore_first_with_one_token_blocks_is_the_exact_likelihood_of_the_rest(spm_data) -> None:
    """L' = 1: block 0 (position 0) adds nothing, every other block is exactly -log p(x_l | x_<l); the AR
    LM's score drops log p(x_0 | BOS) likewise."""
    tokens, lengths = spm_data.batch([0, 1, 2])
    x0 = tokens.masked_fill(tokens < 0, 0)
    valid = torch.arange(x0.shape[1])[None] < lengths[:, None]
    model = _model("bd3lm", spm_data.vocab_size, spm_data.eos_id, sharpen=1.0, block_size=1)
    with torch.no_grad():
        per_token = -model.masked_nll(x0, lengths, torch.where(valid, model.mask_id, x0), None).double()
    for cache in (True, False):
        got = sequence_log_likelihood(model, tokens, lengths, num_samples=2, ignore_first=True, cache=cache)
        assert torch.allclose(got, per_token[:, 1:].sum(1), rtol=1e-6, atol=1e-4), cache
    ar = _model("ar", spm_data.vocab_size, spm_data.eos_id, sharpen=1.0)
    with torch.no_grad():
        ar_tokens = ar.token_log_probs(tokens, lengths).double()
    assert torch.allclose(
        sequence_log_likelihood(ar, tokens, lengths, ignore_first=True), ar_tokens[:, 1:].sum(1)
    )
