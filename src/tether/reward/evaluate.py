"""``tether rm eval``: how well a reward model ranks held-out pairs, and whether it just rewards length.

Reported (``eval.json`` and ``report.html``):

- pairwise accuracy, the share of pairs with r(chosen) > r(rejected) (ties count half), with a 95% bootstrap
  interval;
- the reward distribution of chosen and rejected responses (mean, standard deviation, histogram);
- the length-bias diagnostic: Pearson r between reward and response length in tokens over all responses,
  flagged when |r| exceeds a threshold, next to the accuracy of the "longer response wins" and "shorter
  response wins" baselines on the same pairs (Singhal et al. 2023, "A Long Way to Go: Investigating Length
  Correlations in RLHF").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tether.atomic import atomic_write_json
from tether.config import RMEvalConfig
from tether.data.pair_encoding import encode_records
from tether.data.readers import read_records_with_report
from tether.data.tokenization import ChatEncoder
from tether.errors import DataError
from tether.reward.scoring import RewardModelScorer, score_sequences
from tether.runs.folders import check_run_folder, open_run_folder
from tether.stats import bootstrap_mean


def pearson(x: list[float], y: list[float]) -> float:
    """Pearson correlation; NaN when either side is constant."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def pair_accuracy_flags(chosen: list[float], rejected: list[float]) -> list[float]:
    """1 for a correctly ranked pair, 0.5 for a tie, 0 otherwise."""
    return [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected, strict=True)]


def summarize_rewards(
    chosen: list[float], rejected: list[float], chosen_len: list[int], rejected_len: list[int], threshold: float
) -> dict[str, Any]:
    accuracy = bootstrap_mean(pair_accuracy_flags(chosen, rejected))
    rewards, lengths = chosen + rejected, chosen_len + rejected_len
    r = pearson([float(n) for n in lengths], rewards)
    longer = [1.0 if c > j else 0.5 if c == j else 0.0 for c, j in zip(chosen_len, rejected_len, strict=True)]
    shorter = [1.0 - flag for flag in longer]
    return {
        "pairs": len(chosen),
        "accuracy": accuracy.to_dict(),
        "rewards": {
            "chosen": {"mean": float(np.mean(chosen)), "std": float(np.std(chosen))},
            "rejected": {"mean": float(np.mean(rejected)), "std": float(np.std(rejected))},
        },
        "length_bias": {
            "pearson_r": r,
            "threshold": threshold,
            "flagged": bool(abs(r) > threshold) if r == r else False,
            "longer_wins_accuracy": bootstrap_mean(longer).to_dict(),
            "shorter_wins_accuracy": bootstrap_mean(shorter).to_dict(),
        },
    }


def evaluate_reward_model(config: RMEvalConfig, *, console: Any = None) -> dict[str, Any]:
    out = Path(config.out)
    check_run_folder(out, "rm eval", overwrite=config.overwrite)
    wanted = None if config.limit is None else config.skip + config.limit
    records, report = read_records_with_report(
        config.data,
        "preference",
        config.data_format,
        split=config.split,
        limit=wanted,
        on_invalid="skip" if config.skip_invalid else "error",
    )
    records, lines = records[config.skip :], report.lines[config.skip :]
    if not records:
        raise DataError(f"no pairs left after --skip {config.skip}", file=config.data)
    scorer = RewardModelScorer.load(
        config.model, dtype=config.dtype, trust_remote_code=config.trust_remote_code, batch_size=config.batch_size
    )
    pairs, encoded = encode_records(
        ChatEncoder(scorer.tokenizer),
        records,
        max_length=config.max_length,
        max_prompt_length=config.max_prompt_length,
        source=config.data,
        lines=lines,
    )
    if not pairs:
        raise DataError("no pair has a response token left after truncation; raise --max-length", file=config.data)
    sequences = [p.prompt_ids + side for p in pairs for side in (p.chosen_ids, p.rejected_ids)]
    scores = score_sequences(
        scorer.model,
        sequences,
        pad_id=scorer.tokenizer.pad_token_id,
        batch_size=config.batch_size,
        progress=console is not None,
    ).tolist()
    chosen, rejected = scores[0::2], scores[1::2]
    chosen_len = [len(p.chosen_ids) for p in pairs]
    rejected_len = [len(p.rejected_ids) for p in pairs]
    result = {
        "model": config.model,
        "data": config.data,
        "skip": config.skip,
        "dropped": encoded.dropped,
        **summarize_rewards(chosen, rejected, chosen_len, rejected_len, config.length_bias_threshold),
        "samples": [
            {"chosen": c, "rejected": r, "chosen_tokens": cl, "rejected_tokens": rl}
            for c, r, cl, rl in zip(chosen, rejected, chosen_len, rejected_len, strict=True)
        ],
    }
    open_run_folder(out, "rm eval", overwrite=config.overwrite)
    atomic_write_json(out / "eval.json", result)
    write_reward_report(out, result)
    return result


def write_reward_report(out: Path, result: dict[str, Any]) -> Path:
    from tether.report.html import page, paragraph, section, table, write_html
    from tether.report.plots import histogram, scatter

    acc, bias = result["accuracy"], result["length_bias"]
    samples = result["samples"]
    rows = [
        ("Pairs", result["pairs"]),
        ("Pairwise accuracy", f"{acc['value']:.1%} [{acc['low']:.1%}, {acc['high']:.1%}]"),
        (
            "Chosen reward (mean ± sd)",
            f"{result['rewards']['chosen']['mean']:.3f} ± {result['rewards']['chosen']['std']:.3f}",
        ),
        (
            "Rejected reward (mean ± sd)",
            f"{result['rewards']['rejected']['mean']:.3f} ± {result['rewards']['rejected']['std']:.3f}",
        ),
        ("Reward-length Pearson r", f"{bias['pearson_r']:.3f}" + ("  FLAGGED" if bias["flagged"] else "")),
        ("'Longer wins' baseline accuracy", f"{bias['longer_wins_accuracy']['value']:.1%}"),
        ("'Shorter wins' baseline accuracy", f"{bias['shorter_wins_accuracy']['value']:.1%}"),
    ]
    warning = (
        paragraph(
            f"Length bias: |r| = {abs(bias['pearson_r']):.2f} exceeds {bias['threshold']}; the model may reward "
            "length rather than quality, and RL against it will tend to lengthen answers."
        )
        if bias["flagged"]
        else ""
    )
    charts = [
        histogram(
            {"chosen": [s["chosen"] for s in samples], "rejected": [s["rejected"] for s in samples]},
            "Reward distribution",
            "reward",
        ),
        scatter(
            {
                "chosen": [(s["chosen_tokens"], s["chosen"]) for s in samples],
                "rejected": [(s["rejected_tokens"], s["rejected"]) for s in samples],
            },
            "Reward against response length",
            "response tokens",
            "reward",
        ),
    ]
    sections = [section("Summary", table(["Measure", "Value"], rows), warning), section("Plots", *charts)]
    return write_html(out / "report.html", page(f"Reward model evaluation: {result['model']}", sections))
