"""Sampling: the samplers' output laws against laws enumerated from the models' public outputs (tiny
vocabulary and length, chi-square with a fixed seed), valid tokens, EOS and length handling, KV cache ==
recomputation, nucleus and categorical draws."""

from __future__ import annotations

import collections
import functools
import itertools
import math

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


def test_bd3lms_nucleus_rule_drops_the_token_crossing_p() -> None:
    """Sorted 0.5, 0.3, 0.15, 0.05 (cumulative 0.5, 0.8, 0.95, 1.0): at p = 0.7 the project keeps 0.3
    (the crossing token), bd3lms keeps only the tokens with cumulative mass <= 0.7; the top token always
    stays (p = 0.4); at p = 0.95 both keep three (bd3lms: 0.95 <= 0.95)."""
    probs = torch.tensor([[0.15, 0.5, 0.05, 0.3]], dtype=torch.float64)
    for p, want in [
        (0.7, [0.0, 1.0, 0.0, 0.0]),
        (0.4, [0.0, 1.0, 0.0, 0.0]),
        (0.81, [0.0, 0.625, 0.0, 0.375]),
    ]:
        got = nucleus_filter(probs, p, "bd3lms")
        assert torch.allclose(got, torch.tensor([want], dtype=torch.float64)), (p, got)
    assert torch.allclose(nucleus_filter(probs, 0.7, "project"), nucleus_filter(probs, 0.81, "bd3lms"))
    with pytest.raises(ValueError, match="nucleus_rule"):
        nucleus_filter(probs, 0.7, "topk")


def test_categorical_frequencies() -> None:
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3], dtype=torch.float64).expand(20000, 4)
    draws = categorical(probs, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).double() / 20000
    assert torch.allclose(freq, probs[0], atol=0.01)
    assert int((draws == 1).sum()) == 0


@pytest.mark.parametrize("time_conditioning", [False, True])
def test_block_probs_through_the_kv_cache_equal_the_training_denoiser(
    spm_data, time_conditioning: bool
) -> None:
    """x_theta of a partly masked block after two clean blocks, from the sampler's KV-cache path and
    from its recomputation path, equals the training-path denoiser (one pass over [x_t ; x_0])."""
    torch.manual_seed(0)
    model = build_model(spm_data.lm_config("bd3lm", block_size=4, time_conditioning=time_conditioning)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ada" in name:
                p.normal_(0, 0.2)
    prefix = spm_data.batch([0, 1])[0][:, :8].clamp(min=0)
    m = model.mask_id
    block = torch.tensor([[m, 7, m, 9], [5, m, m, m]])
    sigma = torch.tensor([0.3, 1.2]) if time_conditioning else None
    with torch.no_grad():
        zero = None if sigma is None else torch.zeros(2)
        cache = bos_cache(model, 2, torch.device("cpu"))
        _, cache = model.backbone.hidden(prefix[:, :4], torch.arange(1, 5), sigma=zero, past_kv=cache)
        _, cache = model.backbone.hidden(prefix[:, 4:], torch.arange(5, 9), sigma=zero, past_kv=cache)
        cached = _block_probs(model, prefix, block, sigma, cache, 1.0)
        recomputed = _block_probs(model, prefix, block, sigma, None, 1.0)
        x0 = torch.cat((prefix, torch.zeros_like(block)), dim=1)
        xt = torch.cat((prefix, block), dim=1)
        sigma_pos = None if sigma is None else sigma[:, None].expand(2, 12)
        training = model.denoiser_log_probs(x0, torch.tensor([12, 12]), xt, sigma_pos)[:, 8:]
        reference = training[..., : model.vocab_size].double().exp()
        # masked positions: a distribution over V; unmasked ones copy their input (SUBS carry-over)
        other = _block_probs(model, prefix.flip(1), block, sigma, None, 1.0)
    masked = block == m
    assert torch.allclose(cached[masked], reference[masked], atol=1e-5)
    assert torch.allclose(recomputed[masked], reference[masked], atol=1e-5)
    assert not torch.allclose(recomputed[masked], other[masked], atol=1e-3)


def _with_and_without_cache(model, num: int, max_len: int, *, seed: int, **options) -> list:
    """BD3-LM samples drawn with the KV cache and by recomputation from the same seed; they must agree."""
    runs = [
        sample_bd3lm(
            model, num, max_len, use_kv_cache=cache, generator=torch.Generator().manual_seed(seed), **options
        )
        for cache in (True, False)
    ]
    assert runs[0].sequences == runs[1].sequences
    return runs


@pytest.mark.parametrize("first_hitting", [True, False])
def test_bd3lm_cache_path_equals_no_cache_path(spm_data, trained, first_hitting: bool) -> None:
    model = trained["bd3lm"]
    runs = _with_and_without_cache(model, 6, 40, num_steps=6, first_hitting=first_hitting, seed=3)
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


V = 4  # vocabulary of the models whose sampling law is enumerated (EOS = 0)


def _random_model(spm_data, kind: str, **extra):
    """An untrained tiny model over V = 4 tokens whose output layer spreads the logits over a few nats,
    so that its token distributions are far from uniform and differ between contexts."""
    torch.manual_seed(0)
    model = build_model(spm_data.lm_config(kind, vocab_size=V, eos_id=0, max_seq_len=8, **extra)).eval()
    with torch.no_grad():
        model.backbone.out.weight.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(1))
    return model


# --- the target laws, enumerated from the models' public outputs (not from the sampler's helpers) ---


def _mdlm_x_theta(model):
    """state (tuple, None = [MASK]) -> x_theta(state) [n, V] float64, from the SUBS denoiser output."""

    @functools.cache
    def x_theta(state: tuple) -> torch.Tensor:
        xt = torch.tensor([[model.mask_id if s is None else s for s in state]])
        with torch.no_grad():
            logp = model.denoiser_log_probs(xt, torch.tensor([len(state)]), xt)
        return logp[0, :, :V].double().exp()

    return x_theta


def _bd3lm_x_theta(model, prefix: tuple):
    """x_theta of the block after the clean ``prefix`` (whole blocks), read from the training-path
    denoiser: one pass over [x_t ; x_0] where x_0 holds the clean prefix."""

    @functools.cache
    def x_theta(state: tuple) -> torch.Tensor:
        block = [model.mask_id if s is None else s for s in state]
        x0 = torch.tensor([[*prefix, *([0] * len(state))]])
        xt = torch.tensor([[*prefix, *block]])
        with torch.no_grad():
            logp = model.denoiser_log_probs(x0, torch.tensor([x0.shape[1]]), xt)
        return logp[0, len(prefix) :, :V].double().exp()

    return x_theta


def _first_hitting_law(x_theta, width: int) -> dict[tuple, float]:
    """Unmask one masked position at a time, chosen uniformly, its token drawn from x_theta(state)."""
    law: dict[tuple, float] = collections.defaultdict(float)

    def visit(state: tuple, p: float) -> None:
        masked = [i for i, s in enumerate(state) if s is None]
        if not masked:
            law[state] += p
            return
        probs = x_theta(state)
        for i in masked:
            for v in range(V):
                visit((*state[:i], v, *state[i + 1 :]), p / len(masked) * float(probs[i, v]))

    visit((None,) * width, 1.0)
    return dict(law)


def _ddpm_law(x_theta, width: int, steps: int) -> dict[tuple, float]:
    """Steps t = 1 - i/T -> s = 1 - (i+1)/T: every masked token is unmasked with probability (t - s)/t,
    independently, its token drawn from x_theta(state at the start of the step)."""
    law: dict[tuple, float] = collections.defaultdict(float)

    def visit(state: tuple, i: int, p: float) -> None:
        masked = [k for k, s in enumerate(state) if s is None]
        if not masked:
            law[state] += p
            return
        assert i < steps, "the last step unmasks everything"
        t, s = 1.0 - i / steps, 1.0 - (i + 1) / steps
        q = (t - s) / t
        probs = x_theta(state)
        for r in range(len(masked) + 1):
            for chosen in itertools.combinations(masked, r):
                w = q**r * (1.0 - q) ** (len(masked) - r)
                if w == 0.0:
                    continue
                for values in itertools.product(range(V), repeat=r):
                    new, pv = list(state), w
                    for k, v in zip(chosen, values, strict=True):
                        new[k] = v
                        pv *= float(probs[k, v])
                    visit(tuple(new), i + 1, p * pv)

    visit((None,) * width, 0, 1.0)
    return dict(law)


def _two_block_law(model, block_law) -> dict[tuple, float]:
    """Law of two blocks: block 1 follows ``block_law`` given the clean block 0 as prefix."""
    first = block_law(_bd3lm_x_theta(model, ()))
    return {
        (*a, *b): pa * pb for a, pa in first.items() for b, pb in block_law(_bd3lm_x_theta(model, a)).items()
    }


def _chi_square(sequences: list[list[int]], law: dict[tuple, float]) -> tuple[float, float]:
    """(Pearson statistic of the sample counts against ``law``, its 1e-4 upper critical value).

    Outcomes with an expected count below 5 are pooled into one cell; the critical value is the
    Wilson-Hilferty approximation of the chi-square quantile."""
    assert sum(law.values()) == pytest.approx(1.0, abs=1e-6)  # float32 log-probs
    n = len(sequences)
    counts = collections.Counter(tuple(s) for s in sequences)
    assert all(law.get(seq, 0.0) > 0.0 for seq in counts), "a sample the law gives probability 0"
    big = [x for x, p in law.items() if n * p >= 5]
    cells = [(counts[x], n * law[x]) for x in big]
    rest = (n - sum(counts[x] for x in big), n * (1.0 - sum(law[x] for x in big)))
    if rest[1] >= 1.0:
        cells.append(rest)
    stat = sum((o - e) ** 2 / e for o, e in cells)
    dof = len(cells) - 1
    z = 3.719  # standard normal 1 - 1e-4 quantile
    critical = dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3
    return stat, critical


def _law_differs(law_a: dict, law_b: dict) -> float:
    return sum(abs(law_a.get(x, 0.0) - law_b.get(x, 0.0)) for x in {*law_a, *law_b}) / 2


@pytest.mark.parametrize("first_hitting", [True, False])
def test_bd3lm_samples_follow_the_exact_two_block_law(spm_data, first_hitting: bool) -> None:
    """Two blocks of L' = 2 over V = 4 (all 256 sequences enumerated): within a block first hitting
    unmasks a uniformly chosen position at a time, two DDPM steps unmask each token with probability
    1/2 per step; block 1 is conditioned on the sampled block 0 (through the KV cache in the sampler,
    through the training pass over [x_t ; x_0] in the enumeration)."""
    model = _random_model(spm_data, "bd3lm", block_size=2)
    fh = _two_block_law(model, lambda x_theta: _first_hitting_law(x_theta, 2))
    ddpm = _two_block_law(model, lambda x_theta: _ddpm_law(x_theta, 2, 2))
    exact, other = (fh, ddpm) if first_hitting else (ddpm, fh)
    # block 1 drawn without looking at block 0: what a sampler that lost its prefix would produce
    block_law = (lambda f: _first_hitting_law(f, 2)) if first_hitting else (lambda f: _ddpm_law(f, 2, 2))
    first = block_law(_bd3lm_x_theta(model, ()))
    no_context = {(*a, *b): pa * pb for a, pa in first.items() for b, pb in first.items()}
    assert _law_differs(exact, other) > 0.05 and _law_differs(exact, no_context) > 0.05
    out = sample_bd3lm(
        model,
        20000,
        4,
        num_steps=2,
        first_hitting=first_hitting,
        stop_at_eos=False,
        generator=torch.Generator().manual_seed(0),
    )
    stat, critical = _chi_square(out.sequences, exact)
    assert stat < critical, (stat, critical)
    for wrong in (other, no_context):  # the test is sharp: the same samples reject the wrong laws
        stat, critical = _chi_square(out.sequences, wrong)
        assert stat > 3 * critical, (stat, critical)


def test_mdlm_ddpm_samples_follow_the_exact_law(spm_data) -> None:
    """Length 3, three DDPM steps (all 64 sequences enumerated); without time conditioning the sampler
    reuses the cached denoiser output while nothing changed, which must not change the law."""
    model = _random_model(spm_data, "mdlm")
    x_theta = _mdlm_x_theta(model)
    exact = _ddpm_law(x_theta, 3, 3)
    one_step = _ddpm_law(x_theta, 3, 1)  # all tokens independently from x_theta(MMM)
    assert _law_differs(exact, one_step) > 0.05
    out = sample_mdlm(
        model, 20000, 3, num_steps=3, stop_at_eos=False, generator=torch.Generator().manual_seed(0)
    )
    stat, critical = _chi_square(out.sequences, exact)
    assert stat < critical, (stat, critical)
    stat, critical = _chi_square(out.sequences, one_step)
    assert stat > 3 * critical, (stat, critical)


def test_ar_samples_follow_the_exact_law(spm_data) -> None:
    """max_len 3 over V = 4: p(x) = prod_i softmax(logits of the causal backbone at [EOS, x_<i])_{x_i},
    a sequence ends at its first EOS (id 0) or after 3 tokens."""
    model = _random_model(spm_data, "ar")

    def next_token(prefix: tuple) -> torch.Tensor:
        with torch.no_grad():
            logits = model.backbone(torch.tensor([[0, *prefix]]), causal=True)[0, -1]
        return torch.softmax(logits.double(), dim=-1)

    exact: dict[tuple, float] = {}

    def visit(prefix: tuple, p: float) -> None:
        if (prefix and prefix[-1] == 0) or len(prefix) == 3:
            exact[prefix] = p
            return
        probs = next_token(prefix)
        for v in range(V):
            visit((*prefix, v), p * float(probs[v]))

    visit((), 1.0)
    assert len(exact) == 1 + 3 + 36
    out = sample_ar(model, 20000, 3, generator=torch.Generator().manual_seed(0))
    stat, critical = _chi_square(out.sequences, exact)
    assert stat < critical, (stat, critical)
    uniform_law = {x: 0.25 ** len(x) for x in exact}
    assert _chi_square(out.sequences, uniform_law)[0] > 3 * critical


def test_mdlm_ddpm_cache_calls_the_denoiser_only_after_a_change(spm_data, trained) -> None:
    model = trained["mdlm"]
    out = sample_mdlm(model, 4, 12, num_steps=48, generator=torch.Generator().manual_seed(0))
    _check_valid(out, spm_data.vocab_size, spm_data.eos_id, 12, expect_eos=False)
    # a step in which no token of the batch is unmasked reuses the cached output (each of the 48 tokens
    # is unmasked at a uniform step, so about 17 of the 48 steps change nothing)
    assert out.num_forward < 48, "steps without an unmasking reuse the cached denoiser output"
    assert any(len(s) == 12 or s[-1] == spm_data.eos_id for s in out.sequences)
    with pytest.raises(TypeError, match="MDLM"):
        sample_mdlm(trained["bd3lm"], 1, 4)


def test_ar_samples_are_valid_and_end_at_eos(spm_data, trained) -> None:
    out = sample_ar(trained["ar"], 5, 40, generator=torch.Generator().manual_seed(0))
    _check_valid(out, spm_data.vocab_size, spm_data.eos_id, 40, expect_eos=True)
    assert sum(s[-1] == spm_data.eos_id for s in out.sequences) >= 4


@pytest.mark.parametrize("first_hitting", [True, False])
def test_time_conditioned_bd3lm_cache_equals_no_cache_and_mdlm_calls_every_step(
    spm_data, first_hitting: bool
) -> None:
    model = _random_model(spm_data, "bd3lm", block_size=2, time_conditioning=True)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ada" in name:
                p.normal_(0, 0.2)
    runs = _with_and_without_cache(model, 16, 9, num_steps=3, first_hitting=first_hitting, seed=0)
    _check_valid(runs[0], 4, 0, 9, expect_eos=True)
    mdlm = sample_mdlm(_random_model(spm_data, "mdlm", time_conditioning=True), 4, 6, num_steps=5)
    _check_valid(mdlm, 4, 0, 6, expect_eos=False)
    assert mdlm.num_forward == 5
