"""The report of an online RL run: the monitors of reward hacking over steps, and reward against KL."""

from __future__ import annotations

import math
from pathlib import Path

from tether.report.html import page, paragraph, pre, section, table, write_html
from tether.report.metrics import Record, read_metrics
from tether.report.plots import line_chart

MONITORS = (
    ("reward", "Mean reward of the rollouts"),
    ("kl", "KL to the reference (per response)"),
    ("response_length", "Response length (tokens)"),
    ("entropy", "Policy entropy (per token)"),
    ("truncated", "Share of truncated responses"),
    ("value/loss", "Value loss"),
    ("policy/clipfrac", "Share of clipped tokens"),
    ("kl/beta", "KL coefficient beta"),
)


def _points(records: list[Record], x: str, y: str) -> list[tuple[float, float]]:
    return [
        (float(r[x]), float(r[y]))
        for r in records
        if isinstance(r.get(x), int | float) and isinstance(r.get(y), int | float) and math.isfinite(r[y])
    ]


def _mean(records: list[Record], key: str) -> float:
    return sum(r[key] for r in records) / len(records)


def _interval(record: Record) -> str:
    text = f"{record['eval/reward']:.3f}"
    if "eval/reward_low" in record:
        text += f" [{record['eval/reward_low']:.3f}, {record['eval/reward_high']:.3f}]"
    return text


def write_rl_report(out: Path, *, title: str) -> Path:
    out = Path(out)
    records = read_metrics(out / "metrics.jsonl")
    train = [r for r in records if "reward" in r]
    held_out = [r for r in records if "eval/reward" in r]
    rows: list[tuple[str, str]] = [("Steps", str(len(train)))]
    if train:
        rows += [
            ("Rollout reward, first → last step", f"{train[0]['reward']:.3f} → {train[-1]['reward']:.3f}"),
            ("KL to the reference, last step", f"{train[-1]['kl']:.3f}"),
            ("Mean samples/s", f"{_mean(train, 'samples_per_s'):.2f}"),
            ("Rollout + update time, all steps", f"{sum(r['rollout_s'] + r['update_s'] for r in train) / 60:.1f} min"),
            ("Mean per step: rollout, update", f"{_mean(train, 'rollout_s'):.1f} s, {_mean(train, 'update_s'):.1f} s"),
        ]
    if len(held_out) >= 2:
        first, last = held_out[0], held_out[-1]
        rows += [
            ("Held-out reward, before", _interval(first)),
            ("Held-out reward, after", _interval(last)),
            ("Held-out KL, after", f"{last['eval/kl']:.3f}"),
        ]
    stopped = [r for r in train if r.get("stopped")]
    notes = (
        [paragraph(f"Stopped early at step {stopped[0]['step']}: KL passed the --kl-stop bound.")] if stopped else []
    )
    curves = {"rollouts": _points(train, "kl", "reward")}
    if held_out:
        curves["held-out prompts"] = _points(held_out, "eval/kl", "eval/reward")
    charts = [line_chart(curves, "Reward against KL to the reference", "KL (per response)", "mean reward")]
    for key, label in MONITORS:
        points = _points(train, "step", key)
        if points:
            series = {"rollouts": points}
            if key in ("reward", "kl", "response_length") and held_out:
                series["held-out"] = _points(held_out, "step", f"eval/{key}")
            charts.append(line_chart(series, label, "step", key))
    sections = [section("Summary", table(["Measure", "Value"], rows), *notes), section("Monitors", *charts)]
    config = out / "config.yaml"
    if config.is_file():
        sections.append(section("Config", pre(config.read_text(encoding="utf-8"))))
    return write_html(out / "report.html", page(title, sections))
