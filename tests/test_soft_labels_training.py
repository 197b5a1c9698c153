"""The soft label ``p_chosen`` reaches the loss: one step of `tether dpo --loss cdpo` / `robust` and of
`tether rm train` on tiny random models, the logged loss against the formula on plainly computed log-probs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import PAIR_ROWS, write_jsonl
from tests.test_preference import _naive_logps
from tests.test_reward_model import _marker_pairs
from tether.config import DPOConfig, RMTrainConfig
from tether.errors import DataError

SOFT = [0.6, 1.0, 0.9, 0.75, 0.55, 0.8]


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory, tokenizer_dir) -> Path:
    """A reference unlike the policy, so that h is not zero at step 1."""
    from tether.models.tiny import build_tiny_model

    return build_tiny_model(tokenizer_dir, tmp_path_factory.mktemp("tiny-ref"), seed=7, initializer_range=0.2)


def _first_step(out: Path) -> dict:
    return json.loads((out / "metrics.jsonl").read_text().splitlines()[0])


def _dpo_step(tmp_path: Path, model: Path, ref: Path, rows: list[dict], loss: str, name: str) -> dict:
    from tether.train.preference import run_preference

    config = DPOConfig(
        model=str(model),
        ref_model=str(ref),
        data=str(write_jsonl(tmp_path / f"{name}.jsonl", rows)),
        out=tmp_path / name,
        loss=loss,
        beta=0.5,
        label_smoothing=0.2,
        batch_size=len(rows),
        max_steps=1,
        progress=False,
    )
    run_preference(config)
    return _first_step(tmp_path / name)


@pytest.mark.parametrize("loss", ["cdpo", "robust"])
def test_first_dpo_step_uses_each_pair_soft_label(tmp_path, tiny_model_dir, reference_dir, tokenizer_dir, loss):
    """Pairs with p_chosen use eps = 1 - p_chosen; the one pair without keeps --label-smoothing 0.2."""
    rows = [{**row, "p_chosen": p} for row, p in zip(PAIR_ROWS, SOFT, strict=True)]
    del rows[1]["p_chosen"]
    soft = _dpo_step(tmp_path, tiny_model_dir, reference_dir, rows, loss, "soft")
    pc, pr = _naive_logps(tiny_model_dir, tokenizer_dir, rows)
    rc, rr = _naive_logps(reference_dir, tokenizer_dir, rows)
    logits = 0.5 * ((pc - rc) - (pr - rr))
    eps = torch.tensor([1 - p for p in SOFT], dtype=torch.float64)
    eps[1] = 0.2

    def formula(eps: torch.Tensor) -> float:
        if loss == "cdpo":
            return float((-(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)).mean())
        return float((((1 - eps) * -F.logsigmoid(logits) + eps * F.logsigmoid(-logits)) / (1 - 2 * eps)).mean())

    # robust's 1 / (1 - 2 eps) magnifies fp32 rounding (seen: 2e-6 on a loss of 0.023); the check below is 1e-2
    assert soft["loss"] == pytest.approx(formula(eps), rel=1e-4, abs=1e-5)
    assert abs(formula(eps) - formula(torch.full_like(eps, 0.2))) > 1e-2  # the global eps alone would not match


def test_robust_dpo_refuses_a_tie_before_loading_a_model(tmp_path, tiny_model_dir, monkeypatch):
    import tether.train.preference as preference

    monkeypatch.setattr(preference, "load_trainable_model", lambda config: pytest.fail("a model was loaded"))
    rows = [dict(PAIR_ROWS[0]), {**PAIR_ROWS[1], "p_chosen": 0.5}]
    with pytest.raises(DataError, match=r"p_chosen > 0\.5") as err:
        _dpo_step(tmp_path, tiny_model_dir, tiny_model_dir, rows, "robust", "tie")
    assert (err.value.line, err.value.field) == (2, "p_chosen")


def test_first_reward_model_step_is_soft_bradley_terry(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    from tether.models.reward import load_scalar_model
    from tether.reward.scoring import RewardModelScorer
    from tether.train.loop import seed_everything
    from tether.train.reward import run_reward_training

    rows = _marker_pairs(4)
    soft = [0.6, 1.0, 0.8, 0.55]
    for row, p in zip(rows, soft, strict=True):
        row["p_chosen"] = p
    rows[2]["margin"] = 0.5
    config = RMTrainConfig(
        model=str(tiny_model_dir),
        data=str(write_jsonl(tmp_path / "pairs.jsonl", rows)),
        out=tmp_path / "rm",
        batch_size=4,
        max_steps=1,
        progress=False,
        seed=3,
    )
    run_reward_training(config)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    seed_everything(3)
    scorer = RewardModelScorer(load_scalar_model(str(tiny_model_dir), pad_token_id=tok.pad_token_id).eval(), tok)
    chosen = scorer.score([r["prompt"] for r in rows], [r["chosen"] for r in rows])
    rejected = scorer.score([r["prompt"] for r in rows], [r["rejected"] for r in rows])
    d = [c - r - m for c, r, m in zip(chosen, rejected, [0, 0, 0.5, 0], strict=True)]
    expected = (
        sum(p * math.log1p(math.exp(-x)) + (1 - p) * math.log1p(math.exp(x)) for p, x in zip(soft, d, strict=True)) / 4
    )
    hard = sum(math.log1p(math.exp(-x)) for x in d) / 4
    logged = _first_step(tmp_path / "rm")
    assert logged["loss"] == pytest.approx(expected, rel=1e-4)
    assert abs(expected - hard) > 1e-3
