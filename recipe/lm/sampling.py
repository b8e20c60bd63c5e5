"""Generation from the LMs: BD3-LM semi-autoregressive block sampling, MDLM ddpm_cache, AR.

BD3-LM generates block after block (L' tokens each) given the clean earlier blocks.  Within a block,
starting from all [MASK] at t = 1, either
  * first-hitting (default): with m masked tokens, the next time a token is unmasked is
    t <- t * w^(1/m), w ~ U[0, 1) (the largest of m uniform unmasking times); exactly one masked
    position, chosen uniformly, gets a token from the denoiser x_theta(x_t); L' model calls per block;
  * DDPM: T steps t_i = 1 - i/T; from t to s every masked token is unmasked with probability
    (alpha_s - alpha_t) / (1 - alpha_t) = (t - s) / t, its value drawn from x_theta(x_t); the last step
    (s = 0) unmasks all that remain.  Without time conditioning the denoiser output is reused while
    no token changed (ddpm_cache).
Tokens are drawn from the nucleus (top-p) of x_theta (``nucleus_rule``: "project" keeps the token whose
cumulative mass crosses p, "bd3lms" drops it, see ``nucleus_filter``).  Earlier blocks are clean, so their keys and
values never change: with ``use_kv_cache`` they are computed once per block (a forward of the clean
block over the cache) instead of re-running the whole prefix under the block-causal mask.  A sequence
stops after its first EOS (``stop_at_eos``) or at ``max_len`` tokens, whichever comes first; lengths
beyond the training ``max_seq_len`` are allowed (rotary positions extrapolate, quality may drop).
MDLM samples a fixed number of tokens with the same DDPM steps over the whole sequence.
As in training, a clean BOS (the EOS id) at position 0 precedes the generated tokens (for BD3-LM it is
the first cache entry); in the bd3lms layout it is the first token of block 0, which then holds L' - 1
masked tokens (as bd3lms' semi-AR sampler pre-fills it).  All random draws come from ``generator`` in a fixed order, so cache and
no-cache runs are comparable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recipe.lm.ar_lm import ARLM
from recipe.lm.block_diffusion import BD3LM, block_causal_mask
from recipe.lm.dit import KVCache
from recipe.lm.mdlm import MDLM
from recipe.lm.noise_schedule import uniform


@dataclass
class Samples:
    """Generated token id lists (each ends with EOS unless cut at the length limit) and model calls."""

    sequences: list[list[int]]
    num_forward: int


NUCLEUS_RULES = ("project", "bd3lms")


def nucleus_filter(probs: torch.Tensor, top_p: float, rule: str = "project") -> torch.Tensor:
    """Nucleus of each row (last dim), renormalised. With p_(1) >= p_(2) >= ... sorted and
    C_k = p_(1) + ... + p_(k): "project" keeps token k iff C_k - p_(k) < top_p (the smallest set whose
    mass reaches top_p, so the token crossing top_p stays); "bd3lms" keeps k iff C_k <= top_p or k = 1
    (bd3lms' ``_nucleus_sample``: the crossing token is dropped, the most probable always kept)."""
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"nucleus_p must be in (0, 1], got {top_p}")
    if rule not in NUCLEUS_RULES:
        raise ValueError(f"nucleus_rule must be one of {NUCLEUS_RULES}, got {rule!r}")
    if top_p == 1.0:
        return probs
    sorted_p, order = probs.sort(dim=-1, descending=True)
    if rule == "bd3lms":
        keep_sorted = sorted_p.cumsum(-1) <= top_p
        keep_sorted[..., 0] = True
    else:
        keep_sorted = (sorted_p.cumsum(-1) - sorted_p) < top_p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    kept = probs * keep
    return kept / kept.sum(-1, keepdim=True)


def categorical(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row of probs [..., V] by inverse CDF with a U[0, 1) from ``generator``."""
    cdf = probs.double().cumsum(-1)
    u = uniform(probs.shape[:-1], generator, probs.device).double()[..., None] * cdf[..., -1:]
    return torch.searchsorted(cdf, u).clamp(max=probs.shape[-1] - 1)[..., 0]


def _cut_at_eos(rows: list[list[int]], eos_id: int, max_len: int) -> list[list[int]]:
    out = []
    for row in rows:
        row = row[:max_len]
        out.append(row[: row.index(eos_id) + 1] if eos_id in row else row)
    return out


def bos_cache(model: BD3LM, num: int, device: torch.device) -> KVCache:
    """Keys/values of the clean BOS (EOS id) at position 0 that starts every BD3-LM sequence."""
    bos = torch.full((num, 1), model.eos_id, dtype=torch.long, device=device)
    sigma = torch.zeros(num, device=device) if model.time_conditioning else None
    return model.backbone.hidden(bos, torch.zeros(1, dtype=torch.long, device=device), sigma=sigma)[1]


def _block_probs(
    model: BD3LM,
    prefix: torch.Tensor,
    block: torch.Tensor,
    sigma: torch.Tensor | None,
    cache: KVCache | None,
    top_p: float,
    nucleus_rule: str = "project",
) -> torch.Tensor:
    """x_theta for the current block, float64 [N, L', V], given the clean ``prefix`` [N, P] (after BOS)
    either through its ``cache`` (BOS + prefix) or by recomputing [BOS ; prefix ; block] under the
    block-causal mask.  In the bd3lms layout the first block (empty prefix) starts with BOS itself."""
    net = model.backbone
    n, width = block.shape
    bos = torch.full((n, 1), model.eos_id, dtype=torch.long, device=block.device)
    context = prefix if model.bos_offset and prefix.shape[1] == 0 else torch.cat((bos, prefix), dim=1)
    start = context.shape[1]
    if cache is not None or start == 0:
        positions = torch.arange(start, start + width, device=block.device)
        h = net.hidden(block, positions, sigma=sigma, past_kv=cache)[0]
    elif model.bos_offset:
        full = torch.cat((context, block), dim=1)
        blocks = torch.arange(full.shape[1], device=block.device) // model.block_size
        h = net.hidden(full, attn_mask=blocks[None, :] <= blocks[:, None])[0][:, start:]
    else:
        full = torch.cat((context, block), dim=1)
        attn = block_causal_mask(full.shape[1] - 1, model.block_size, block.device)
        sigma_full = None
        if sigma is not None:
            sigma_full = torch.cat(
                (torch.zeros(n, start, device=block.device), sigma[:, None].expand(n, width)), 1
            )
        h = net.hidden(full, attn_mask=attn, sigma=sigma_full)[0][:, start:]
    probs = torch.softmax(net.logits(h).double(), dim=-1)
    return nucleus_filter(probs, top_p, nucleus_rule)


@torch.no_grad()
def sample_bd3lm(
    model: BD3LM,
    num_samples: int,
    max_len: int,
    num_steps: int | None = None,
    first_hitting: bool = True,
    nucleus_p: float = 1.0,
    use_kv_cache: bool = True,
    stop_at_eos: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    nucleus_rule: str = "project",
) -> Samples:
    """Semi-autoregressive BD3-LM generation (see the module docstring); num_steps: DDPM steps per block
    (default L'; unused with first_hitting)."""
    if not isinstance(model, BD3LM):
        raise TypeError(f"sample_bd3lm needs a BD3LM, got {type(model).__name__}")
    if model.bos_offset and model.time_conditioning:
        raise ValueError(
            "sample_bd3lm: sampling a time-conditioned BD3-LM in the bd3lms layout is not implemented"
        )
    if num_samples < 1 or max_len < 1:
        raise ValueError(f"sample_bd3lm: num_samples and max_len must be >= 1, got {num_samples}, {max_len}")
    model.eval()
    size, device = model.block_size, torch.device(device)
    steps = num_steps or size
    active = torch.arange(num_samples, device=device)
    seqs = torch.empty(num_samples, 0, dtype=torch.long, device=device)
    finished: dict[int, list[int]] = {}
    cache = bos_cache(model, num_samples, device) if use_kv_cache and not model.bos_offset else None
    calls = int(cache is not None)
    while active.numel() > 0 and seqs.shape[1] < max_len:
        n = active.numel()
        block = torch.full((n, size), model.mask_id, dtype=torch.long, device=device)
        has_bos = int(model.bos_offset and seqs.shape[1] == 0)  # bd3lms layout: BOS opens block 0
        block[:, :has_bos] = model.eos_id
        if first_hitting:
            t = torch.ones(n, dtype=torch.float64, device=device)
            masked = size - has_bos
            for step in range(masked):
                t = t * uniform((n,), generator, device).double() ** (1.0 / (masked - step))
                sigma = model.schedule.sigma(t.float()) if model.time_conditioning else None
                probs = _block_probs(model, seqs, block, sigma, cache, nucleus_p, nucleus_rule)
                calls += 1
                scores = torch.where(block == model.mask_id, uniform((n, size), generator, device), -1.0)
                pos = scores.argmax(dim=1)
                rows = torch.arange(n, device=device)
                block[rows, pos] = categorical(probs[rows, pos], generator)
        else:
            probs = None
            for i in range(steps):
                t, s = 1.0 - i / steps, 1.0 - (i + 1) / steps
                if probs is None or model.time_conditioning:
                    tt = torch.full((n,), t, device=device)
                    sigma = model.schedule.sigma(tt) if model.time_conditioning else None
                    probs = _block_probs(model, seqs, block, sigma, cache, nucleus_p, nucleus_rule)
                    calls += 1
                unmask = (block == model.mask_id) & (uniform((n, size), generator, device) < (t - s) / t)
                draws = categorical(probs, generator)
                if bool(unmask.any()):
                    block = torch.where(unmask, draws, block)
                    probs = None
        if use_kv_cache:
            sigma0 = torch.zeros(n, device=device) if model.time_conditioning else None
            start = seqs.shape[1] + 1 - has_bos
            positions = torch.arange(start, start + size, device=device)
            _, cache = model.backbone.hidden(block, positions, sigma=sigma0, past_kv=cache)
            calls += 1
        block = block[:, has_bos:]
        seqs = torch.cat((seqs, block), dim=1)
        done = (
            (block == model.eos_id).any(dim=1)
            if stop_at_eos
            else torch.zeros(n, dtype=torch.bool, device=device)
        )
        for row in done.nonzero()[:, 0].tolist():
            finished[int(active[row])] = seqs[row].tolist()
        keep = (~done).nonzero()[:, 0]
        if keep.numel() < n:
            active, seqs = active[keep], seqs[keep]
            if cache is not None:
                cache = [(k[keep], v[keep]) for k, v in cache]
    for row, idx in enumerate(active.tolist()):
        finished[idx] = seqs[row].tolist()
    eos = model.eos_id if stop_at_eos else -1
    return Samples(_cut_at_eos([finished[i] for i in range(num_samples)], eos, max_len), calls)


@torch.no_grad()
def sample_mdlm(
    model: MDLM,
    num_samples: int,
    length: int,
    num_steps: int = 100,
    nucleus_p: float = 1.0,
    stop_at_eos: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    nucleus_rule: str = "project",
) -> Samples:
    """MDLM ddpm_cache sampling of ``length`` tokens in ``num_steps`` steps; cut after the first EOS."""
    if isinstance(model, BD3LM) or not isinstance(model, MDLM):
        raise TypeError(f"sample_mdlm needs an MDLM, got {type(model).__name__}")
    if num_samples < 1 or length < 1 or num_steps < 1:
        raise ValueError(
            f"sample_mdlm: num_samples, length, num_steps must be >= 1, got {num_samples, length, num_steps}"
        )
    model.eval()
    device = torch.device(device)
    x = torch.full((num_samples, length), model.mask_id, dtype=torch.long, device=device)
    lengths = torch.full((num_samples,), length, device=device)
    probs, calls = None, 0
    for i in range(num_steps):
        t, s = 1.0 - i / num_steps, 1.0 - (i + 1) / num_steps
        if probs is None or model.time_conditioning:
            sigma = None
            if model.time_conditioning:
                sigma = model.schedule.sigma(torch.full((num_samples, length), t, device=device))
            logp = model.denoiser_log_probs(x, lengths, x, sigma)[..., : model.vocab_size]
            probs = nucleus_filter(logp.double().exp(), nucleus_p, nucleus_rule)
            calls += 1
        unmask = (x == model.mask_id) & (uniform(x.shape, generator, device) < (t - s) / t)
        draws = categorical(probs, generator)
        if bool(unmask.any()):
            x = torch.where(unmask, draws, x)
            probs = None
    eos = model.eos_id if stop_at_eos else -1
    return Samples(_cut_at_eos(x.tolist(), eos, length), calls)


@torch.no_grad()
def sample_ar(
    model: ARLM,
    num_samples: int,
    max_len: int,
    nucleus_p: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    nucleus_rule: str = "project",
) -> Samples:
    """Ancestral AR sampling with a KV cache, from EOS (as BOS) until EOS or ``max_len`` tokens."""
    if not isinstance(model, ARLM):
        raise TypeError(f"sample_ar needs an ARLM, got {type(model).__name__}")
    model.eval()
    device = torch.device(device)
    net = model.backbone
    token = torch.full((num_samples, 1), model.eos_id, dtype=torch.long, device=device)
    out = torch.empty(num_samples, 0, dtype=torch.long, device=device)
    cache: KVCache | None = None
    done = torch.zeros(num_samples, dtype=torch.bool, device=device)
    for _ in range(max_len):
        h, cache = net.hidden(token, past_kv=cache)
        probs = nucleus_filter(torch.softmax(net.logits(h[:, -1]).double(), dim=-1), nucleus_p, nucleus_rule)
        token = categorical(probs, generator)[:, None]
        out = torch.cat((out, token), dim=1)
        done |= token[:, 0] == model.eos_id
        if bool(done.all()):
            break
    return Samples(_cut_at_eos(out.tolist(), model.eos_id, max_len), out.shape[1])
