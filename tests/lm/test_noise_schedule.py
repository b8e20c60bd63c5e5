"""Log-linear schedule quantities and the draws of t."""

from __future__ import annotations

import pytest
import torch

from recipe.lm.noise_schedule import (
    LogLinearSchedule,
    antithetic_uniform,
    scale_to_range,
    stratified_uniform,
)


@pytest.mark.parametrize("eps", [1e-3, 1e-5, 0.0])
def test_loss_weight_is_sigma_form_and_one_over_t(eps: float) -> None:
    sched = LogLinearSchedule(eps)
    t = torch.tensor([0.01, 0.1, 0.3, 0.5, 0.9, 0.99], dtype=torch.float64, requires_grad=True)
    sigma = sched.sigma(t)
    (dsigma,) = torch.autograd.grad(sigma.sum(), t)
    sigma_form = dsigma / torch.expm1(sigma)
    assert torch.allclose(sched.loss_weight(t), sigma_form, rtol=1e-9)
    assert torch.allclose(sched.loss_weight(t), 1.0 / t, rtol=1e-12)
    alpha = sched.alpha(t)
    (dalpha,) = torch.autograd.grad(alpha.sum(), t)
    assert torch.allclose(-dalpha / (1 - alpha), 1.0 / t, rtol=1e-9)


def test_schedule_endpoints() -> None:
    sched = LogLinearSchedule(1e-3)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    assert sched.alpha(t).tolist() == pytest.approx([1.0, 1e-3])
    assert sched.move_chance(t).tolist() == pytest.approx([0.0, 1 - 1e-3])
    assert torch.allclose(torch.exp(-sched.sigma(t)), sched.alpha(t))
    assert sched.sigma_max == pytest.approx(6.907755, rel=1e-6)
    big = sched.sigma_from_move_chance(torch.tensor([0.5, 1.0]))
    assert big[0].item() == pytest.approx(0.693147, rel=1e-5)
    assert big[1].item() == pytest.approx(sched.sigma_max, rel=1e-6)
    with pytest.raises(ValueError, match="eps"):
        LogLinearSchedule(1.0)


def test_antithetic_spacing() -> None:
    g = torch.Generator().manual_seed(3)
    for n in (1, 5, 64):
        u = antithetic_uniform(n, g)
        assert u.shape == (n,)
        assert bool(((u >= 0) & (u < 1)).all())
        gaps = torch.diff(torch.sort(u).values)
        assert torch.allclose(gaps, torch.full_like(gaps, 1.0 / n), atol=1e-6)
    t = scale_to_range(antithetic_uniform(8, g), 0.3, 0.7)
    assert bool(((t >= 0.3) & (t < 0.7)).all())
    gaps = torch.diff(torch.sort(t).values)
    assert torch.allclose(gaps, torch.full_like(gaps, 0.4 / 8), atol=1e-6)


def test_stratified_one_draw_per_stratum() -> None:
    u = stratified_uniform((10, 3), torch.Generator().manual_seed(0))
    k = torch.arange(10)[:, None].float()
    assert bool(((u >= k / 10) & (u < (k + 1) / 10)).all())
    assert len(set(u[:, 0].tolist())) == 10


def test_scale_to_range_rejects_bad_ranges() -> None:
    with pytest.raises(ValueError, match="noise range"):
        scale_to_range(torch.zeros(2), 0.0, 1.0)
    with pytest.raises(ValueError, match="noise range"):
        scale_to_range(torch.zeros(2), 0.6, 0.5)
