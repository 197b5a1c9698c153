"""Soft labels (``p_chosen``) in the losses, by hand on 3-element batches, and in records and readers."""

from __future__ import annotations

import math

import pytest
import torch

from tether.data.readers import read_records
from tether.errors import DataError
from tether.losses import PreferenceBatchLogps, PreferenceLossParams, cdpo_loss, flip_rates, robust_loss, sigmoid_loss
from tether.losses.reward import bradley_terry_loss

# the three pairs of tests/test_losses.py: h = (pc - rc) - (pr - rr) = [1.0, -0.5, 0.5]
PC, PR, RC, RR = [-1.0, -2.0, -3.0], [-2.0, -1.5, -4.0], [-1.5, -2.0, -2.5], [-1.5, -2.0, -3.0]
H = [1.0, -0.5, 0.5]


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def batch(p_chosen: list[float] | None) -> PreferenceBatchLogps:
    pc, pr, rc, rr = (torch.tensor(v, dtype=torch.float64) for v in (PC, PR, RC, RR))
    soft = None if p_chosen is None else torch.tensor(p_chosen, dtype=torch.float32)
    return PreferenceBatchLogps(pc, pr, rc, rr, p_chosen=soft)


def close(actual: torch.Tensor, expected: list[float]) -> None:
    assert actual.tolist() == pytest.approx(expected, abs=1e-6, rel=1e-6)


def cdpo_by_hand(h: float, beta: float, eps: float) -> float:
    return -(1 - eps) * log_sigmoid(beta * h) - eps * log_sigmoid(-beta * h)


def robust_by_hand(h: float, beta: float, eps: float) -> float:
    return ((1 - eps) * -log_sigmoid(beta * h) - eps * -log_sigmoid(-beta * h)) / (1 - 2 * eps)


def test_flip_rates_are_one_minus_p_and_the_global_rate_where_a_pair_has_none() -> None:
    params = PreferenceLossParams(label_smoothing=0.1)
    assert flip_rates(batch(None), params) == 0.1
    close(flip_rates(batch([0.6, math.nan, 1.0]), params), [0.4, 0.1, 0.0])  # type: ignore[arg-type]


def test_cdpo_with_per_pair_soft_labels_by_hand() -> None:
    beta = 0.5
    out = cdpo_loss(batch([0.6, 0.9, 1.0]), PreferenceLossParams(beta=beta, label_smoothing=0.2))
    close(out.losses, [cdpo_by_hand(h, beta, eps) for h, eps in zip(H, [0.4, 0.1, 0.0], strict=True)])
    # the first pair written out: -(0.6 log sigma(0.5) + 0.4 log sigma(-0.5))
    assert out.losses[0].item() == pytest.approx(0.6 * math.log1p(math.exp(-0.5)) + 0.4 * math.log1p(math.exp(0.5)))


def test_cdpo_pairs_without_a_soft_label_keep_the_global_label_smoothing() -> None:
    beta = 0.5
    out = cdpo_loss(batch([math.nan, 0.7, math.nan]), PreferenceLossParams(beta=beta, label_smoothing=0.2))
    close(out.losses, [cdpo_by_hand(h, beta, eps) for h, eps in zip(H, [0.2, 0.3, 0.2], strict=True)])


def test_soft_labels_of_one_are_plain_dpo() -> None:
    params = PreferenceLossParams(beta=0.3, label_smoothing=0.25)
    expected = sigmoid_loss(batch(None), params).losses
    for loss in (cdpo_loss, robust_loss):
        torch.testing.assert_close(loss(batch([1.0, 1.0, 1.0]), params).losses, expected)


def test_robust_with_per_pair_soft_labels_by_hand() -> None:
    beta = 0.5
    out = robust_loss(batch([0.6, 0.9, math.nan]), PreferenceLossParams(beta=beta, label_smoothing=0.2))
    close(out.losses, [robust_by_hand(h, beta, eps) for h, eps in zip(H, [0.4, 0.1, 0.2], strict=True)])


@pytest.mark.parametrize("p", [0.5, 0.3])
def test_robust_refuses_a_soft_label_of_one_half_or_less(p: float) -> None:
    with pytest.raises(ValueError, match=r"1 - p_chosen in \[0, 0\.5\)"):
        robust_loss(batch([0.9, p, 1.0]), PreferenceLossParams())


def test_soft_bradley_terry_by_hand() -> None:
    chosen, rejected = torch.tensor([1.0, 0.0, -1.0]), torch.tensor([0.0, 0.5, -2.0])
    p = torch.tensor([0.7, 1.0, 0.5])
    d = [1.0, -0.5, 1.0]
    expected = [-pi * log_sigmoid(di) - (1 - pi) * log_sigmoid(-di) for pi, di in zip([0.7, 1.0, 0.5], d, strict=True)]
    close(bradley_terry_loss(chosen, rejected, p_chosen=p), expected)
    # with a margin the soft label applies to the shifted logit d = r_c - r_r - m
    margin = torch.tensor([0.5, 0.0, 0.0])
    shifted = [-0.7 * log_sigmoid(0.5) - 0.3 * log_sigmoid(-0.5), *expected[1:]]
    close(bradley_terry_loss(chosen, rejected, margin=margin, p_chosen=p), shifted)
    # p = 1 is the usual loss, exactly
    hard = bradley_terry_loss(chosen, rejected)
    torch.testing.assert_close(bradley_terry_loss(chosen, rejected, p_chosen=torch.ones(3)), hard, rtol=0, atol=0)


def test_readers_keep_p_chosen_and_refuse_one_outside_zero_to_one(tmp_path) -> None:
    good = tmp_path / "pairs.jsonl"
    good.write_text(
        '{"prompt": "a", "chosen": "b", "rejected": "c", "p_chosen": 0.75, "source": "cai-label:x", "meta": {}}\n'
        '{"prompt": "a", "chosen": "b", "rejected": "c"}\n'
    )
    first, second = read_records(good, "preference")
    assert first.p_chosen == 0.75 and second.p_chosen is None  # type: ignore[union-attr]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"prompt": "a", "chosen": "b", "rejected": "c"}\n'
        '{"prompt": "a", "chosen": "b", "rejected": "c", "p_chosen": 1.5}\n'
    )
    with pytest.raises(DataError) as err:
        read_records(bad, "preference")
    assert (err.value.line, err.value.field) == (2, "p_chosen")
    assert f"{bad}:2" in str(err.value)


def test_csv_p_chosen_is_a_number(tmp_path) -> None:
    good = tmp_path / "pairs.csv"
    good.write_text("prompt,chosen,rejected,p_chosen\na,b,c,0.6\na,b,c,\n")
    first, second = read_records(good, "preference")
    assert first.p_chosen == 0.6 and second.p_chosen is None  # type: ignore[union-attr]
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,chosen,rejected,p_chosen\na,b,c,high\n")
    with pytest.raises(DataError, match="expected a number") as err:
        read_records(bad, "preference")
    assert err.value.line == 2
