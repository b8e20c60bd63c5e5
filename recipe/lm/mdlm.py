"""MDLM: masked (absorbing-state) diffusion LM with the SUBS parameterisation.

Forward process: every real token of x_0 is independently replaced by [MASK] (id V) with probability
1 - alpha_t (``recipe.lm.noise_schedule.LogLinearSchedule``).  SUBS parameterisation of the denoiser
x_theta(x_t): the [MASK] logit is -inf (zero masking) and an unmasked position copies its input
(carry-over unmasking), so only masked positions carry loss.  Continuous-time NELBO per sequence:

    NELBO(x_0) = E_{t ~ U[beta, omega]} [ (1/t) * sum_{l: x_t^l = MASK} -log x_theta(x_t)_l[x_0^l] ],

with antithetic t over the batch, t_i = beta + (omega - beta) ((u + i/B) mod 1), and [beta, omega]
the training noise range (``LmConfig.noise_range``, default [eps, 1]).  Without time conditioning the denoiser does not see t (the
masking rate is inferable); with it the backbone gets sigma(t) via adaLN.  The denoiser input starts
with a clean BOS (the EOS id, or ``LmConfig.bos_id``; never masked, never scored) at position 0: with rotary (relative)
positions alone, a fully masked sequence would give the same output at every position.

With ``LmConfig.bd3lms_layout`` BOS is instead the first token of the sequence [BOS ; x] that the blocks
partition (bd3lms' ``ignore_bos``: never masked, never scored), the block-0 BOS attends and is attended
like any token, and time conditioning uses block 0's sigma for every position.  Training and sampling
then mask with probability t itself, as bd3lms does (``Bd3lmsLogLinearSchedule``; the same 1 / t weight).

Training may give every token its own rate g_l (``token_rates``, ``recipe.lm.token_schedule``): mask
probability (1 - eps) t^(1/g_l) and weight 1/(g_l t) instead of (1 - eps) t and 1/t; g = 1 is the above.

The loss only computes logits at masked positions (same value as gathering from the full SUBS
output, at a fraction of the output-layer cost).  ``t`` is always shaped [B, n_blocks]; MDLM is the
one-block case, BD3-LM (``recipe.lm.block_diffusion``) overrides the block size and the denoiser.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Generator, Tensor

from recipe.lm.batch import check_batch, clean_padding, valid_mask
from recipe.lm.checkpoints import CheckedLoadMixin
from recipe.lm.config import LmConfig
from recipe.lm.dit import DiT
from recipe.lm.noise_schedule import (
    Bd3lmsLogLinearSchedule,
    LogLinearSchedule,
    NoiseRange,
    antithetic_uniform,
    scale_to_range,
    uniform,
)
from recipe.lm.token_schedule import check_token_rates, token_loss_weight, token_move_chance


def masked_index(xt: torch.Tensor, lengths: torch.Tensor, mask_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The masked real positions of every row, in order and padded to the largest count M >= 1:
    (index [B, M], keep [B, M] true for the real entries).  Only they need the denoiser's output."""
    masked = (xt == mask_id) & valid_mask(lengths, xt.shape[1])
    counts = masked.sum(dim=1)
    width = max(1, int(counts.max())) if xt.shape[0] else 1
    index = torch.argsort((~masked).to(torch.int8), dim=1, stable=True)[:, :width]
    return index, torch.arange(width, device=xt.device)[None, :] < counts[:, None]


def state_index(xt: torch.Tensor, out_index: torch.Tensor | None) -> torch.Tensor:
    """Network positions of the x_t states wanted (x_t position l sits at 1 + l, after BOS): all of
    them, or those of ``out_index``."""
    if out_index is None:
        return torch.arange(1, xt.shape[1] + 1, device=xt.device)
    return out_index + 1


def subs_log_probs(logits: torch.Tensor, xt: torch.Tensor, mask_id: int) -> torch.Tensor:
    """SUBS log-probabilities [..., V + 1] (float32) from logits [..., V] over the real vocabulary
    ([..., V] when [MASK] is inside it, mask_id < V, its logit already -inf).

    Masked positions: log_softmax over V and -inf for [MASK]; unmasked positions: 0 at the input
    token and -inf elsewhere (carry-over), so they contribute log 1 = 0 to any likelihood.
    """
    logp = F.log_softmax(logits.float(), dim=-1)
    if mask_id == logits.shape[-1]:
        logp = F.pad(logp, (0, 1), value=-torch.inf)
    carry = torch.full_like(logp, -torch.inf).scatter(-1, xt[..., None], 0.0)
    return torch.where((xt == mask_id)[..., None], logp, carry)


class MDLM(CheckedLoadMixin):
    """Masked diffusion LM over V ids plus [MASK] = V; the backbone has V + 1 input rows, V outputs
    (bd3lms layout with ``LmConfig.mask_id``: [MASK] is that id inside the V)."""

    kind = "mdlm"

    def __init__(self, config: LmConfig) -> None:
        super().__init__()
        if config.kind != self.kind:
            raise ValueError(
                f"{type(self).__name__}: needs an LmConfig of kind {self.kind!r}, got {config.describe()}"
            )
        self.config = config
        self.vocab_size = config.vocab_size
        self.mask_id = config.mask_index
        self.eos_id = config.eos_id
        self.bos_id = config.bos_index
        self.max_seq_len = config.max_seq_len
        schedule = Bd3lmsLogLinearSchedule if config.bd3lms_layout else LogLinearSchedule
        self.schedule = schedule(config.sampling_eps)
        self.antithetic = config.antithetic
        self.time_conditioning = config.time_conditioning
        self.bos_offset = config.bos_in_first_block
        self.backbone = DiT(config)

    def block_len(self, seq_len: int) -> int:
        """Positions per diffusion block: the whole sequence (with BOS if it is in block 0) for MDLM."""
        return seq_len + self.bos_offset

    def num_blocks(self, seq_len: int) -> int:
        return -(-(seq_len + self.bos_offset) // self.block_len(seq_len))

    def expand_t(self, t: torch.Tensor, seq_len: int) -> torch.Tensor:
        """Per-block times [B, n_blocks] -> per-token times [B, seq_len] (BOS in block 0 shifts the
        tokens by one position)."""
        return t.repeat_interleave(self.block_len(seq_len), dim=1)[
            :, self.bos_offset : self.bos_offset + seq_len
        ]

    def sigma_positions(self, t: torch.Tensor, seq_len: int) -> torch.Tensor:
        """Noise level per token [B, seq_len] for time conditioning: sigma(t) of the token's block, or in
        the bd3lms layout -log(1 - t) of block 0 (clipped to sigma_max) for all (the reference's)."""
        if self.bos_offset:
            return self.schedule.sigma_from_move_chance(t[:, :1]).expand(-1, seq_len)
        return self.schedule.sigma(self.expand_t(t, seq_len))

    def draw_t(
        self,
        batch: int,
        n_blocks: int,
        generator: torch.Generator | None,
        device: torch.device,
        low: float,
        high: float,
    ) -> torch.Tensor:
        """t [batch, n_blocks] ~ U[low, high], antithetic over all batch * n_blocks draws if enabled."""
        n = batch * n_blocks
        u = antithetic_uniform(n, generator, device) if self.antithetic else uniform((n,), generator, device)
        return scale_to_range(u.view(batch, n_blocks), low, high)

    def draw_mask(
        self,
        t: Tensor,
        lengths: Tensor,
        seq_len: int,
        generator: Generator | None,
        noise_range: NoiseRange,
        token_rates: Tensor | None = None,
    ) -> Tensor:
        """Bool [B, T]: real token l is masked iff u_l < m_l(t(l)), u_l ~ U[0, 1), with m_l = 1 - alpha_t
        (``token_rates`` None) or the per-token schedule (``recipe.lm.token_schedule``).

        ``noise_range`` is the range t was drawn from (used by BD3-LM's resampling, ignored here).
        """
        del noise_range
        u = uniform((t.shape[0], seq_len), generator, t.device)
        move = token_move_chance(self.schedule, self.expand_t(t, seq_len), token_rates)
        return (u < move) & valid_mask(lengths, seq_len)

    def _states(
        self,
        x0: torch.Tensor,
        lengths: torch.Tensor,
        xt: torch.Tensor,
        sigma_pos: torch.Tensor | None,
        out_index: torch.Tensor | None = None,
        out_keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Backbone states [B, T, H] of x_t (positions 1..T) after a clean BOS (= EOS id, sigma 0) at
        position 0; bidirectional attention over BOS and the real tokens; BOS attends only to itself
        (as in BD3-LM, where it must not carry information between blocks).  Only at the x_t positions
        ``out_index`` [B, T'] if given, flat [N, H] for the ``out_keep`` entries if given (the last
        block then computes only those).

        x0 is not read by MDLM (BD3-LM reads the clean blocks before each block from it).  bd3lms
        layout: one bidirectional pass over [BOS ; x_t] (positions 0..T), padding keys masked, every
        position conditioned on sigma_pos[:, 0]."""
        del x0
        keys = F.pad(valid_mask(lengths, xt.shape[1]), (1, 0), value=True)  # BOS and the real tokens
        if self.bos_offset:
            attn = None if bool(keys.all()) else keys[:, None, None, :]
            sigma = None if sigma_pos is None else sigma_pos[:, 0]
        else:
            attn = torch.ones(xt.shape[1] + 1, xt.shape[1] + 1, dtype=torch.bool, device=xt.device)
            attn[0, 1:] = False
            if not bool(keys.all()):
                attn = attn & keys[:, None, None, :]
            sigma = None if sigma_pos is None else F.pad(sigma_pos, (1, 0))
        inputs = torch.cat((torch.full_like(xt[:, :1], self.bos_id), xt), dim=1)
        return self.backbone.hidden(
            inputs, attn_mask=attn, sigma=sigma, out_index=state_index(xt, out_index), out_keep=out_keep
        )[0]

    def masked_nll(
        self, x0: torch.Tensor, lengths: torch.Tensor, xt: torch.Tensor, sigma_pos: torch.Tensor | None
    ) -> torch.Tensor:
        """-log x_theta(x_t)_l[x0_l] (float32 [B, T]) at masked real positions, 0 elsewhere (SUBS).

        sigma_pos [B, T]: noise level per position, given iff time conditioning is on."""
        index, keep = masked_index(xt, lengths, self.mask_id)
        return self.nll_at(self._states(x0, lengths, xt, sigma_pos, index, keep), index, keep, x0)

    def nll_at(
        self, h: torch.Tensor, index: torch.Tensor, keep: torch.Tensor, x0: torch.Tensor
    ) -> torch.Tensor:
        """-log x_theta_l[x0_l] (float32 [B, T]) from the states h [N, H] of the ``keep`` entries (N true,
        row-major) of the positions index [B, M], 0 elsewhere."""
        rows = torch.arange(index.shape[0], device=index.device)[:, None].expand_as(index)[keep]
        cols = index[keep]
        logits = self.backbone.logits(h).float()
        nll = torch.zeros(x0.shape, dtype=torch.float32, device=x0.device)
        nll[rows, cols] = -torch.gather(F.log_softmax(logits, dim=-1), -1, x0[rows, cols][:, None])[:, 0]
        return nll

    def denoiser_log_probs(
        self, x0: torch.Tensor, lengths: torch.Tensor, xt: torch.Tensor, sigma_pos: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Full SUBS output log x_theta(x_t) [B, T, V + 1] (float32) at every position.

        For MDLM x0 is unused (pass xt); for BD3-LM it supplies the clean blocks before each block."""
        logits = self.backbone.logits(self._states(x0, lengths, xt, sigma_pos))
        return subs_log_probs(logits, xt, self.mask_id)

    def nelbo_terms(
        self,
        x0: torch.Tensor,
        lengths: torch.Tensor,
        t: torch.Tensor,
        mask: torch.Tensor,
        token_rates: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-position NELBO terms (1/t) * CE at masked positions, float32 [B, T], for given t and mask;
        with ``token_rates`` g the per-token schedule's weights 1/(g t).  Time conditioning sees t only,
        never g (``recipe.lm.token_schedule``)."""
        t_pos = self.expand_t(t, x0.shape[1])
        xt = torch.where(mask, self.mask_id, x0)
        sigma_pos = self.sigma_positions(t, x0.shape[1]) if self.time_conditioning else None
        weight = token_loss_weight(self.schedule, t_pos, token_rates)
        return weight * self.masked_nll(x0, lengths, xt, sigma_pos)

    def loss(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        noise_range: NoiseRange | None = None,
        generator: torch.Generator | None = None,
        token_rates: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(NELBO summed over the batch with one t draw per sequence/block, number of tokens).

        t ~ U[beta, omega] with (beta, omega) = ``noise_range``, default the full range [eps, 1].
        ``token_rates`` g [B, T] (> 0 at real tokens) selects the per-token schedule m_i(t) = (1 - eps)
        t^(1/g_i) with weights 1/(g_i t) (``recipe.lm.token_schedule``, a bound on -log p(x | g));
        None is the uniform schedule."""
        check_batch(tokens, lengths, self.vocab_size, self.max_seq_len, self.config.mask_id)
        x0 = clean_padding(tokens, lengths, self.eos_id)
        rates = None if token_rates is None else check_token_rates(token_rates, x0, lengths)
        batch, seq_len = x0.shape
        low, high = noise_range or (self.schedule.eps, 1.0)
        t = self.draw_t(batch, self.num_blocks(seq_len), generator, x0.device, low, high)
        mask = self.draw_mask(t, lengths, seq_len, generator, (low, high), rates)
        return self.nelbo_terms(x0, lengths, t, mask, rates).sum(), lengths.sum()
