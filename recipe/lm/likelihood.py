"""Per-sequence log-likelihood scores: exact for the AR LM, a Monte-Carlo -NELBO for MDLM / BD3-LM.

Diffusion LMs are scored with the continuous-time bound of the linear masking schedule alpha_t = 1 - t
(alpha_1 = 0, so there is no prior term and log p(x) >= -NELBO(x)):

    NELBO(x) = sum_b E_{t ~ U[beta, omega]} [ (1/t) E_{M ~ Bernoulli(t)^{n_b}} sum_{l in M} CE_l ],

where block b has n_b real tokens (MDLM: one block, the whole sequence) and CE_l = -log p_theta(x_l |
x masked on M, clean blocks before b).  The inner expectation is estimated with the mask conditioned on
being non-empty (an empty mask contributes 0), re-weighted by P(M != {}) = 1 - (1 - t)^{n_b}:

    estimate_b = (1 - (1 - t)^{n_b}) / t * sum_{l in M} CE_l,    M ~ Bernoulli(t)^{n_b} | M != {}.

The conditional mask is drawn exactly: the first masked position J has P(J = j) proportional to
t (1 - t)^{j-1} (inverse CDF of a uniform v), later positions are masked iff u_l < t.  For a single-token
block (BD3-LM with L' = 1) the estimate is (t / t) CE = -log p(x_l | x_<l) for every t: the exact
autoregressive log-likelihood.  Variance reduction: ``stratified``: over the K samples every draw is
stratified, t = beta + (omega - beta) (s_k + w_k) / K with s a random permutation of 0..K-1 per
block, and likewise the mask uniforms u, v per position (a Latin hypercube; each sample stays marginally
exact, so the mean stays unbiased).  For a trained model most variance comes from which tokens get
masked, not from t, so stratifying u matters more than stratifying t.  ``shared_noise``: all sequences of
one group (e.g. one utterance's n-best list) use the same t, u and v draws, so that score differences
between hypotheses are far less noisy than the scores themselves.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch

from recipe.lm.ar_lm import ARLM
from recipe.lm.batch import check_batch, clean_padding, valid_mask
from recipe.lm.block_diffusion import BD3LM
from recipe.lm.mdlm import MDLM
from recipe.lm.noise_schedule import NoiseRange, scale_to_range, stratified_uniform, uniform


def _block_offsets(n_positions: int, block: int, skip: int, device: torch.device) -> torch.Tensor:
    """Offset of every position from the first maskable position of its block [n_positions]; the first
    ``skip`` positions are never masked (BOS inside block 0, bd3lms' ignore_bos) and get negative ones."""
    positions = torch.arange(n_positions, device=device)
    return positions - torch.clamp(positions // block * block, min=skip)


def block_counts(
    lengths: torch.Tensor, width: int, block: int, n_blocks: int, shift: int, skip: int
) -> torch.Tensor:
    """Maskable tokens per block [B, n_blocks] when token i sits at position i + shift (shift = 1: BOS is
    the first position of block 0) and positions < skip are never masked."""
    valid = valid_mask(lengths, width).long()
    valid = torch.nn.functional.pad(valid, (shift, n_blocks * block - width - shift))
    valid[:, :skip] = 0
    return valid.view(-1, n_blocks, block).sum(-1)


def conditioned_block_mask(
    u: torch.Tensor, v: torch.Tensor, p: torch.Tensor, counts: torch.Tensor, block: int, skip: int = 0
) -> torch.Tensor:
    """Bool [R, T] mask, per block ~ Bernoulli(p_b)^{n_b} conditioned on at least one masked token.

    u [R, T] and v [R, n_blocks]: U[0, 1) draws; p [R, n_blocks]: masking probability per block;
    counts [R, n_blocks]: maskable tokens per block (the first counts positions of the block from its
    first position >= ``skip``, >= 0); block: block size (positions of block b are b*block ..
    b*block+block-1, the last one may be cut at T).  Blocks without maskable tokens stay unmasked.
    """
    seq_len = u.shape[1]
    q = (1.0 - p.double()).clamp(min=0.0)
    n = counts.double()
    log_q = torch.log(q)
    ratio = torch.log1p(-v.double() * (1.0 - q**n)) / log_q
    first = torch.ceil(torch.nan_to_num(ratio, nan=0.0)).clamp(min=1.0)
    first = torch.minimum(first, n.clamp(min=1.0)) - 1.0
    offset = _block_offsets(seq_len, block, skip, u.device).double()
    first_pos = first.repeat_interleave(block, dim=1)[:, :seq_len]
    p_pos = p.repeat_interleave(block, dim=1)[:, :seq_len]
    real = (offset >= 0) & (offset < counts.repeat_interleave(block, dim=1)[:, :seq_len])
    return real & ((offset == first_pos) | ((offset > first_pos) & (u < p_pos)))


NOISE_METHODS = ("independent", "shared", "aligned")


def aligned_block_mask(
    u: torch.Tensor, p: torch.Tensor, counts: torch.Tensor, block: int, skip: int = 0
) -> torch.Tensor:
    """Bool [R, T] mask with the law of ``conditioned_block_mask`` (same arguments), from the position
    uniforms alone.

    Per block with n real tokens and uniforms u_l: the minimum m = min_l u_l (at J = argmin) is moved to
    m' = F^-1(F(m) F(p)), F(x) = 1 - (1 - x)^n (the law of the minimum conditioned on m' < p), the others
    are mapped affinely from (m, 1) onto (m', 1) (given m they are iid U(m, 1), so afterwards iid
    U(m', 1)), and l is masked iff u'_l < p; J is always masked.  Unlike the first-index construction,
    a position's mask depends on its own uniform and the block minimum only, so two sequences whose
    aligned tokens carry the same uniforms get (almost always) the same mask on them.
    """
    rows, seq_len = u.shape
    n_blocks = p.shape[1]
    pad = n_blocks * block - seq_len
    offset = _block_offsets(n_blocks * block, block, skip, u.device).view(n_blocks, block)
    real = (offset[None] >= 0) & (offset[None] < counts[:, :, None])
    ub = torch.nn.functional.pad(u.double(), (0, pad), value=2.0).view(rows, n_blocks, block)
    ub = torch.where(real, ub, torch.full_like(ub, 2.0))
    m, arg = ub.min(dim=2, keepdim=True)
    n = counts.double()[:, :, None].clamp(min=1.0)
    pp = p.double()[:, :, None]
    f_m = -torch.expm1(n * torch.log1p(-m.clamp(max=1.0)))
    f_p = -torch.expm1(n * torch.log1p(-pp.clamp(max=1.0)))
    m_new = -torch.expm1(torch.log1p(-(f_m * f_p).clamp(max=1.0)) / n)
    scaled = m_new + (ub - m) * (1.0 - m_new) / (1.0 - m).clamp(min=1e-300)
    first = torch.zeros_like(real).scatter(2, arg, True)
    mask = real & (first | (scaled < pp))
    return mask.view(rows, n_blocks * block)[:, :seq_len]


def align_to_pivot(hyp: list[int], pivot: list[int]) -> list[int]:
    """For every token of ``hyp`` the index of its aligned token in ``pivot`` or -1 (a monotone,
    injective alignment: equal runs and position-wise pairs inside replaced runs, from difflib)."""
    out = [-1] * len(hyp)
    matcher = difflib.SequenceMatcher(a=hyp, b=pivot, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("equal", "replace"):
            for k in range(min(i2 - i1, j2 - j1)):
                out[i1 + k] = j1 + k
    return out


def _draws(
    shape: tuple[int, ...], generator, device, stratified: bool, lattice: bool = False
) -> torch.Tensor:
    """[K, ...] U[0, 1) draws, stratified over the K samples (a Latin hypercube) if requested; with
    ``lattice`` one offset w per trailing index is shared by all K samples, (s_k + w) / K (a randomised
    rectangle rule over t, each sample still marginally uniform)."""
    if stratified and lattice:
        k = shape[0]
        w = uniform((1, *shape[1:]), generator, device)
        strata = torch.argsort(uniform(shape, generator, device), dim=0).to(w.dtype)
        return (strata + w) / k
    if stratified:
        return stratified_uniform(shape, generator, device, shuffle=True)
    return uniform(shape, generator, device)


def _group_noise(
    model: MDLM,
    x0: torch.Tensor,
    lengths: torch.Tensor,
    num_samples: int,
    noise_range: NoiseRange,
    generator: torch.Generator | None,
    stratified: bool,
    noise: str,
    lattice: bool,
    ignore_first: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(t [m, K, n_blocks(W)], mask [m, K, W]) for the m sequences of one group, drawn at the group's
    own width W = max length (so they do not depend on the rest of the batch or its padding).  Blocks
    are laid over the model's positions: token i at i + ``model.bos_offset`` (1 when BOS is the first
    position of block 0); the masks are returned for the tokens.  ignore_first: token 0 is never masked
    (its block's mask is drawn on its other positions)."""
    m = x0.shape[0]
    width = int(lengths.max())
    block = model.block_len(width)
    n_blocks = model.num_blocks(width)
    shift = model.bos_offset
    skip = shift + int(ignore_first)
    device = x0.device
    beta, omega = noise_range
    t = scale_to_range(_draws((num_samples, n_blocks), generator, device, stratified, lattice), beta, omega)
    pad = n_blocks * block - width - shift
    counts = block_counts(lengths, width, block, n_blocks, shift, skip)
    if noise == "shared":
        v = _draws((num_samples, n_blocks), generator, device, stratified)
        u = torch.nn.functional.pad(_draws((num_samples, width), generator, device, stratified), (shift, 0))
        rows_counts = counts.repeat_interleave(num_samples, dim=0)
        mask = conditioned_block_mask(
            u.repeat(m, 1), v.repeat(m, 1), t.repeat(m, 1), rows_counts, block, skip
        )
        return t.expand(m, -1, -1), mask[:, shift:].reshape(m, num_samples, width)
    # aligned: the first sequence of the group is the pivot; every other sequence's tokens take the
    # pivot's uniforms where they align to it and fresh ones elsewhere; each block takes the pivot t of
    # the block holding the pivot token aligned to its first aligned token (else of the same index).
    u_pivot = _draws((num_samples, width), generator, device, stratified)
    fresh = _draws((num_samples, m, width), generator, device, stratified).permute(1, 0, 2)
    seqs = [x0[i, : int(lengths[i])].tolist() for i in range(m)]
    positions = torch.arange(n_blocks * block, device=device)
    u_rows, t_rows = [], []
    for i in range(m):
        pi = torch.tensor(align_to_pivot(seqs[i], seqs[0]) + [-1] * (width - len(seqs[i])), device=device)
        aligned = pi >= 0
        u_rows.append(torch.where(aligned, u_pivot[:, pi.clamp(min=0)], fresh[i]))
        first = torch.where(torch.nn.functional.pad(aligned, (shift, pad)), positions, n_blocks * block)
        first_token = first.view(n_blocks, block).min(dim=1).values - shift
        has = first_token < width
        pivot_token = pi[first_token.clamp(min=0, max=width - 1)]
        pivot_block = torch.where(has, (pivot_token + shift) // block, positions[:n_blocks])
        t_rows.append(t[:, pivot_block])
    t_all = torch.stack(t_rows)
    u_all = torch.nn.functional.pad(torch.stack(u_rows).reshape(m * num_samples, width), (shift, 0))
    rows_counts = counts.repeat_interleave(num_samples, dim=0)
    mask = aligned_block_mask(u_all, t_all.reshape(m * num_samples, n_blocks), rows_counts, block, skip)
    return t_all, mask[:, shift:].reshape(m, num_samples, width)


@torch.no_grad()
def nelbo_samples(
    model: MDLM,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    num_samples: int = 10,
    noise_range: NoiseRange = (1e-3, 1.0),
    groups: torch.Tensor | None = None,
    stratified: bool = True,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    max_rows: int = 256,
    *,
    noise: str = "shared",
    lattice: bool = False,
    cache: bool = True,
    ignore_first: bool = False,
) -> torch.Tensor:
    """K = num_samples unbiased NELBO estimates per sequence (float64 [B, K], nats, >= 0).

    groups [B] (int): sequences with the same id share noise (``noise``: "shared" = the same t, u, v by
    position; "aligned" = uniforms tied to tokens aligned to the group's first sequence, see
    ``_group_noise``); None = every sequence is its own group.  Noise is drawn group by group (in
    sorted id order) at the group's own width, from ``generator`` or, given a sequence of
    generators, from one generator per group: then a sequence's scores depend only on its group and
    that generator, not on the batch.  lattice: t on a randomised lattice over the K samples instead
    of a Latin hypercube (with ``stratified``).  cache: BD3-LM computes the clean half's keys/values
    once per sequence (``BD3LM.clean_kv``); False runs the full x_t ⊕ x_0 pass per sample (same scores
    to float tolerance; always so in the bd3lms layout, whose BOS lies inside block 0).  max_rows bounds
    the model batch (sequences x samples) per forward pass.  ignore_first (bd3lms' ``ignore_bos``):
    position 0 (a BOS token of the data) is never masked, so it adds no term; its block has one
    maskable token less.
    """
    if not isinstance(model, MDLM):
        raise TypeError(f"nelbo_samples: needs an MDLM or BD3LM, got {type(model).__name__}")
    if num_samples < 1:
        raise ValueError(f"nelbo_samples: num_samples must be >= 1, got {num_samples}")
    beta, omega = noise_range
    if not 0.0 < beta <= omega <= 1.0:
        raise ValueError(f"nelbo_samples: noise_range must satisfy 0 < beta <= omega <= 1, got {noise_range}")
    if noise not in ("shared", "aligned"):
        raise ValueError(f"nelbo_samples: noise must be 'shared' or 'aligned', got {noise!r}")
    check_batch(tokens, lengths, model.vocab_size, model.max_seq_len)
    x0 = clean_padding(tokens, lengths, 0)
    batch, seq_len = x0.shape
    device = x0.device
    if groups is None:
        groups = torch.arange(batch, device=device)
    if groups.shape != (batch,):
        raise ValueError(f"nelbo_samples: groups must have shape [{batch}], got {tuple(groups.shape)}")
    group_ids, group_index = torch.unique(groups, return_inverse=True)
    if generator is not None and not isinstance(generator, torch.Generator):
        if len(generator) != len(group_ids):
            raise ValueError(f"nelbo_samples: {len(generator)} generators for {len(group_ids)} groups")
    block = model.block_len(seq_len)
    n_blocks = model.num_blocks(seq_len)

    rows_t = torch.ones(batch, num_samples, n_blocks, dtype=torch.float32, device=device)
    rows_mask = torch.zeros(batch, num_samples, seq_len, dtype=torch.bool, device=device)
    for g in range(len(group_ids)):
        members = (group_index == g).nonzero()[:, 0]
        gen = generator if generator is None or isinstance(generator, torch.Generator) else generator[g]
        t, mask = _group_noise(
            model,
            x0[members],
            lengths[members],
            num_samples,
            noise_range,
            gen,
            stratified,
            noise,
            lattice,
            ignore_first,
        )
        rows_t[members, :, : t.shape[2]] = t.float()
        rows_mask[members, :, : mask.shape[2]] = mask
    rows_t = rows_t.view(batch * num_samples, n_blocks)
    rows_mask = rows_mask.view(batch * num_samples, seq_len)
    rows_x0 = x0.repeat_interleave(num_samples, dim=0)
    rows_len = lengths.repeat_interleave(num_samples, dim=0)
    shift = model.bos_offset
    counts = block_counts(rows_len, seq_len, block, n_blocks, shift, shift)  # real tokens per block
    maskable = block_counts(rows_len, seq_len, block, n_blocks, shift, shift + int(ignore_first))  # the n_b

    was_training = model.training
    model.eval()
    try:
        if cache and isinstance(model, BD3LM) and not shift:
            out = _bd3_block_estimates(
                model, x0, lengths, rows_mask, rows_t, counts, maskable, num_samples, max_rows
            )
        else:
            out = torch.empty(batch * num_samples, dtype=torch.float64, device=device)
            for start in range(0, batch * num_samples, max_rows):
                sl = slice(start, start + max_rows)
                xt = torch.where(rows_mask[sl], model.mask_id, rows_x0[sl])
                t_pos = model.expand_t(rows_t[sl], seq_len)
                sigma = model.schedule.sigma_from_move_chance(t_pos) if model.time_conditioning else None
                nll = model.masked_nll(rows_x0[sl], rows_len[sl], xt, sigma).double()
                t_b = rows_t[sl].double()
                weight = (1.0 - (1.0 - t_b) ** maskable[sl].double()) / t_b
                out[sl] = (model.expand_t(weight, seq_len) * nll).sum(dim=1)
    finally:
        model.train(was_training)
    return out.view(batch, num_samples)


def _bd3_block_estimates(
    model: BD3LM,
    x0: torch.Tensor,
    lengths: torch.Tensor,
    rows_mask: torch.Tensor,
    rows_t: torch.Tensor,
    counts: torch.Tensor,
    maskable: torch.Tensor,
    num_samples: int,
    max_rows: int,
) -> torch.Tensor:
    """BD3-LM estimates per row (sequence x sample) from the clean half computed once per sequence
    (``BD3LM.clean_kv``) and one unit per (row, block with real tokens) (``BD3LM.block_nll_cached``);
    counts [rows, n_blocks]: real tokens per block, maskable: those that can be masked (the weight's n_b).

    Block b's term depends only on the tokens of blocks <= b, the block's mask and its t, so units
    that agree on those (hypotheses of one utterance with a common prefix under shared noise) are
    computed once."""
    batch, seq_len = x0.shape
    size = model.block_size
    n_blocks = counts.shape[1]
    padded = n_blocks * size
    device = x0.device
    rows = batch * num_samples
    x0p = torch.nn.functional.pad(x0, (0, padded - seq_len))
    masked = torch.nn.functional.pad(rows_mask, (0, padded - seq_len))
    xt = torch.where(masked, model.mask_id, x0p.repeat_interleave(num_samples, dim=0))
    # unit keys: (prefix id of the sequence through block b, mask bits of block b, t_b bits)
    prefix_ids: dict[tuple[int, ...], int] = {}
    prefix = torch.empty(batch, n_blocks, dtype=torch.long)
    for i in range(batch):
        seq = x0[i, : int(lengths[i])].tolist()
        for b in range(n_blocks):
            prefix[i, b] = prefix_ids.setdefault(tuple(seq[: (b + 1) * size]), len(prefix_ids))
    bits = (masked.view(rows, n_blocks, size).long() << torch.arange(size, device=device)).sum(-1)
    t_bits = rows_t.float().contiguous().view(torch.int32).long()
    keys = torch.stack((prefix.to(device).repeat_interleave(num_samples, dim=0), bits, t_bits), dim=-1)
    exists = counts > 0
    flat_keys = keys[exists]
    unique, inverse = torch.unique(flat_keys, dim=0, return_inverse=True)
    n_units = unique.shape[0]
    unit_of = torch.nonzero(exists)  # [units with duplicates, 2]: (row, block)
    first = torch.full((n_units,), len(unit_of), dtype=torch.long, device=device)
    first = first.scatter_reduce(0, inverse, torch.arange(len(unit_of), device=device), "amin")
    rep_row, rep_block = unit_of[first, 0], unit_of[first, 1]
    order = torch.argsort(rep_block, stable=True)
    clean = model.clean_kv(x0, lengths)
    values = torch.empty(n_units, dtype=torch.float64, device=device)
    # chunks hold at most as many key positions as max_rows rows of the full x_t + x_0 pass
    budget = max_rows * (1 + 2 * padded)
    past_len = 1 + (rep_block[order] + 1) * size
    start = 0
    while start < n_units:
        fits = torch.arange(1, n_units - start + 1, device=device) * past_len[start:] <= budget
        stop = start + max(1, int(fits.sum()))
        idx = order[start:stop]
        start = stop
        r, b = rep_row[idx], rep_block[idx]
        seq = r // num_samples
        past = 1 + (int(b.max()) + 1) * size
        kv = [(k[seq, :, :past], v[seq, :, :past]) for k, v in clean]
        cols = b[:, None] * size + torch.arange(size, device=device)
        t_b = rows_t[r, b].double()
        n_b = counts[r, b]
        sigma = model.schedule.sigma_from_move_chance(rows_t[r, b]) if model.time_conditioning else None
        ce = model.block_nll_cached(xt[r[:, None], cols], x0p[seq[:, None], cols], b, n_b, sigma, kv)
        values[idx] = (1.0 - (1.0 - t_b) ** maskable[r, b].double()) / t_b * ce
    out = torch.zeros(rows, dtype=torch.float64, device=device)
    return out.index_add_(0, unit_of[:, 0], values[inverse])


@torch.no_grad()
def sequence_log_likelihood(
    model: ARLM | MDLM,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    num_samples: int = 10,
    noise_range: NoiseRange = (1e-3, 1.0),
    shared_noise: bool = False,
    groups: torch.Tensor | None = None,
    stratified: bool = True,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    max_rows: int = 256,
    *,
    noise: str | None = None,
    lattice: bool = False,
    cache: bool = True,
    ignore_first: bool = False,
) -> torch.Tensor:
    """Score per sequence, float64 [B], higher is better: exact log p(x) for the AR LM, else the mean
    of ``nelbo_samples`` negated (-NELBO <= log p(x)).  All ``lengths`` positions (EOS included) count,
    except position 0 with ``ignore_first`` (bd3lms' ``ignore_bos``; AR: log p(x_1.. | x_0)).

    noise: "independent" (every sequence its own noise), "shared" or "aligned" (hypotheses with equal
    ``groups`` id share noise; groups None: the whole batch is one group); None = "shared" if
    ``shared_noise`` else "independent".  The diffusion options are ignored for AR.
    """
    if isinstance(model, ARLM):
        was_training = model.training
        model.eval()
        try:
            if ignore_first:
                return model.token_log_probs(tokens, lengths)[:, 1:].sum(dim=1).double()
            return model.sequence_log_prob(tokens, lengths).double()
        finally:
            model.train(was_training)
    if noise is None:
        noise = "shared" if shared_noise else "independent"
    if noise not in NOISE_METHODS:
        raise ValueError(f"sequence_log_likelihood: noise must be one of {NOISE_METHODS}, got {noise!r}")
    if noise == "independent":
        groups = None
    elif groups is None:
        groups = torch.zeros(tokens.shape[0], dtype=torch.long, device=tokens.device)
    samples = nelbo_samples(
        model,
        tokens,
        lengths,
        num_samples,
        noise_range,
        groups,
        stratified,
        generator,
        max_rows,
        noise="shared" if noise == "independent" else noise,
        lattice=lattice,
        cache=cache,
        ignore_first=ignore_first,
    )
    return -samples.mean(dim=1)
