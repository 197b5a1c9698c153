"""Hand-computed checks of the RL losses: GAE, clipping, KL estimators, RLOO/GRPO, Bradley-Terry."""

from __future__ import annotations

import math

import pytest
import torch

from tether.losses.group import grpo_advantages, rloo_advantages
from tether.losses.kl import KL_ESTIMATORS, AdaptiveKLController, kl_k1, kl_k2, kl_k3
from tether.losses.ppo import clipped_policy_loss, clipped_value_loss, gae, masked_mean, masked_whiten
from tether.losses.reward import bradley_terry_loss


def test_gae_matches_a_hand_computed_example():
    # One response of 3 tokens (then padding), gamma 0.9, lambda 0.5.
    rewards = torch.tensor([[0.0, 0.5, 1.0, 7.0]])
    values = torch.tensor([[1.0, 2.0, 3.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    # delta_2 = 1 + 0.9*0 - 3 = -2;  delta_1 = 0.5 + 0.9*3 - 2 = 1.2;  delta_0 = 0 + 0.9*2 - 1 = 0.8
    a2 = -2.0
    a1 = 1.2 + 0.45 * a2  # 0.3
    a0 = 0.8 + 0.45 * a1  # 0.935
    assert advantages.tolist()[0] == pytest.approx([a0, a1, a2, 0.0])
    assert returns.tolist()[0] == pytest.approx([a0 + 1, a1 + 2, a2 + 3, 0.0])


def test_gae_with_lambda_one_and_gamma_one_is_reward_to_go_minus_value():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    values = torch.tensor([[0.5, 0.5, 0.5], [1.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert returns.flatten().tolist() == pytest.approx([6.0, 5.0, 3.0, 4.0, 0.0, 0.0])
    assert advantages.flatten().tolist() == pytest.approx([5.5, 4.5, 2.5, 3.0, 0.0, 0.0])


@pytest.mark.parametrize(
    ("advantage", "ratio", "has_gradient"),
    [
        (1.0, 1.1, True),  # inside the trust region
        (1.0, 1.5, False),  # positive advantage, ratio above 1 + eps: clipped
        (1.0, 0.5, True),  # positive advantage, ratio below 1 - eps: the unclipped term is the max
        (-1.0, 0.5, False),  # negative advantage, ratio below 1 - eps: clipped
        (-1.0, 1.5, True),  # negative advantage, ratio above 1 + eps: unclipped, pushes back
    ],
)
def test_clipped_objective_gradient_vanishes_outside_the_trust_region(advantage, ratio, has_gradient):
    old = torch.tensor([-1.0])
    logps = (old + math.log(ratio)).requires_grad_()
    loss, clipped = clipped_policy_loss(logps, old, torch.tensor([advantage]), clip=0.2)
    loss.sum().backward()
    assert (logps.grad.abs().item() > 0) is has_gradient
    assert clipped.item() == (0.0 if has_gradient else 1.0)
    assert loss.item() == pytest.approx(-advantage * (min(max(ratio, 0.8), 1.2) if not has_gradient else ratio))


def test_clipped_value_loss_takes_the_larger_error():
    old = torch.tensor([1.0, 1.0])
    values = torch.tensor([2.0, 1.1], requires_grad=True)
    returns = torch.tensor([3.0, 3.0])
    loss, clipped = clipped_value_loss(values, old, returns, clip=0.2)
    # row 0: unclipped (2-3)^2 = 1, clipped (1.2-3)^2 = 3.24 -> 1.62; row 1: both (1.1-3)^2 = 3.61 -> 1.805
    assert loss.tolist() == pytest.approx([1.62, 1.805])
    assert clipped.tolist() == [1.0, 0.0]
    loss.sum().backward()
    assert values.grad.tolist() == pytest.approx([0.0, 1.1 - 3.0])


def test_kl_estimators_match_their_definitions_and_k1_k3_are_unbiased():
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([0.2, 0.2, 0.6])
    logp, logq = p.log(), q.log()
    exact = float((p * (logp - logq)).sum())
    assert kl_k1(logp, logq).tolist() == pytest.approx((logp - logq).tolist())
    assert kl_k2(logp, logq).tolist() == pytest.approx((0.5 * (logp - logq) ** 2).tolist())
    r = q / p
    assert kl_k3(logp, logq).tolist() == pytest.approx((r - 1 - r.log()).tolist())
    # Expectations under y ~ p, computed exactly over the three outcomes.
    assert float((p * kl_k1(logp, logq)).sum()) == pytest.approx(exact)
    assert float((p * kl_k3(logp, logq)).sum()) == pytest.approx(exact)
    assert (kl_k3(logp, logq) >= 0).all() and (kl_k2(logp, logq) >= 0).all()
    assert float((p * kl_k2(logp, logq)).sum()) != pytest.approx(exact)
    assert set(KL_ESTIMATORS) == {"k1", "k2", "k3"}


def test_adaptive_kl_controller_follows_ziegler_et_al():
    fixed = AdaptiveKLController(0.1)
    assert fixed.update(5.0, 64) == 0.1
    adaptive = AdaptiveKLController(0.1, target=1.0, horizon=100)
    assert adaptive.update(1.1, 10) == pytest.approx(0.1 * (1 + 0.1 * 0.1))  # error 0.1
    assert adaptive.update(10.0, 10) == pytest.approx(0.1 * 1.01 * (1 + 0.2 * 0.1))  # error clipped to 0.2
    state = adaptive.state_dict()
    other = AdaptiveKLController(0.5, target=1.0)
    other.load_state_dict(state)
    assert other.beta == adaptive.beta


def test_rloo_and_grpo_advantages():
    rewards = torch.tensor([[1.0, 2.0, 6.0], [0.0, 0.0, 0.0]])
    assert rloo_advantages(rewards).flatten().tolist() == pytest.approx([1 - 4.0, 2 - 3.5, 6 - 1.5, 0.0, 0.0, 0.0])
    std = float(torch.tensor([1.0, 2.0, 6.0]).std())
    expected = [(x - 3.0) / (std + 1e-4) for x in (1.0, 2.0, 6.0)]
    assert grpo_advantages(rewards)[0].tolist() == pytest.approx(expected)
    assert grpo_advantages(rewards)[1].tolist() == [0.0, 0.0, 0.0]
    assert grpo_advantages(rewards, scale=False)[0].tolist() == pytest.approx([-2.0, -1.0, 3.0])
    with pytest.raises(ValueError):
        rloo_advantages(rewards[:, :1])


def test_masked_statistics_ignore_padding():
    values = torch.tensor([[1.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 0]])
    assert masked_mean(values, mask).item() == 2.0
    whitened = masked_whiten(values, mask)
    assert whitened[0, :2].tolist() == pytest.approx([-1 / math.sqrt(2), 1 / math.sqrt(2)], rel=1e-4)
    assert whitened[0, 2].item() == 0.0


def test_bradley_terry_loss_with_margin_and_centring():
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    plain = bradley_terry_loss(chosen, rejected)
    assert plain.tolist() == pytest.approx([math.log1p(math.exp(-1)), math.log1p(math.exp(1))])
    margin = bradley_terry_loss(chosen, rejected, margin=torch.tensor([1.0, 0.0]))
    assert margin[0].item() == pytest.approx(math.log(2))
    centred = bradley_terry_loss(chosen, rejected, center_coefficient=0.01)
    assert (centred - plain).tolist() == pytest.approx([0.01 * 9, 0.01 * 1])
