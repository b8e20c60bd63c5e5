"""Rotary position embeddings (RoPE) for explicit integer positions.

For head dimension d and frequencies f_j = base^(-2j/d), j < d/2, a vector x at position p is rotated
pairwise: with x = [x1, x2] split into halves,

    rope(x, p) = [x1 cos(p f) - x2 sin(p f),  x2 cos(p f) + x1 sin(p f)],

so that <rope(q, p), rope(k, p')> depends only on p - p'.  Positions are given explicitly, which lets
BD3-LM give x_t and x_0 the same positions and lets cached decoding continue at any offset.
"""

from __future__ import annotations

import torch


def rotary_cos_sin(
    positions: torch.Tensor, head_dim: int, base: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos / sin tables of shape [..., T, head_dim] (float32) for integer ``positions`` [..., T]."""
    if head_dim % 2:
        raise ValueError(f"rotary embeddings need an even head dimension, got {head_dim}")
    inv_freq = base ** (
        -torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim
    )
    angles = positions.to(torch.float32)[..., None] * inv_freq
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, H, T, d] with tables [T, d] or [B, T, d]; the result keeps x's dtype."""
    if cos.dim() == 3:
        cos, sin = cos[:, None], sin[:, None]
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return (x * cos.to(x.dtype) + rotated * sin.to(x.dtype)).to(x.dtype)
