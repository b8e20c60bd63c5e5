"""DiT backbone shared by the AR baseline, MDLM and BD3-LM.

Pre-LayerNorm Transformer blocks with rotary self-attention under an arbitrary boolean attention mask
(``True`` = query may attend to key; torch ``scaled_dot_product_attention``) and a GELU MLP (x4).
With time conditioning the noise level sigma is embedded (sinusoids -> MLP -> c, cond_dim) and each
block is modulated by adaLN:  h = x + g1 * Attn(LN(x) (1 + a1) + b1),  y = h + g2 * MLP(LN(h) (1 + a2) + b2),
where (b1, a1, g1, b2, a2, g2) = Linear(SiLU(c)), zero-initialised so training starts from the
unconditioned network.  sigma may be per sequence [B] or per position [B, T] (BD3-LM gives every
block its own noise level).  Residual dropout after attention and MLP.  Optional key/value caching
for semi-autoregressive decoding.  Logits are returned in the compute dtype; callers compute losses
in float32.

``LmConfig.bd3lms_layout`` gives the network of the official bd3lms code: LayerNorms without bias, an
output layer with bias over V + 1 rows ([MASK] last), and adaLN on diffusion LMs even without time
conditioning, where c = TimestepEmbedding(0) is a constant (the reference feeds sigma = 0).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from recipe.lm.config import LmConfig
from recipe.lm.rotary import apply_rotary, rotary_cos_sin

KVCache = list[tuple[torch.Tensor, torch.Tensor]]


ROTARY_BASE = 10000.0


def has_adaln(cfg: LmConfig) -> bool:
    """Whether the blocks are adaLN-modulated: with time conditioning, and always for bd3lms' diffusion LMs."""
    return cfg.time_conditioning or (cfg.bd3lms_layout and cfg.is_diffusion)


class TimestepEmbedding(nn.Module):
    """c = W2 SiLU(W1 [cos(sigma f_j), sin(sigma f_j)]_j), f_j = max_period^(-j / (F/2)), F = 256."""

    def __init__(self, cond_dim: int, num_freqs: int = 256, max_period: float = 10000.0) -> None:
        super().__init__()
        self.num_freqs = num_freqs
        self.max_period = max_period
        self.mlp = nn.Sequential(nn.Linear(num_freqs, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        half = self.num_freqs // 2
        freqs = torch.exp(
            -math.log(self.max_period) * torch.arange(half, device=sigma.device, dtype=torch.float32) / half
        )
        args = sigma.to(torch.float32)[..., None] * freqs
        return self.mlp(torch.cat((args.cos(), args.sin()), dim=-1))


def select_positions(x: torch.Tensor, index: torch.Tensor, dim: int) -> torch.Tensor:
    """The entries of x (batch first) at positions ``index`` along ``dim``: index [T'] (the same for
    every row) or [B, T'] (per row; x with batch size 1 is broadcast)."""
    if index.dim() == 1:
        return x.index_select(dim, index)
    shape = list(x.shape)
    shape[0], shape[dim] = index.shape[0], index.shape[1]
    view = [1] * x.dim()
    view[0], view[dim] = index.shape
    return x.expand(shape[0], *x.shape[1:]).gather(dim, index.view(view).expand(shape))


class DiTBlock(nn.Module):
    """One Transformer block (rotary attention + MLP), optionally adaLN-modulated."""

    def __init__(self, cfg: LmConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.dropout = cfg.dropout
        self.norm1 = nn.LayerNorm(cfg.hidden, bias=not cfg.bd3lms_layout)
        self.qkv = nn.Linear(cfg.hidden, 3 * cfg.hidden, bias=False)
        self.attn_out = nn.Linear(cfg.hidden, cfg.hidden, bias=False)
        self.norm2 = nn.LayerNorm(cfg.hidden, bias=not cfg.bd3lms_layout)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.hidden, cfg.mlp_ratio * cfg.hidden),
            nn.GELU(approximate="tanh"),
            nn.Linear(cfg.mlp_ratio * cfg.hidden, cfg.hidden),
        )
        self.ada = None
        if has_adaln(cfg):
            self.ada = nn.Linear(cfg.cond_dim, 6 * cfg.hidden)
            nn.init.zeros_(self.ada.weight)
            nn.init.zeros_(self.ada.bias)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attn_mask: torch.Tensor | None,
        causal: bool,
        cond: torch.Tensor | None,
        past: tuple[torch.Tensor, torch.Tensor] | None,
        out_index: torch.Tensor | None = None,
        out_keep: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x [B, T, H] -> (y [B, T', H], (k, v) [B, heads, P + T, d] including the past).

        out_index: compute outputs only at these T' positions, [T'] or [B, T'] (all T still give
        keys/values: a position's output depends on its own query row alone); out_keep [B, T'] (bool,
        with a [B, T'] out_index): after the attention only the kept ones, returned flat as y [N, H]."""
        b, t, h = x.shape
        if self.ada is not None:
            mod = self.ada(F.silu(cond))
            if mod.dim() == 2:
                mod = mod[:, None]
            shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)
        y = self.norm1(x)
        if self.ada is not None:
            y = y * (1 + scale1) + shift1
        q, k, v = self.qkv(y).view(b, t, 3, self.n_heads, h // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if past is not None:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        if out_index is not None:
            t, q, x = (
                out_index.shape[-1],
                select_positions(q, out_index, 2),
                select_positions(x, out_index, 1),
            )
            if attn_mask is not None and attn_mask.shape[-2] > 1:
                attn_mask = attn_mask.view((1,) * (4 - attn_mask.dim()) + attn_mask.shape)
                attn_mask = select_positions(attn_mask, out_index, 2)
            if self.ada is not None:
                gate1, shift2, scale2, gate2 = (
                    m if m.shape[1] == 1 else select_positions(m, out_index, 1)
                    for m in (gate1, shift2, scale2, gate2)
                )
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal)
        a = a.transpose(1, 2).reshape(b, t, h)
        if out_keep is not None:
            a, x = a[out_keep], x[out_keep]
            if self.ada is not None:
                gate1, shift2, scale2, gate2 = (
                    m.expand(b, t, h)[out_keep] for m in (gate1, shift2, scale2, gate2)
                )
        a = self.attn_out(a)
        a = F.dropout(a, self.dropout, self.training)
        x = x + (gate1 * a if self.ada is not None else a)
        y = self.norm2(x)
        if self.ada is not None:
            y = y * (1 + scale2) + shift2
        m = F.dropout(self.mlp(y), self.dropout, self.training)
        x = x + (gate2 * m if self.ada is not None else m)
        return x, (k, v)


class DiT(nn.Module):
    """Token embedding -> DiT blocks -> final (adaLN-)LayerNorm -> linear or tied output layer.

    The sizes come from the LM's config: V embedding rows for the AR LM, V + 1 (with [MASK] = V) for
    diffusion LMs (and for every bd3lms-layout LM); V output logits (the bd3lms layout computes V + 1
    rows, ``output_rows``, and drops the [MASK] row)."""

    def __init__(self, cfg: LmConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.input_size = cfg.vocab_size + (1 if cfg.is_diffusion or cfg.bd3lms_layout else 0)
        self.output_size = cfg.vocab_size
        self.output_rows = cfg.vocab_size + (1 if cfg.bd3lms_layout else 0)
        self.embed = nn.Embedding(self.input_size, cfg.hidden)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.time_embed = TimestepEmbedding(cfg.cond_dim) if has_adaln(cfg) else None
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.n_layers))  # named as in bd3lms' DiT
        self.norm_out = nn.LayerNorm(cfg.hidden, bias=not cfg.bd3lms_layout)
        self.ada_out = None
        if has_adaln(cfg):
            self.ada_out = nn.Linear(cfg.cond_dim, 2 * cfg.hidden)
            nn.init.zeros_(self.ada_out.weight)
            nn.init.zeros_(self.ada_out.bias)
        self.out = None
        if not cfg.tie_embeddings:
            self.out = nn.Linear(cfg.hidden, self.output_rows, bias=cfg.bd3lms_layout)
            nn.init.normal_(self.out.weight, std=0.02)

    def hidden(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        causal: bool = False,
        sigma: torch.Tensor | None = None,
        past_kv: KVCache | None = None,
        out_index: torch.Tensor | None = None,
        out_keep: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        """Final normalised hidden states [B, T, H] and the per-layer (k, v) including ``past_kv``.

        tokens [B, T]; positions [T] or [B, T] (default: P..P+T-1 after P cached positions);
        attn_mask: bool, broadcastable to [B, heads, T, P + T]; causal: lower-triangular mask instead
        (only without past_kv); sigma: noise level [B] or [B, T], required iff time conditioning;
        out_index: only the states at these positions ([T'] or [B, T']) are returned, and the last block
        computes only those (BD3-LM needs no outputs of its x_0 half, the diffusion losses none at
        unmasked positions); out_keep [B, T'] (bool, with a [B, T'] out_index): only the kept states,
        flat [N, H] (the last block's projections and MLP run on those N rows alone).
        """
        if (sigma is None) == self.cfg.time_conditioning:
            raise ValueError(
                "DiT: sigma must be given exactly when time_conditioning is on "
                f"(time_conditioning={self.cfg.time_conditioning}, sigma given: {sigma is not None})"
            )
        if causal and (attn_mask is not None or past_kv is not None or out_index is not None):
            raise ValueError("DiT: causal=True cannot be combined with attn_mask, past_kv or out_index")
        past_len = 0 if past_kv is None else past_kv[0][0].shape[2]
        if positions is None:
            positions = torch.arange(past_len, past_len + tokens.shape[1], device=tokens.device)
        cos, sin = rotary_cos_sin(positions, self.cfg.hidden // self.cfg.n_heads, ROTARY_BASE)
        if self.time_embed is not None and sigma is None:
            sigma = torch.zeros(1, device=tokens.device)
        cond = None if self.time_embed is None else self.time_embed(sigma)
        x = self.embed(tokens)
        new_kv: KVCache = []
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            past = None if past_kv is None else past_kv[i]
            outputs = (out_index, out_keep) if i == last else (None, None)
            x, kv = block(x, cos, sin, attn_mask, causal, cond, past, *outputs)
            new_kv.append(kv)
        x = self.norm_out(x)
        if self.ada_out is not None:
            mod = self.ada_out(F.silu(cond))
            if mod.dim() == 2:
                mod = mod[:, None]
            elif out_index is not None:
                mod = select_positions(mod, out_index, 1)
            if out_keep is not None:
                mod = mod.expand(*out_keep.shape, mod.shape[-1])[out_keep]
            shift, scale = mod.chunk(2, dim=-1)
            x = x * (1 + scale) + shift
        return x, new_kv

    def output_layer(self, h: torch.Tensor) -> torch.Tensor:
        """Output layer: h [..., H] -> all ``output_rows`` logits (tied: the first V embedding rows)."""
        if self.out is not None:
            return self.out(h)
        return F.linear(h, self.embed.weight[: self.output_size])

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Logits [..., V] over the real vocabulary: the output layer without a [MASK] row."""
        return self.output_layer(h)[..., : self.output_size]

    def forward(self, tokens: torch.Tensor, **options: Any) -> torch.Tensor:
        """Logits [B, T, output_size] for all positions (``options``: those of ``hidden``)."""
        return self.logits(self.hidden(tokens, **options)[0])


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
