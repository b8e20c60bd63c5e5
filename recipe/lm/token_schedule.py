"""Per-token masking schedule: every position i has its own rate g_i > 0 and is masked at time t with

    m_i(t) = (1 - eps) * t^(1 / g_i),        t ~ U[beta, omega] (per block for BD3-LM),

the log-linear schedule of ``recipe.lm.noise_schedule`` (1 - alpha_t = (1 - eps) t) with t replaced by
t^(1 / g_i), so g_i = 1 for every token is today's schedule bit for bit, and a token with g_i > 1 is
masked earlier (more often at a given t).  Models in the bd3lms layout mask with probability t as
bd3lms does (``Bd3lmsLogLinearSchedule``), so for them m_i(t) = t^(1 / g_i).  The continuous-time NELBO of any per-token schedule
1 - alpha_t^i = m_i(t) weights the cross-entropy of a masked token by -alpha'^i_t / (1 - alpha^i_t):

    L = E_t sum_i [m_i'(t) / m_i(t)] * 1[z_t^i = MASK] * (-log p_theta(x_i | z_t)),
    m_i'(t) / m_i(t) = 1 / (g_i t)      (the (1 - eps) factor cancels).

The denoiser sees x_t and, with time conditioning, t (the block's sigma(t) as with the uniform
schedule), never g: g is computed from the clean sequence, so feeding it (or a per-token noise level
derived from it) to the denoiser would leak the clean text's structure, and it is not there when scoring.

Where g comes from (``mix_token_rates``): g_i = (1 - alpha) + alpha * w_i with token weights w
normalised to mean 1 over the sequence's real tokens, so alpha = 0 is the baseline and the average
rate stays 1.  g is computed from the clean sequence (its parse, or an estimator reading it), so L
bounds -log p(x | g), not -log p(x): it is a training objective only.  Scoring (perplexity, rescoring,
the noise-range search) always uses the uniform bound g = 1.

This schedule and its weight are this project's formulation; the code of the systems that inspired
it (the dependency-depth BD3-LM, MDLM-ATAT) is not public or not usable.
"""

from __future__ import annotations

import torch

from recipe.lm.batch import valid_mask
from recipe.lm.noise_schedule import LogLinearSchedule


def check_token_rates(rates: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``rates`` as float32 [B, L] with the padding set to 1; an error names the first bad position."""
    if rates.shape != tokens.shape:
        raise ValueError(
            f"token_rates: shape {tuple(rates.shape)} must equal the tokens' {tuple(tokens.shape)}"
        )
    rates = rates.to(device=tokens.device, dtype=torch.float32)
    real = valid_mask(lengths, tokens.shape[1])
    bad = real & ~(torch.isfinite(rates) & (rates > 0))
    if bool(bad.any()):
        b, i = bad.nonzero()[0].tolist()
        raise ValueError(
            f"token_rates: must be finite and > 0 at real tokens, got {rates[b, i].item()} at [{b}, {i}]"
        )
    return torch.where(real, rates, torch.ones_like(rates))


def token_move_chance(
    schedule: LogLinearSchedule, t_pos: torch.Tensor, rates: torch.Tensor | None
) -> torch.Tensor:
    """m_i(t) = (1 - eps) t^(1 / g_i) [B, L] from per-position times t_pos; exactly the schedule's
    (1 - eps) t where g_i = 1 or ``rates`` is None."""
    if rates is None:
        return schedule.move_chance(t_pos)
    return schedule.move_chance(torch.where(rates == 1.0, t_pos, t_pos.pow(1.0 / rates)))


def token_loss_weight(
    schedule: LogLinearSchedule, t_pos: torch.Tensor, rates: torch.Tensor | None
) -> torch.Tensor:
    """NELBO weight m_i'(t) / m_i(t) = 1 / (g_i t) of a masked token (the schedule's 1 / t for g = 1)."""
    if rates is None:
        return schedule.loss_weight(t_pos)
    return 1.0 / (rates * t_pos)


def mix_token_rates(weights: torch.Tensor, lengths: torch.Tensor, mix_alpha: float) -> torch.Tensor:
    """g = (1 - alpha) + alpha * w / mean(w) [B, L] (mean over each sequence's real tokens; padding 1).

    ``weights`` [B, L] must be >= 0 with a positive mean over the real tokens of every sequence."""
    if not 0.0 <= mix_alpha <= 1.0:
        raise ValueError(f"mix_token_rates: mix_alpha must be in [0, 1], got {mix_alpha}")
    real = valid_mask(lengths, weights.shape[1])
    w = torch.where(real, weights.float(), torch.zeros_like(weights, dtype=torch.float32))
    if bool((real & ~(torch.isfinite(w) & (w >= 0))).any()):
        raise ValueError("mix_token_rates: token weights must be finite and >= 0 at real tokens")
    mean = w.sum(1, keepdim=True) / lengths.clamp(min=1)[:, None].float()
    if bool((mean[lengths > 0] <= 0).any()):
        raise ValueError("mix_token_rates: a sequence has token weights that are all 0")
    rates = (1.0 - mix_alpha) + mix_alpha * w / mean.clamp(min=torch.finfo(torch.float32).tiny)
    return torch.where(real, rates, torch.ones_like(rates))
