"""Exponential moving average (EMA) of model weights.

After the n-th update (n = 1, 2, ...) every tracked parameter's shadow follows

    shadow <- d_n * shadow + (1 - d_n) * theta,    d_n = min(decay, (1 + n) / (10 + n)),

the warm-up keeps early averages from being dominated by the random initialisation.  The shadows are
buffers of this module, so when it is attached to the model (``model.ema = ExponentialMovingAverage(
model, decay)``) they are saved in, and restored from, the model's state dict (RETURNN checkpoints).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn


def _buffer_name(param_name: str) -> str:
    return "shadow__" + param_name.replace(".", "__")


class ExponentialMovingAverage(nn.Module):
    """EMA shadows of the trainable parameters of ``module`` as they are at construction time."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ExponentialMovingAverage: decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.param_names = [n for n, p in module.named_parameters() if p.requires_grad]
        for name, param in module.named_parameters():
            if param.requires_grad:
                self.register_buffer(_buffer_name(name), param.detach().clone().float())
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def _pairs(self, module: nn.Module) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        params = dict(module.named_parameters())
        for name in self.param_names:
            if name not in params:
                raise ValueError(f"ExponentialMovingAverage: module has no parameter {name!r}")
            yield getattr(self, _buffer_name(name)), params[name]

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """One EMA step towards the current parameters of ``module``."""
        self.num_updates += 1
        n = float(self.num_updates)
        decay = min(self.decay, (1.0 + n) / (10.0 + n))
        for shadow, param in self._pairs(module):
            shadow.lerp_(param.detach().float(), 1.0 - decay)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Overwrite the parameters of ``module`` with the averages."""
        for shadow, param in self._pairs(module):
            param.copy_(shadow.to(param.dtype))
