"""BD3-LM: block diffusion, autoregressive over blocks of L' tokens and masked diffusion within a block.

    log p(x) = sum_b log p(x^b | x^{<b}),   NELBO = sum_b E_{t_b} [ (1/t_b) sum_{l in b masked} CE_l ],

with its own t_b per block and the clean earlier blocks as context.  Vectorised training runs one
forward pass over [x_t ; x_0] (2L positions, both halves with positions 1..L after BOS) under the mask

    x_t query i -> x_t key j:  b(j) = b(i)   (block-diagonal)
    x_t query i -> x_0 key j:  b(j) < b(i)   (offset block-causal)
    x_0 query i -> x_0 key j:  b(j) <= b(i)  (block-causal)
    x_0 query i -> x_t key j:  never,

and reads logits from the x_t half.  L' = L reduces to MDLM; L' = 1 to an AR model whose input at
position i is [MASK].  Clipped schedules draw t_b ~ U[beta, omega] (the noise range); ``search_noise_range``
picks the (beta, omega) that minimises the variance of the per-sequence loss on held-out batches (bd3lms'
``var_min``).  With ``resample`` a block whose masked fraction falls outside the noise range is redrawn (bounded
retries).  Batches are padded internally to a multiple of L'; padding is excluded from attention and loss.
As in MDLM a clean BOS (the EOS id) at position 0 precedes the sequence; every query may attend to it,
so block b models p(x^b | BOS, x^{<b}) and L' = 1 predicts x_l from BOS, x_<l exactly like the AR LM.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Generator, Tensor

from recipe.lm.batch import clean_padding, pad_to_multiple, valid_mask
from recipe.lm.config import LmConfig
from recipe.lm.dit import KVCache
from recipe.lm.mdlm import MDLM, masked_index, state_index
from recipe.lm.noise_schedule import NoiseRange, uniform
from recipe.lm.token_schedule import token_move_chance

MAX_RESAMPLE_ROUNDS = 100


def _pair_mask(seq_len: int, block_size: int, device: str) -> torch.Tensor:
    b = torch.arange(seq_len, device=device) // block_size
    same = b[:, None] == b[None, :]
    earlier = b[None, :] < b[:, None]
    top = torch.cat((same, earlier), dim=1)
    bottom = torch.cat((torch.zeros_like(same), same | earlier), dim=1)
    return torch.cat((top, bottom), dim=0)


@functools.lru_cache(maxsize=16)
def _cached_masks(seq_len: int, block_size: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """([BOS ; x_t ; x_0] mask of size 1 + 2L, identity of that size): every query sees BOS, BOS only itself."""
    mask = F.pad(_pair_mask(seq_len, block_size, device), (1, 0, 1, 0), value=False)
    mask[:, 0] = True
    eye = torch.eye(2 * seq_len + 1, dtype=torch.bool, device=device)
    return mask, eye


def bd3_attention_mask(seq_len: int, block_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Bool [2 seq_len, 2 seq_len] (True = may attend) over [x_t ; x_0] (the rules above)."""
    if seq_len % block_size:
        raise ValueError(f"bd3_attention_mask: seq_len={seq_len} not a multiple of block_size={block_size}")
    return _pair_mask(seq_len, block_size, str(torch.device(device)))


def bd3_training_mask(seq_len: int, block_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Bool [1 + 2 seq_len]^2 over [BOS ; x_t ; x_0] as used in training; cached per (L, L', device)."""
    if seq_len % block_size:
        raise ValueError(f"bd3_training_mask: seq_len={seq_len} not a multiple of block_size={block_size}")
    return _cached_masks(seq_len, block_size, str(torch.device(device)))[0]


def block_causal_mask(seq_len: int, block_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Bool [1 + L, 1 + L] over [BOS ; x]: BOS sees itself, token i sees BOS and tokens j with
    block(j) <= block(i) (the cache-free sampling mask: clean prefix blocks + the noisy last block)."""
    b = torch.arange(seq_len, device=device) // block_size
    mask = F.pad(b[None, :] <= b[:, None], (1, 0, 1, 0), value=False)
    mask[:, 0] = True
    return mask


class BD3LM(MDLM):
    """Block diffusion LM with block size L' (``block_size``); shares its state dict layout with MDLM."""

    kind = "bd3lm"

    def __init__(self, config: LmConfig) -> None:
        super().__init__(config)
        assert config.block_size is not None  # LmConfig requires it for bd3lm
        self.block_size = config.block_size
        self.resample = config.resample

    def block_len(self, seq_len: int) -> int:
        return self.block_size

    def _states_bos_in_block0(
        self,
        x0: torch.Tensor,
        lengths: torch.Tensor,
        xt: torch.Tensor,
        sigma_pos: torch.Tensor | None,
        out_index: torch.Tensor | None,
        out_keep: torch.Tensor | None,
    ) -> torch.Tensor:
        """bd3lms layout: states [B, T, H] of the x_t half of one pass over [s_t ; s_0], s = [BOS ; x]
        padded to P (a multiple of L'), positions 0..P-1 in both halves, under ``bd3_attention_mask(P,
        L')``; padding keys masked (each query keeps itself); every position on sigma_pos[:, 0]."""
        bos = torch.full_like(x0[:, :1], self.eos_id)
        s0 = pad_to_multiple(torch.cat((bos, x0), dim=1), self.block_size, 0)
        st = pad_to_multiple(torch.cat((bos, xt), dim=1), self.block_size, 0)
        padded_len = s0.shape[1]
        attn = bd3_attention_mask(padded_len, self.block_size, x0.device)
        valid = valid_mask(lengths + 1, padded_len)
        if not bool(valid.all()):
            eye = torch.eye(2 * padded_len, dtype=torch.bool, device=x0.device)
            attn = attn & (torch.cat((valid, valid), dim=1)[:, None, None, :] | eye)
        positions = torch.arange(padded_len, device=x0.device).repeat(2)
        sigma = None if sigma_pos is None else sigma_pos[:, 0]
        inputs = torch.cat((st, s0), dim=1)
        return self.backbone.hidden(
            inputs, positions, attn, sigma=sigma, out_index=state_index(xt, out_index), out_keep=out_keep
        )[0]

    def _states(
        self,
        x0: torch.Tensor,
        lengths: torch.Tensor,
        xt: torch.Tensor,
        sigma_pos: torch.Tensor | None,
        out_index: torch.Tensor | None = None,
        out_keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """States [B, T, H] of the x_t part of one pass over [BOS ; x_t ; x_0] under ``bd3_training_mask``
        (positions 0, 1..L, 1..L); only at the x_t positions ``out_index`` [B, T'] if given (flat [N, H]
        for the ``out_keep`` entries, as ``MDLM._states``).  BOS and the x_0 half get sigma = 0 (clean);
        padding keys are masked (each query keeps itself)."""
        if self.bos_offset:
            return self._states_bos_in_block0(x0, lengths, xt, sigma_pos, out_index, out_keep)
        seq_len = x0.shape[1]
        x0p = pad_to_multiple(x0, self.block_size, 0)
        xtp = pad_to_multiple(xt, self.block_size, 0)
        padded_len = x0p.shape[1]
        struct, eye = _cached_masks(padded_len, self.block_size, str(x0.device))
        valid = valid_mask(lengths, padded_len)
        if bool(valid.all()):
            attn = struct
        else:
            keys = torch.cat((torch.ones_like(valid[:, :1]), valid, valid), dim=1)
            attn = struct & (keys[:, None, None, :] | eye)
        sigma = None
        if sigma_pos is not None:
            sigma_p = F.pad(sigma_pos, (1, padded_len - seq_len))
            sigma = torch.cat((sigma_p, torch.zeros_like(sigma_p[:, 1:])), dim=1)
        positions = torch.arange(1, padded_len + 1, device=x0.device)
        positions = torch.cat((positions.new_zeros(1), positions, positions))
        bos = torch.full_like(x0p[:, :1], self.eos_id)
        inputs = torch.cat((bos, xtp, x0p), dim=1)
        return self.backbone.hidden(
            inputs, positions, attn, sigma=sigma, out_index=state_index(xt, out_index), out_keep=out_keep
        )[0]

    def clean_kv(self, x0: torch.Tensor, lengths: torch.Tensor) -> KVCache:
        """Per-layer keys/values [B, heads, 1 + L_p, d] of [BOS ; x_0] (x_0 padded to L_p, a multiple of
        L'), computed as the clean half of the x_t ⊕ x_0 pass sees them: block-causal attention, sigma = 0,
        positions 0, 1..L_p, padding keys masked.  They do not depend on the noise, so scoring computes
        them once per sequence and runs only the x_t positions per Monte-Carlo sample
        (``block_nll_cached``)."""
        x0p = pad_to_multiple(x0, self.block_size, 0)
        padded_len = x0p.shape[1]
        attn = block_causal_mask(padded_len, self.block_size, x0.device)
        valid = valid_mask(lengths, padded_len)
        if not bool(valid.all()):
            keys = F.pad(valid, (1, 0), value=True)
            eye = torch.eye(padded_len + 1, dtype=torch.bool, device=x0.device)
            attn = attn & (keys[:, None, None, :] | eye)
        sigma = (
            torch.zeros(x0p.shape[0], padded_len + 1, device=x0.device) if self.time_conditioning else None
        )
        inputs = torch.cat((torch.full_like(x0p[:, :1], self.eos_id), x0p), dim=1)
        return self.backbone.hidden(inputs, attn_mask=attn, sigma=sigma, out_index=inputs.new_zeros(1))[1]

    def block_nll_cached(
        self,
        xt_block: torch.Tensor,
        x0_block: torch.Tensor,
        block_index: torch.Tensor,
        count: torch.Tensor,
        sigma: torch.Tensor | None,
        clean: KVCache,
    ) -> torch.Tensor:
        """Sum of -log x_theta(x_t)_l[x0_l] over the masked real positions of single blocks (float64 [U]).

        Unit u is block ``block_index[u]`` of one noisy sequence: its x_t tokens xt_block [U, L'], clean
        tokens x0_block [U, L'], ``count[u]`` real tokens, noise level sigma [U] (time conditioning) and
        the clean keys/values ``clean`` ([U, heads, P, d] per layer, from ``clean_kv`` of its sequence,
        P >= 1 + block_index * L').  Its queries attend to BOS, the clean keys of the earlier blocks and
        the block's own real x_t keys: exactly what block b's x_t positions see in the x_t + x_0 pass,
        whose outputs in block b depend on nothing else."""
        units, size = xt_block.shape
        past = clean[0][0].shape[2]
        offset = torch.arange(size, device=xt_block.device)
        pos = torch.arange(past - 1, device=xt_block.device) // size
        clean_keys = F.pad(pos[None, :] < block_index[:, None], (1, 0), value=True)
        own_keys = (offset[None, :] < count[:, None])[:, None, :] | torch.eye(
            size, dtype=torch.bool, device=xt_block.device
        )
        attn = torch.cat((clean_keys[:, None, :].expand(-1, size, -1), own_keys), dim=2)[:, None]
        positions = block_index[:, None] * size + 1 + offset
        sigma_pos = None if sigma is None else sigma[:, None].expand(-1, size)
        index, keep = masked_index(xt_block, count.clamp(min=0), self.mask_id)
        h = self.backbone.hidden(
            xt_block, positions, attn, sigma=sigma_pos, past_kv=clean, out_index=index, out_keep=keep
        )[0]
        return self.nll_at(h, index, keep, x0_block).double().sum(dim=1)

    def draw_mask(
        self,
        t: Tensor,
        lengths: Tensor,
        seq_len: int,
        generator: Generator | None,
        noise_range: NoiseRange,
        token_rates: Tensor | None = None,
    ) -> Tensor:
        """Per-block masks; with ``resample``, blocks whose masked fraction is outside ``noise_range`` are
        redrawn (with the same per-token probabilities m_i(t) when ``token_rates`` are given).

        A bound is only enforced when it is clipped (low > sampling_eps or high < 1).  Blocks that can
        never fit (e.g. a last block of 1 real token and noise range [0.45, 0.95]) are left as drawn; the redraw
        stops after MAX_RESAMPLE_ROUNDS rounds.
        """
        mask = super().draw_mask(t, lengths, seq_len, generator, noise_range, token_rates)
        low, high = noise_range
        check_low, check_high = low > self.schedule.eps + 1e-9, high < 1.0 - 1e-9
        if not (self.resample and (check_low or check_high)):
            return mask
        valid = valid_mask(lengths, seq_len)
        move = token_move_chance(self.schedule, self.expand_t(t, seq_len), token_rates)
        n_blocks = t.shape[1]
        pad = n_blocks * self.block_size - seq_len
        count = F.pad(valid.float(), (0, pad)).view(-1, n_blocks, self.block_size).sum(-1)
        k_min = torch.ceil(low * count - 1e-6) if check_low else torch.zeros_like(count)
        k_max = torch.floor(high * count + 1e-6) if check_high else count
        feasible = (count > 0) & (k_min <= k_max)
        for _ in range(MAX_RESAMPLE_ROUNDS):
            masked = F.pad(mask.float(), (0, pad)).view(-1, n_blocks, self.block_size).sum(-1)
            bad = ((masked < k_min) | (masked > k_max)) & feasible
            if not bool(bad.any()):
                break
            redo = bad.repeat_interleave(self.block_size, dim=1)[:, :seq_len]
            fresh = (uniform(mask.shape, generator, mask.device) < move) & valid
            mask = torch.where(redo, fresh, mask)
        return mask


def noise_range_candidates(widths: Sequence[float], delta: float, eps: float) -> list[NoiseRange]:
    """(beta, omega) pairs: the full range (eps, 1) and, per width w, beta = k delta for k = 0..(1-w)/delta,
    omega = beta + w, both clamped to >= eps."""
    if delta <= 0:
        raise ValueError(f"noise_range_candidates: clip_search_delta must be positive, got {delta}")
    cands = [(eps, 1.0)]
    for width in widths:
        if not 0.0 < width <= 1.0:
            raise ValueError(
                f"noise_range_candidates: clip_search_widths entries must be in (0, 1], got {width}"
            )
        for k in range(int(round((1.0 - width) / delta)) + 1):
            low = round(k * delta, 10)
            pair = (max(low, eps), max(round(low + width, 10), eps))
            if pair not in cands:
                cands.append(pair)
    return cands


VAR_STATISTICS = ("sequence", "block")


def block_mean_losses(terms: Tensor, lengths: Tensor, block: int) -> Tensor:
    """The mean loss term of every (sequence, block) holding real tokens (1-D, row-major): terms [B, T]
    are per-position NELBO terms (0 at unmasked and padding positions)."""
    batch, seq_len = terms.shape
    n_blocks = -(-seq_len // block)
    pad = n_blocks * block - seq_len
    sums = F.pad(terms, (0, pad)).view(batch, n_blocks, block).sum(-1)
    counts = F.pad(valid_mask(lengths, seq_len).float(), (0, pad)).view(batch, n_blocks, block).sum(-1)
    return (sums / counts.clamp(min=1))[counts > 0]


@torch.no_grad()
def search_noise_range(
    model: MDLM,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    widths: Sequence[float],
    delta: float,
    generator: torch.Generator | None = None,
    statistic: str = "sequence",
) -> tuple[NoiseRange, dict[NoiseRange, float]]:
    """Data-driven clipped schedule: for every candidate (beta, omega) draw the training noise
    (t ~ U[beta, omega], masks as in training) on each batch and compute, with ``statistic``,
    "sequence": the variance over all sequences of the per-sequence loss NELBO(x) / |x|;
    "block" (bd3lms' ``var_min``): per batch, the variance over its (sequence, block) pairs of the
    block's mean loss (1/n_b) sum_{l in block b} (1/t_b) CE_l (n_b real tokens), summed over batches.
    Both evaluate the uniform bound, also for models trained with per-token rates.
    Returns (best pair, {pair: statistic}); the best pair is meant for ``LmConfig.noise_range`` of the
    next training.  Runs the model in eval mode."""
    data = list(batches)
    if not data:
        raise ValueError("search_noise_range: no validation batches given")
    if statistic not in VAR_STATISTICS:
        raise ValueError(f"search_noise_range: statistic must be one of {VAR_STATISTICS}, got {statistic!r}")
    was_training = model.training
    model.eval()
    table: dict[NoiseRange, float] = {}
    try:
        for low, high in noise_range_candidates(widths, delta, model.schedule.eps):
            per_seq = []
            for tokens, lengths in data:
                x0 = clean_padding(tokens, lengths, 0)
                t = model.draw_t(x0.shape[0], model.num_blocks(x0.shape[1]), generator, x0.device, low, high)
                mask = model.draw_mask(t, lengths, x0.shape[1], generator, (low, high))
                terms = model.nelbo_terms(x0, lengths, t, mask)
                if statistic == "sequence":
                    per_seq.append(terms.sum(1) / lengths)
                else:
                    per_seq.append(
                        block_mean_losses(terms, lengths, model.block_len(x0.shape[1])).var()[None]
                    )
            values = torch.cat(per_seq)
            table[(low, high)] = float(values.var() if statistic == "sequence" else values.sum())
    finally:
        model.train(was_training)
    return min(table, key=table.__getitem__), table
