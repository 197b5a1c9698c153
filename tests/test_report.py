"""HTML reports: one chart per metric group, escaping, determinism, errors, atomic writes."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from tether.errors import DataError, TetherError
from tether.report import write_comparison_report, write_training_report
from tether.report.html import page, section, table, write_html
from tether.report.metrics import metric_groups
from tether.report.plots import grouped_bars, line_chart

XSS = "<script>alert(1)</script>"


def dpo_record(step: int) -> dict[str, float]:
    return {
        "step": step,
        "epoch": 0,
        "loss": 0.7 - 0.1 * step,
        "lr": 1e-5,
        "grad_norm": 1.5,
        "tokens": 512,
        "tokens_per_s": 1000.0 * step,
        "rewards/chosen": 0.1 * step,
        "rewards/rejected": -0.1 * step,
        "rewards/margin": 0.2 * step,
        "rewards/accuracy": 0.5 + 0.1 * step,
        "logps/chosen": -10.0,
        "logps/rejected": -12.0,
        "logps/ref_chosen": -10.5,
        "logps/ref_rejected": -11.5,
        "kl_estimate": 0.01 * step,
    }


def write_run(out: Path, records: list[dict], config: str | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if config is not None:
        (out / "config.yaml").write_text(config)
    return out


def svg_count(text: str) -> int:
    return text.count("<svg ")


def test_training_report_has_one_chart_per_group_and_a_summary(tmp_path: Path) -> None:
    out = write_run(tmp_path / "run", [dpo_record(s) for s in (1, 2, 3)], config=f"lr: 1e-5\nnote: '{XSS}'\n")
    path = write_training_report(out)
    assert path == out / "report.html"
    text = path.read_text()
    # loss, rewards, accuracy, logps, kl_estimate, grad_norm, lr, tokens_per_s; never epoch or tokens
    assert svg_count(text) == 8
    for title in ("Loss", "Rewards", "Preference accuracy", "KL estimate", "Gradient norm", "Learning rate"):
        assert f">{title}</text>" in text
    assert ">epoch</text>" not in text
    assert "<td>First loss</td><td>0.6</td>" in text
    assert "<td>Last loss</td><td>0.4</td>" in text
    assert "<td>Final rewards/accuracy</td><td>80.0%</td>" in text
    assert "<td>Mean tokens/s</td><td>2,000</td>" in text
    assert "lr: 1e-5" in text and "&lt;script&gt;" in text and "<script" not in text


def test_grouping_is_generic_so_unknown_metrics_are_plotted(tmp_path: Path) -> None:
    records = [{"step": s, "loss": 1.0, "kto/z0": 0.3, "kto/accuracy": 0.6, "my_metric": 2.0} for s in (1, 2)]
    groups = metric_groups(records)
    assert groups == {"loss": ["loss"], "accuracy": ["kto/accuracy"], "kto": ["kto/z0"], "my_metric": ["my_metric"]}
    text = write_training_report(write_run(tmp_path, records)).read_text()
    assert svg_count(text) == 4
    assert ">kto</text>" in text and ">my_metric</text>" in text


def test_non_finite_values_are_skipped_and_a_cut_short_last_line_ignored(tmp_path: Path) -> None:
    lines = [
        '{"step": 1, "loss": NaN, "grad_norm": 1.0}',
        json.dumps({"step": 2, "loss": 2.0, "grad_norm": 0.5}),
        '{"step": 3, "loss": 1.0, "grad_norm": Infinity}',
        '{"step": 4, "loss": 0.',
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    text = write_training_report(tmp_path).read_text()
    assert svg_count(text) == 2
    assert "<td>Steps logged</td><td>3</td>" in text
    assert "<td>First loss</td><td>2</td>" in text and "<td>Last loss</td><td>1</td>" in text
    assert "nan" not in text.lower() and "inf" not in text.lower()


def test_missing_or_empty_metrics_name_the_file(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    with pytest.raises(TetherError, match=re.escape(str(metrics))):
        write_training_report(tmp_path)
    metrics.write_text("\n")
    with pytest.raises(TetherError, match=re.escape(str(metrics)) + ".*empty"):
        write_training_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_a_bad_line_in_the_middle_is_located(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 1}\nnot json\n{"step": 3, "loss": 1}\n')
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'metrics.jsonl'}:2")):
        write_training_report(tmp_path)


def test_reports_are_deterministic(tmp_path: Path) -> None:
    records = [dpo_record(s) for s in (1, 2)]
    first = write_training_report(write_run(tmp_path / "a" / "run", records)).read_bytes()
    second = write_training_report(write_run(tmp_path / "b" / "run", records)).read_bytes()
    assert first == second
    chart = line_chart({"x": [(0, 1), (1, 2)]}, "t", "step", "v")
    assert chart == line_chart({"x": [(0, 1), (1, 2)]}, "t", "step", "v")
    assert chart.startswith("<svg ") and "<dc:date>" not in chart


def comparison(tmp_path: Path, **kwargs) -> str:
    args = {
        "title": "Refusal training",
        "rates": {
            "before": {"harmful_compliance": 0.9, "benign_refusal": 0.0},
            "after": {"harmful_compliance": 0.1, "benign_refusal": 0.05},
        },
        "row_labels": {"harmful_compliance": "Harmful prompts answered", "benign_refusal": f"Benign refused {XSS}"},
        "examples": [{"prompt": f"Say {XSS} & more", "kind": "harmful", "before": "Sure: <b>", "after": "I can't."}],
        "notes": [f"note {XSS}"],
    }
    path = write_comparison_report(tmp_path / "sub" / "compare.html", **(args | kwargs))
    return path.read_text()


def test_comparison_report_tables_chart_and_escaping(tmp_path: Path) -> None:
    text = comparison(tmp_path)
    assert svg_count(text) == 1
    assert "<th>Change (points)</th>" in text
    assert "<tr><td>Harmful prompts answered</td><td>90.0%</td><td>10.0%</td><td>-80.0</td></tr>" in text
    assert "<td>0.0%</td><td>5.0%</td><td>+5.0</td>" in text
    assert "<td>Say &lt;script&gt;alert(1)&lt;/script&gt; &amp; more</td>" in text
    assert "<td>Sure: &lt;b&gt;</td>" in text
    assert "<script" not in text  # not in tables, notes, nor the chart's labels
    assert not re.search(r"<(link|img|iframe)\b|(src|href)=\"(?!#)|url\((?!#)", text)  # opens offline


def test_comparison_with_training_curves_reuses_the_training_charts(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", [dpo_record(s) for s in (1, 2)])
    text = comparison(tmp_path, training_metrics=run / "metrics.jsonl")
    assert svg_count(text) == 4  # rates + loss, reward margin, accuracy
    assert ">Preference accuracy</text>" in text and ">KL estimate</text>" not in text


def test_grouped_bars_shows_missing_values_as_na() -> None:
    svg = grouped_bars(["a", "b"], {"before": [0.5, math.nan], "after": [0.25, 1.0]}, "t", "%", percent=True)
    assert ">n/a</text>" in svg and ">50%</text>" in svg and ">100%</text>" in svg


def test_html_builders_escape_text() -> None:
    text = page(f"T {XSS}", [section("H & H", table(["a<", "b"], [[XSS, None], [1, '"q"']]))])
    assert "<title>T &lt;script&gt;" in text and "<h2>H &amp; H</h2>" in text
    assert "<th>a&lt;</th>" in text and "<td></td>" in text and "<td>&quot;q&quot;</td>" in text
    assert "<script" not in text


def test_write_html_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.html"
    write_html(path, "old")
    write_html(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]

    def fail(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("tether.atomic.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_html(path, "newer")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]
