"""The unlearning losses against values computed by hand from their formulas."""

from __future__ import annotations

import math

import pytest
import torch

from tether.losses.unlearning import (
    control_vector,
    gradient_ascent_loss,
    masked_mse,
    npo_loss,
    retain_nll,
    simnpo_loss,
)


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_gradient_ascent_and_retain_nll_are_per_token_log_probs():
    logps, lengths = torch.tensor([-6.0, -2.0, -1.0]), torch.tensor([3, 1, 0])
    assert gradient_ascent_loss(logps, lengths).tolist() == [-2.0, -2.0, -1.0]  # an empty row divides by 1
    assert retain_nll(logps, lengths).tolist() == [2.0, 2.0, 1.0]


def test_npo_matches_its_formula_and_starts_with_gradient_ascents_gradient():
    beta = 0.1
    logps = torch.tensor([-5.0, -4.0], requires_grad=True)
    ref = torch.tensor([-4.0, -4.0])
    losses = npo_loss(logps, ref, beta)
    expected = [-(2 / beta) * _log_sigmoid(-beta * (lp - r)) for lp, r in ((-5.0, -4.0), (-4.0, -4.0))]
    assert losses.tolist() == pytest.approx(expected, rel=1e-6)
    assert losses[1].item() == pytest.approx((2 / beta) * math.log(2), rel=1e-6)  # at the start: (2/beta) log 2
    losses.sum().backward()
    # dL/dl = 2 sigma(beta (l - l_ref)): 1 at the start, as for gradient ascent on the summed log-prob.
    assert logps.grad.tolist() == pytest.approx([2 / (1 + math.exp(0.1)), 1.0], rel=1e-6)


def test_simnpo_matches_its_formula():
    beta, gamma = 2.5, 0.5
    losses = simnpo_loss(torch.tensor([-6.0, -1.0]), torch.tensor([3, 4]), beta, gamma)
    expected = [-(2 / beta) * _log_sigmoid(-(beta / n) * lp - gamma) for lp, n in ((-6.0, 3), (-1.0, 4))]
    assert losses.tolist() == pytest.approx(expected, rel=1e-6)


def test_masked_mse_averages_real_positions_and_hidden_units_only():
    states = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]], [[2.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    target = torch.tensor([0.0, 0.0])  # a control vector broadcasts over batch and positions
    assert masked_mse(states, target, mask).tolist() == [5.0, 2.0]
    assert masked_mse(states, states.clone(), mask).tolist() == [0.0, 0.0]
    assert masked_mse(states[:1], target, torch.zeros(1, 3)).tolist() == [0.0]  # no real token


def test_control_vector_has_norm_c_nonnegative_units_and_follows_the_seed():
    u = control_vector(64, 6.5, seed=1)
    assert u.norm().item() == pytest.approx(6.5, rel=1e-6)
    assert bool((u >= 0).all())
    assert torch.equal(u, control_vector(64, 6.5, seed=1))
    assert not torch.equal(u, control_vector(64, 6.5, seed=2))
