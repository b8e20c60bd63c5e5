"""Log-linear masking schedule of MDLM / BD3-LM and the draws of the diffusion time t.

Absorbing-state forward process: at time t in [0, 1] every token is independently replaced by
[MASK] with the move chance 1 - alpha_t, where (log-linear schedule with small eps)

    alpha_t = 1 - (1 - eps) * t,        sigma(t) = -log(alpha_t)   (total noise),

so alpha_0 = 1 (clean) and alpha_1 = eps.  The continuous-time NELBO weights the cross-entropy of
every masked token by

    -alpha'_t / (1 - alpha_t) = (1 - eps) / ((1 - eps) * t) = 1 / t
                              = (d sigma / dt) / expm1(sigma(t)).
"""

from __future__ import annotations

import math

import torch

NoiseRange = tuple[float, float]
"""(beta, omega): the diffusion time is drawn as t ~ U[beta, omega]."""


class LogLinearSchedule:
    """alpha_t = 1 - (1 - eps) t; see the module docstring for the derived quantities."""

    def __init__(self, eps: float = 1e-3) -> None:
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"LogLinearSchedule: eps must be in [0, 1), got {eps}")
        self.eps = float(eps)

    def move_chance(self, t: torch.Tensor) -> torch.Tensor:
        """1 - alpha_t = (1 - eps) t: probability that a token is masked at time t."""
        return (1.0 - self.eps) * t

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """alpha_t = 1 - (1 - eps) t: probability that a token is still clean at time t."""
        return 1.0 - self.move_chance(t)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Total noise sigma(t) = -log(1 - (1 - eps) t)."""
        return -torch.log1p(-self.move_chance(t))

    @property
    def sigma_max(self) -> float:
        """sigma(1) = -log(eps) (infinite for eps = 0)."""
        return math.inf if self.eps == 0.0 else -math.log(self.eps)

    def sigma_from_move_chance(self, p: torch.Tensor) -> torch.Tensor:
        """sigma = -log(1 - p), clipped to sigma_max (finite for eps > 0; used for time conditioning)."""
        return (-torch.log1p(-p.clamp(max=1.0))).clamp(max=self.sigma_max)

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """NELBO weight -alpha'_t / (1 - alpha_t) = 1 / t of a masked token's cross-entropy."""
        return 1.0 / t


class Bd3lmsLogLinearSchedule(LogLinearSchedule):
    """bd3lms' ``LogLinearNoise`` as its training and sampling use it: the move chance is t itself (not
    (1 - eps) t), and the time-conditioning input sigma = min(-log(1 - t), sigma_max).  The NELBO weight
    stays 1 / t; eps only bounds sigma and the default noise range [eps, 1]."""

    def move_chance(self, t: torch.Tensor) -> torch.Tensor:
        """t: probability that a token is masked at time t."""
        return t

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """min(-log(1 - t), sigma_max) (bd3lms' ``_sigma_from_p``)."""
        return self.sigma_from_move_chance(t)


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """U[0, 1) float32 draws; taken from ``generator`` (on its own device) when one is given."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def antithetic_uniform(
    n: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Low-discrepancy draws u_i = (u + i / n) mod 1, i = 0..n-1, with one shared u ~ U[0, 1)."""
    u = _uniform((1,), generator, torch.device(device))
    return torch.remainder(u + torch.arange(n, device=u.device, dtype=u.dtype) / n, 1.0)


def stratified_uniform(
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    shuffle: bool = False,
) -> torch.Tensor:
    """Stratified draws along the first dimension K: u[k, ...] = (s_k + v[k, ...]) / K, v ~ U[0, 1).

    s_k = k, or with ``shuffle`` an independent random permutation of 0..K-1 for every trailing index
    (a Latin hypercube over the K samples); either way every u[k, ...] is marginally U[0, 1).
    """
    k = shape[0]
    v = _uniform(shape, generator, torch.device(device))
    if shuffle:
        strata = torch.argsort(_uniform(shape, generator, torch.device(device)), dim=0).to(v.dtype)
    else:
        strata = torch.arange(k, device=v.device, dtype=v.dtype).view(k, *([1] * (len(shape) - 1)))
    return (strata + v) / k


def uniform(
    shape: tuple[int, ...], generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Independent U[0, 1) draws of the given shape."""
    return _uniform(shape, generator, torch.device(device))


def scale_to_range(u: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Affine map of U[0, 1) draws to U[low, high): low + (high - low) u."""
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"noise range must satisfy 0 < low <= high <= 1, got [{low}, {high}]")
    return low + (high - low) * u
