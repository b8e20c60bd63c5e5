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

import torch

from recipe.lm.ar_lm import ARLM
from recipe.lm.batch import check_batch, clean_padding, valid_mask
from recipe.lm.mdlm import MDLM
from recipe.lm.noise_schedule import NoiseRange, scale_to_range, stratified_uniform, uniform


def conditioned_block_mask(
    u: torch.Tensor, v: torch.Tensor, p: torch.Tensor, counts: torch.Tensor, block: int
) -> torch.Tensor:
    """Bool [R, T] mask, per block ~ Bernoulli(p_b)^{n_b} conditioned on at least one masked token.

    u [R, T] and v [R, n_blocks]: U[0, 1) draws; p [R, n_blocks]: masking probability per block;
    counts [R, n_blocks]: real tokens per block (the first counts positions of the block, >= 0); block:
    block size (positions of block b are b*block .. b*block+block-1, the last one may be cut at T).
    Blocks without real tokens stay unmasked.
    """
    seq_len = u.shape[1]
    q = (1.0 - p.double()).clamp(min=0.0)
    n = counts.double()
    log_q = torch.log(q)
    ratio = torch.log1p(-v.double() * (1.0 - q**n)) / log_q
    first = torch.ceil(torch.nan_to_num(ratio, nan=0.0)).clamp(min=1.0)
    first = torch.minimum(first, n.clamp(min=1.0)) - 1.0
    offset = (torch.arange(seq_len, device=u.device) % block).double()
    first_pos = first.repeat_interleave(block, dim=1)[:, :seq_len]
    p_pos = p.repeat_interleave(block, dim=1)[:, :seq_len]
    real = offset < counts.repeat_interleave(block, dim=1)[:, :seq_len]
    return real & ((offset == first_pos) | ((offset > first_pos) & (u < p_pos)))


@torch.no_grad()
def nelbo_samples(
    model: MDLM,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    num_samples: int = 10,
    noise_range: NoiseRange = (1e-3, 1.0),
    groups: torch.Tensor | None = None,
    stratified: bool = True,
    generator: torch.Generator | None = None,
    max_rows: int = 256,
) -> torch.Tensor:
    """K = num_samples unbiased NELBO estimates per sequence (float64 [B, K], nats, >= 0).

    groups [B] (int): sequences with the same id share all noise draws; None = independent noise per
    sequence.  max_rows bounds the model batch (sequences x samples) per forward pass.
    """
    if not isinstance(model, MDLM):
        raise TypeError(f"nelbo_samples: needs an MDLM or BD3LM, got {type(model).__name__}")
    if num_samples < 1:
        raise ValueError(f"nelbo_samples: num_samples must be >= 1, got {num_samples}")
    beta, omega = noise_range
    if not 0.0 < beta <= omega <= 1.0:
        raise ValueError(f"nelbo_samples: noise_range must satisfy 0 < beta <= omega <= 1, got {noise_range}")
    check_batch(tokens, lengths, model.vocab_size, model.max_seq_len)
    x0 = clean_padding(tokens, lengths, 0)
    batch, seq_len = x0.shape
    device = x0.device
    if groups is None:
        groups = torch.arange(batch, device=device)
    if groups.shape != (batch,):
        raise ValueError(f"nelbo_samples: groups must have shape [{batch}], got {tuple(groups.shape)}")
    _, group_index = torch.unique(groups, return_inverse=True)
    n_groups = int(group_index.max()) + 1
    block = model.block_len(seq_len)
    n_blocks = model.num_blocks(seq_len)

    def draw(width: int) -> torch.Tensor:
        """[n_groups, K, width] draws, stratified over the K samples (Latin hypercube) if requested."""
        shape = (num_samples, n_groups, width)
        if stratified:
            return stratified_uniform(shape, generator, device, shuffle=True).permute(1, 0, 2)
        return uniform(shape, generator, device).permute(1, 0, 2)

    t = scale_to_range(draw(n_blocks), beta, omega)
    v = draw(n_blocks)
    u = draw(seq_len)

    rows_t = t[group_index].reshape(batch * num_samples, n_blocks)
    rows_v = v[group_index].reshape(batch * num_samples, n_blocks)
    rows_u = u[group_index].reshape(batch * num_samples, seq_len)
    rows_x0 = x0.repeat_interleave(num_samples, dim=0)
    rows_len = lengths.repeat_interleave(num_samples, dim=0)
    pad = n_blocks * block - seq_len
    counts = torch.nn.functional.pad(valid_mask(rows_len, seq_len).long(), (0, pad))
    counts = counts.view(-1, n_blocks, block).sum(-1)

    was_training = model.training
    model.eval()
    out = torch.empty(batch * num_samples, dtype=torch.float64, device=device)
    try:
        for start in range(0, batch * num_samples, max_rows):
            sl = slice(start, start + max_rows)
            mask = conditioned_block_mask(rows_u[sl], rows_v[sl], rows_t[sl], counts[sl], block)
            xt = torch.where(mask, model.mask_id, rows_x0[sl])
            t_pos = model.expand_t(rows_t[sl], seq_len)
            sigma = model.schedule.sigma_from_move_chance(t_pos) if model.time_conditioning else None
            nll = model.masked_nll(rows_x0[sl], rows_len[sl], xt, sigma).double()
            t_b = rows_t[sl].double()
            weight = (1.0 - (1.0 - t_b) ** counts[sl].double()) / t_b
            out[sl] = (model.expand_t(weight, seq_len) * nll).sum(dim=1)
    finally:
        model.train(was_training)
    return out.view(batch, num_samples)


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
    generator: torch.Generator | None = None,
    max_rows: int = 256,
) -> torch.Tensor:
    """Score per sequence, float64 [B], higher is better: exact log p(x) for the AR LM, else the mean
    of ``nelbo_samples`` negated (-NELBO <= log p(x)).  All ``lengths`` positions (EOS included) count.

    shared_noise: hypotheses with equal ``groups`` id share the noise (groups None: the whole batch is
    one group); without it every sequence gets its own noise.  The diffusion options are ignored for AR.
    """
    if isinstance(model, ARLM):
        was_training = model.training
        model.eval()
        try:
            return model.sequence_log_prob(tokens, lengths).double()
        finally:
            model.train(was_training)
    if shared_noise and groups is None:
        groups = torch.zeros(tokens.shape[0], dtype=torch.long, device=tokens.device)
    if not shared_noise:
        groups = None
    samples = nelbo_samples(
        model, tokens, lengths, num_samples, noise_range, groups, stratified, generator, max_rows
    )
    return -samples.mean(dim=1)
