"""tether rm train / eval / score on tiny random models: exact rewards, the loss, learning, length bias."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from tether.cli import main
from tether.config import RMEvalConfig, RMScoreConfig, RMTrainConfig


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _marker_pairs(n: int, seed: int = 0) -> list[dict]:
    """Chosen answers say 'gladly', rejected ones 'never'; lengths are random on both sides."""
    rng = random.Random(seed)
    topics = ["eggs", "rain", "cats", "trains", "tea", "maps", "bread", "rivers"]
    rows = []
    for i in range(n):
        topic = topics[i % len(topics)]
        filler = " ".join(rng.choice(topics) for _ in range(rng.randint(0, 6)))
        rows.append(
            {
                "prompt": f"Tell me about {topic}.",
                "chosen": f"gladly gladly {filler}".strip(),
                "rejected": f"never never {' '.join(rng.choice(topics) for _ in range(rng.randint(0, 6)))}".strip(),
            }
        )
    return rows


def test_sequence_rewards_equal_the_model_own_pooled_score(tiny_model_dir):
    from transformers import AutoTokenizer

    from tether.data.batching import collate
    from tether.data.tokenization import TokenizedExample
    from tether.models.reward import load_scalar_model, sequence_rewards

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = load_scalar_model(str(tiny_model_dir), pad_token_id=tok.pad_token_id).eval()
    torch.nn.init.normal_(model.score.weight, std=1.0)
    sequences = [tok("a short one")["input_ids"], tok("a rather longer sequence of several words")["input_ids"]]
    batch = collate([TokenizedExample(s, s) for s in sequences], tok.pad_token_id)
    with torch.no_grad():
        ours = sequence_rewards(model, batch)
        alone = [model(input_ids=torch.tensor([s])).logits[0, 0].item() for s in sequences]
    assert ours.tolist() == pytest.approx(alone, abs=1e-5)


def test_first_step_loss_is_bradley_terry_with_the_row_margin(tmp_path, tiny_model_dir):
    from tether.models.reward import load_scalar_model
    from tether.reward.scoring import RewardModelScorer
    from tether.train.reward import run_reward_training

    rows = _marker_pairs(4)
    rows[0]["margin"] = 1.5
    data = _write_jsonl(tmp_path / "pairs.jsonl", rows)
    config = RMTrainConfig(
        model=str(tiny_model_dir),
        data=str(data),
        out=tmp_path / "rm",
        batch_size=4,
        max_steps=1,
        progress=False,
        seed=3,
    )
    torch.manual_seed(3)
    run_reward_training(config)
    # Re-create the untrained head with the same seed and score the pairs the plain way.
    from transformers import AutoTokenizer

    from tether.train.loop import seed_everything

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    seed_everything(3)
    fresh = load_scalar_model(str(tiny_model_dir), pad_token_id=tok.pad_token_id).eval()
    scorer = RewardModelScorer(fresh, tok)
    chosen = scorer.score([r["prompt"] for r in rows], [r["chosen"] for r in rows])
    rejected = scorer.score([r["prompt"] for r in rows], [r["rejected"] for r in rows])
    margins = [1.5, 0, 0, 0]
    expected = sum(math.log1p(math.exp(-(c - r - m))) for c, r, m in zip(chosen, rejected, margins, strict=True)) / 4
    logged = json.loads((tmp_path / "rm" / "metrics.jsonl").read_text().splitlines()[0])
    assert logged["loss"] == pytest.approx(expected, rel=1e-4)
    assert logged["rewards/accuracy"] == pytest.approx(sum(c > r for c, r in zip(chosen, rejected, strict=True)) / 4)


@pytest.mark.parametrize("lora", [False, True])
def test_reward_model_learns_then_evaluates_and_scores(tmp_path, tiny_model_dir, lora):
    train = _write_jsonl(tmp_path / "train.jsonl", _marker_pairs(48, seed=1))
    held_out = _write_jsonl(tmp_path / "test.jsonl", _marker_pairs(24, seed=2))
    out = tmp_path / "rm"
    config = RMTrainConfig(
        model=str(tiny_model_dir),
        data=str(train),
        out=out,
        batch_size=8,
        epochs=3,
        lr=3e-3,
        lora=lora,
        lora_r=8,
        progress=False,
    )
    from tether.reward.evaluate import evaluate_reward_model
    from tether.train.reward import run_reward_training

    run_reward_training(config)
    assert (out / "model" / ("adapter_config.json" if lora else "config.json")).is_file()
    result = evaluate_reward_model(RMEvalConfig(model=str(out), data=str(held_out), out=tmp_path / "eval"))
    assert result["pairs"] == 24
    assert result["accuracy"]["value"] >= 0.9
    assert result["rewards"]["chosen"]["mean"] > result["rewards"]["rejected"]["mean"]
    assert (tmp_path / "eval" / "report.html").read_text().count("<svg") == 2
    scored = tmp_path / "scored.jsonl"
    responses = _write_jsonl(
        tmp_path / "responses.jsonl",
        [
            {"prompt": "Tell me about tea.", "response": "gladly gladly tea", "id": 1},
            {"prompt": "Tell me about tea.", "response": "never never tea", "id": 2},
        ],
    )
    from tether.reward.score_file import score_file

    rewards = score_file(RMScoreConfig(model=str(out), input=str(responses), output=scored))
    rows = [json.loads(line) for line in scored.read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, 2] and [r["reward"] for r in rows] == rewards
    assert rewards[0] > rewards[1]


def test_length_bias_is_flagged_for_a_reward_that_is_length(tmp_path):
    from tether.reward.evaluate import summarize_rewards

    lengths_c, lengths_r = [10, 20, 30, 40], [5, 25, 15, 50]
    result = summarize_rewards([0.1 * n for n in lengths_c], [0.1 * n for n in lengths_r], lengths_c, lengths_r, 0.3)
    assert result["length_bias"]["flagged"] and result["length_bias"]["pearson_r"] == pytest.approx(1.0)
    assert result["accuracy"]["value"] == 0.5
    assert result["length_bias"]["longer_wins_accuracy"]["value"] == 0.5
    assert result["length_bias"]["shorter_wins_accuracy"]["value"] == 0.5
    unbiased = summarize_rewards([1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0], [1, 2, 3, 4], [1, 2, 3, 4], 0.3)
    assert not unbiased["length_bias"]["flagged"]


def test_rm_cli_rejects_bad_pairs_before_loading_a_model(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "hi", "chosen": "a", "rejected": "b", "margin": "big"}) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["rm", "train", "--data", str(bad), "--out", str(tmp_path / "rm"), "--model", "/nonexistent/model"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:1" in err and "margin" in err
    assert not (tmp_path / "rm").exists()
