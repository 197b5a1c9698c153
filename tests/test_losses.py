"""The preference losses against numbers computed by hand with ``math`` on 3-element batches."""

from __future__ import annotations

import math

import pytest
import torch

from tether.losses import (
    PAIRED_LOSSES,
    REFERENCE_FREE,
    PreferenceBatchLogps,
    PreferenceLossParams,
    RunningMean,
    cdpo_loss,
    hinge_loss,
    ipo_loss,
    kto_loss,
    kto_reference_point,
    log1mexp,
    log_odds,
    orpo_loss,
    paired_loss,
    robust_loss,
    sigmoid_loss,
    simpo_loss,
    with_nll,
)

# policy chosen/rejected, reference chosen/rejected, and completion lengths of three pairs
PC = [-1.0, -2.0, -3.0]
PR = [-2.0, -1.5, -4.0]
RC = [-1.5, -2.0, -2.5]
RR = [-1.5, -2.0, -3.0]
LC = [2, 4, 3]
LR = [4, 1, 2]
# h = (pc - rc) - (pr - rr) = [1.0, -0.5, 0.5]


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def batch(pc=PC, pr=PR, rc=RC, rr=RR, lc=LC, lr=LR, *, dtype=torch.float64, grad: bool = False) -> PreferenceBatchLogps:
    pc, pr, rc, rr = (torch.tensor(v, dtype=dtype, requires_grad=grad) for v in (pc, pr, rc, rr))
    return PreferenceBatchLogps(pc, pr, rc, rr, torch.tensor(lc), torch.tensor(lr))


def margins() -> list[float]:
    return [(pc - rc) - (pr - rr) for pc, pr, rc, rr in zip(PC, PR, RC, RR, strict=True)]


def close(actual: torch.Tensor, expected: list[float], tol: float = 1e-12) -> None:
    assert actual.tolist() == pytest.approx(expected, abs=tol, rel=tol)


def test_margins_of_the_fixture_are_as_commented() -> None:
    assert margins() == [1.0, -0.5, 0.5]


def test_sigmoid_dpo_by_hand() -> None:
    beta = 0.5
    out = sigmoid_loss(batch(), PreferenceLossParams(beta=beta))
    close(out.losses, [-log_sigmoid(beta * h) for h in margins()])
    close(out.chosen_rewards, [beta * (pc - rc) for pc, rc in zip(PC, RC, strict=True)])
    close(out.rejected_rewards, [beta * (pr - rr) for pr, rr in zip(PR, RR, strict=True)])
    # -log sigma(0.5) = log(1 + e^-0.5), written out once
    assert out.losses[0].item() == pytest.approx(math.log(1 + math.exp(-0.5)))


def test_cdpo_by_hand() -> None:
    beta, eps = 0.5, 0.2
    out = cdpo_loss(batch(), PreferenceLossParams(beta=beta, label_smoothing=eps))
    close(out.losses, [-(1 - eps) * log_sigmoid(beta * h) - eps * log_sigmoid(-beta * h) for h in margins()])


def test_robust_by_hand() -> None:
    beta, eps = 0.5, 0.2
    out = robust_loss(batch(), PreferenceLossParams(beta=beta, label_smoothing=eps))
    expected = [((1 - eps) * -log_sigmoid(beta * h) - eps * -log_sigmoid(-beta * h)) / (1 - 2 * eps) for h in margins()]
    close(out.losses, expected)


@pytest.mark.parametrize("loss", [cdpo_loss, robust_loss])
def test_zero_label_smoothing_is_plain_dpo(loss) -> None:
    params = PreferenceLossParams(beta=0.3, label_smoothing=0.0)
    torch.testing.assert_close(loss(batch(), params).losses, sigmoid_loss(batch(), params).losses, rtol=0, atol=0)


def test_robust_rejects_flip_rate_of_one_half() -> None:
    with pytest.raises(ValueError, match=r"label_smoothing < 0\.5"):
        robust_loss(batch(), PreferenceLossParams(label_smoothing=0.5))


def test_hinge_by_hand() -> None:
    # 1 - 2h = [-1, 2, 0] -> relu -> [0, 2, 0]
    close(hinge_loss(batch(), PreferenceLossParams(beta=2.0)).losses, [0.0, 2.0, 0.0])
    close(hinge_loss(batch(), PreferenceLossParams(beta=0.5)).losses, [0.5, 1.25, 0.75])


def ipo_expected(beta: float, lc: list[int], lr: list[int]) -> list[float]:
    out = []
    for pc, pr, rc, rr, nc, nr in zip(PC, PR, RC, RR, lc, lr, strict=True):
        margin = (pc - rc) / nc - (pr - rr) / nr
        out.append((margin - 1 / (2 * beta)) ** 2)
    return out


def test_ipo_uses_per_token_log_ratios() -> None:
    beta = 0.5
    out = ipo_loss(batch(), PreferenceLossParams(beta=beta))
    close(out.losses, ipo_expected(beta, LC, LR))
    # first pair by hand: (0.5/2 - (-0.5)/4 - 1)^2 = (-0.625)^2
    assert out.losses[0].item() == pytest.approx(0.390625)
    unnormalised = [(h - 1 / (2 * beta)) ** 2 for h in margins()]
    assert out.losses.tolist() != pytest.approx(unnormalised)
    ones = [1, 1, 1]
    close(ipo_loss(batch(lc=ones, lr=ones), PreferenceLossParams(beta=beta)).losses, unnormalised)


def test_ipo_needs_lengths() -> None:
    logps = PreferenceBatchLogps(*(torch.tensor(v) for v in (PC, PR, RC, RR)))
    with pytest.raises(ValueError, match="chosen_lengths, rejected_lengths"):
        ipo_loss(logps, PreferenceLossParams())


def test_bco_by_hand() -> None:
    beta, delta = 0.5, 0.1
    out = PAIRED_LOSSES["bco"](batch(), PreferenceLossParams(beta=beta, delta=delta))
    expected = [
        -log_sigmoid(beta * (pc - rc) - delta) - log_sigmoid(-(beta * (pr - rr) - delta))
        for pc, pr, rc, rr in zip(PC, PR, RC, RR, strict=True)
    ]
    close(out.losses, expected)


def test_running_mean_is_count_weighted_and_resumable() -> None:
    running = RunningMean()
    assert running.update(torch.tensor([1.0, 2.0, 3.0])) == pytest.approx(2.0)
    assert running.update(torch.tensor([])) == pytest.approx(2.0)
    assert running.update(torch.tensor([4.0])) == pytest.approx(2.5)
    resumed = RunningMean()
    resumed.load_state_dict(running.state_dict())
    assert resumed.update(torch.tensor([5.0, 6.0])) == pytest.approx(21 / 6)


def math_log_odds(a: float) -> float:
    return a - math.log(-math.expm1(a))


def test_orpo_by_hand() -> None:
    lam, beta = 0.25, 0.1
    out = orpo_loss(batch(), PreferenceLossParams(beta=beta, orpo_lambda=lam))
    expected, odds = [], []
    for pc, pr, nc, nr in zip(PC, PR, LC, LR, strict=True):
        ratio = math_log_odds(pc / nc) - math_log_odds(pr / nr)
        odds.append(-log_sigmoid(ratio))
        expected.append(-pc / nc + lam * odds[-1])
    close(out.losses, expected)
    close(out.terms["odds_ratio"], odds)
    close(out.terms["nll"], [-pc / nc for pc, nc in zip(PC, LC, strict=True)])
    close(out.chosen_rewards, [beta * pc / nc for pc, nc in zip(PC, LC, strict=True)])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log1mexp_matches_math_across_the_branch_point(dtype: torch.dtype) -> None:
    xs = [-1e-12, -1e-6, -0.1, -0.69, -0.6931471805599453, -0.7, -1.0, -10.0, -50.0, -800.0]
    expected = [math.log(-math.expm1(x)) for x in xs]
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert log1mexp(torch.tensor(xs, dtype=dtype)).tolist() == pytest.approx(expected, rel=tol, abs=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_orpo_is_finite_near_zero_and_very_negative(dtype: torch.dtype) -> None:
    # per-token log-probs of exactly 0 (p = 1), just below 0, ordinary, and extremely negative
    pc = [0.0, -1e-12, -1e-30, -1e4]
    pr = [-1e4, -1e-8, 0.0, -1e-3]
    ones = [1] * 4
    logps = PreferenceBatchLogps(
        torch.tensor(pc, dtype=dtype, requires_grad=True),
        torch.tensor(pr, dtype=dtype, requires_grad=True),
        chosen_lengths=torch.tensor(ones),
        rejected_lengths=torch.tensor(ones),
    )
    out = orpo_loss(logps, PreferenceLossParams())
    out.losses.sum().backward()
    for tensor in (out.losses, logps.policy_chosen.grad, logps.policy_rejected.grad):
        assert torch.isfinite(tensor).all(), tensor
    assert log_odds(torch.tensor([-1e-12], dtype=torch.float64)).item() == pytest.approx(math_log_odds(-1e-12))
    assert log_odds(torch.tensor([-1e4], dtype=torch.float64)).item() == pytest.approx(-1e4)


def test_simpo_by_hand() -> None:
    beta, gamma = 2.0, 0.5
    out = simpo_loss(batch(), PreferenceLossParams(beta=beta, gamma=gamma))
    expected = [
        -log_sigmoid(beta / nc * pc - beta / nr * pr - gamma) for pc, pr, nc, nr in zip(PC, PR, LC, LR, strict=True)
    ]
    close(out.losses, expected)
    close(out.rejected_rewards, [beta * pr / nr for pr, nr in zip(PR, LR, strict=True)])


def test_with_nll_adds_chosen_nll_per_token_to_any_loss() -> None:
    beta, alpha = 0.5, 0.7
    out = with_nll(sigmoid_loss, alpha)(batch(), PreferenceLossParams(beta=beta))
    expected = [-log_sigmoid(beta * h) + alpha * -pc / nc for h, pc, nc in zip(margins(), PC, LC, strict=True)]
    close(out.losses, expected)
    close(out.terms["rpo_nll"], [-pc / nc for pc, nc in zip(PC, LC, strict=True)])
    hinge = paired_loss("hinge", nll_alpha=alpha)(batch(), PreferenceLossParams(beta=0.5))
    close(hinge.losses, [h + alpha * -pc / nc for h, pc, nc in zip([0.5, 1.25, 0.75], PC, LC, strict=True)])
    assert paired_loss("hinge") is hinge_loss


def test_kto_by_hand() -> None:
    beta, w_d, w_u = 0.5, 1.0, 1.5
    # mismatched pairs: policy - ref = [0.5, 1.0, -0.3] -> z0 = 0.4
    z0 = kto_reference_point(torch.tensor([-1.0, -2.0, -3.3]), torch.tensor([-1.5, -3.0, -3.0]))
    assert z0.item() == pytest.approx(0.4)
    out = kto_loss(
        torch.tensor([-1.0, -2.0]),
        torch.tensor([-1.5, -1.0]),
        torch.tensor([-4.0]),
        torch.tensor([-3.0]),
        z0=z0,
        beta=beta,
        desirable_weight=w_d,
        undesirable_weight=w_u,
    )
    expected = [w_d * (1 - sigmoid(beta * (r - 0.4))) for r in (0.5, -1.0)] + [w_u * (1 - sigmoid(beta * (0.4 + 1.0)))]
    close(out.losses, expected, tol=1e-6)
    close(out.chosen_rewards, [0.25, -0.5])
    close(out.rejected_rewards, [-0.5])


def test_kto_reference_point_is_clamped_detached_and_zero_when_empty() -> None:
    policy = torch.tensor([-3.0, -2.0], requires_grad=True)
    z0 = kto_reference_point(policy, torch.tensor([-1.0, -1.0]))
    assert z0.item() == 0.0 and not z0.requires_grad
    assert kto_reference_point(torch.tensor([]), torch.tensor([])).item() == 0.0


@pytest.mark.parametrize("side", ["desirable", "undesirable"])
def test_kto_with_an_empty_side(side: str) -> None:
    some, none = torch.tensor([-1.0, -2.0]), torch.tensor([])
    args = (some, some - 0.5, none, none) if side == "desirable" else (none, none, some, some - 0.5)
    out = kto_loss(*args, z0=0.2, beta=1.0)
    assert out.losses.shape == (2,)
    assert torch.isfinite(out.losses).all()
    expected = 1 - sigmoid(0.5 - 0.2) if side == "desirable" else 1 - sigmoid(0.2 - 0.5)
    close(out.losses, [expected, expected], tol=1e-6)
    out = kto_loss(none, none, none, none, z0=0.0)
    assert out.losses.shape == (0,)


def test_registry_names_and_uniform_signature() -> None:
    assert set(PAIRED_LOSSES) == {"sigmoid", "cdpo", "robust", "hinge", "ipo", "bco", "orpo", "simpo"}
    logps = batch(grad=True)
    for name, loss in PAIRED_LOSSES.items():
        out = loss(logps, PreferenceLossParams(label_smoothing=0.1))
        assert out.losses.shape == out.chosen_rewards.shape == out.rejected_rewards.shape == (3,), name
        assert out.losses.requires_grad and not out.chosen_rewards.requires_grad, name
        assert torch.isfinite(out.losses).all(), name


@pytest.mark.parametrize("name", sorted(REFERENCE_FREE))
def test_reference_free_losses_need_no_reference(name: str) -> None:
    logps = batch()
    no_ref = PreferenceBatchLogps(
        logps.policy_chosen, logps.policy_rejected, None, None, logps.chosen_lengths, logps.rejected_lengths
    )
    torch.testing.assert_close(
        PAIRED_LOSSES[name](no_ref, PreferenceLossParams()).losses,
        PAIRED_LOSSES[name](logps, PreferenceLossParams()).losses,
    )


def test_reference_losses_name_the_missing_input() -> None:
    logps = PreferenceBatchLogps(torch.tensor(PC), torch.tensor(PR))
    with pytest.raises(ValueError, match="ref_chosen, ref_rejected"):
        sigmoid_loss(logps, PreferenceLossParams())
    with pytest.raises(ValueError, match="unknown preference loss 'dpo'; choose one of sigmoid"):
        paired_loss("dpo")


@pytest.mark.parametrize("name", sorted(PAIRED_LOSSES))
def test_raising_chosen_lowers_the_loss_and_raising_rejected_raises_it(name: str) -> None:
    # policy == reference: h = 0, where every loss is still active (hinge 1 - 0 > 0, IPO below its target)
    logps = batch(pc=RC, pr=RR, grad=True)
    PAIRED_LOSSES[name](logps, PreferenceLossParams(beta=0.5, label_smoothing=0.1)).losses.sum().backward()
    assert (logps.policy_chosen.grad < 0).all(), name
    assert (logps.policy_rejected.grad > 0).all(), name


def test_kto_gradient_signs() -> None:
    desirable, undesirable = torch.tensor([-1.0], requires_grad=True), torch.tensor([-1.0], requires_grad=True)
    ref = torch.tensor([-1.0])
    kto_loss(desirable, ref, undesirable, ref, z0=0.1).losses.sum().backward()
    assert desirable.grad.item() < 0 < undesirable.grad.item()
