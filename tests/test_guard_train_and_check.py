"""`tether guard train`, `check` and `eval`, and the guard file's validation, on a fake encoder and tiny files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import run_cli
from tests.guard_helpers import HARMFUL_WORDS, HARMLESS_WORDS, fake_encode, write_prompts
from tether.config.files import validate_file
from tether.errors import ConfigError, DataError
from tether.guard.check import recall_at, run_check, run_eval
from tether.guard.config import GuardCheckConfig, GuardConfig, GuardEvalConfig, GuardTrainConfig
from tether.guard.pipeline import Pipeline
from tether.guard.train import held_out, threshold_at_fpr, train_guard


def test_threshold_at_fpr_by_hand() -> None:
    negatives = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    t = threshold_at_fpr(negatives, 0.1)  # one of ten negatives may be flagged: just above 0.9
    assert 0.9 < t < 0.9001 and int((negatives >= t).sum()) == 1
    assert int((negatives >= threshold_at_fpr(negatives, 0.01)).sum()) == 0


def test_recall_at_by_hand() -> None:
    got = recall_at([0.5, 0.75, 0.9, 0.99], [0.1, 0.2, 0.3, 0.8], 0.25)
    assert got["threshold"] == 0.3 and got["recall"] == 1.0 and got["fpr_measured"] == 0.25
    assert recall_at([0.5, 0.9], [0.1, 0.8], 0.0)["recall"] == 0.5


def test_held_out_split_is_stable_and_near_its_share() -> None:
    texts = [f"prompt {i}" for i in range(2000)]
    share = sum(held_out(t, 0.25) for t in texts) / len(texts)
    assert 0.21 < share < 0.29 and held_out("Prompt 7 ", 0.25) == held_out("prompt 7", 0.25)


@pytest.fixture()
def trained(tmp_path: Path) -> Path:
    harmful = write_prompts(tmp_path / "harmful.json", HARMFUL_WORDS, 120)
    harmless = write_prompts(tmp_path / "harmless.json", HARMLESS_WORDS, 400)
    jailbreaks = write_prompts(tmp_path / "jb.json", ["pretend", "unfiltered", "roleplay", "dan"], 80, extra="no rules")
    config = GuardTrainConfig(
        harmful=[str(harmful)],
        harmless=[str(harmless)],
        jailbreaks=[str(jailbreaks)],
        out=tmp_path / "guard",
        fpr=0.05,
        progress=False,
    )
    report = train_guard(config, embed=fake_encode)
    assert report["harmful_request"]["recall"] > 0.9 and report["harmful_request"]["fpr"] <= 0.05
    assert report["jailbreak_classifier"]["recall"] > 0.9
    assert report["split"]["harmful"]["calibration"] > 10
    return tmp_path / "guard"


def test_train_writes_artifacts_a_report_and_a_valid_guard_file(trained: Path) -> None:
    for name in ("harmful_request", "jailbreak_classifier", "jailbreak_index"):
        assert (trained / f"{name}.safetensors").is_file()
    parsed = validate_file(trained / "guard.yaml", {"guard": GuardConfig})
    rails = [r.detector for r in parsed.input_rails]  # type: ignore[attr-defined]
    assert {"harmful_request", "jailbreak_similarity", "jailbreak_classifier", "pii", "injection"} <= set(rails)
    report = json.loads((trained / "train_report.json").read_text())
    meta_threshold = report["harmful_request"]["threshold"]
    written = yaml.safe_load((trained / "guard.yaml").read_text())
    probes = [r for r in written["input_rails"] if r["detector"] in ("harmful_request", "jailbreak_classifier")]
    config = GuardConfig.model_validate({"input_rails": probes})
    p = Pipeline(config, embed=fake_encode)
    p.warm_up()
    assert p.input[0].detector.threshold == pytest.approx(meta_threshold)
    assert p.check_input("tell me about the explosive number 3").blocked
    assert not p.check_input("tell me about the garden number 3").blocked


def test_a_probe_for_another_purpose_is_refused(trained: Path) -> None:
    config = GuardConfig.model_validate(
        {
            "input_rails": [
                {
                    "detector": "harmful_request",
                    "options": {"artifact": str(trained / "jailbreak_classifier.safetensors")},
                }
            ]
        }
    )
    with pytest.raises(ConfigError, match="probe for 'jailbreak'"):
        Pipeline(config, embed=fake_encode).warm_up()
    config = GuardConfig.model_validate(
        {
            "input_rails": [
                {"detector": "harmful_request", "options": {"artifact": str(trained / "jailbreak_index.safetensors")}}
            ]
        }
    )
    with pytest.raises(ConfigError, match="jailbreak-index file, not a linear-probe"):
        Pipeline(config, embed=fake_encode).warm_up()


def test_check_writes_a_verdict_per_row(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"prompt": "hello"}\n\n{"prompt": "mail me at jane@example.org"}\n')
    config = GuardCheckConfig(
        input=source,
        output=tmp_path / "out.jsonl",
        input_rails=[
            {"detector": "secrets", "action": "mask"},
            {"detector": "blocklist", "options": {"words": ["jane"]}},
        ],
    )
    run_check(config)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 3]
    assert not rows[0]["blocked"] and rows[1]["blocked"] and rows[1]["blocked_by"] == ["blocklist"]
    assert {v["rail"] for v in rows[1]["verdicts"]} == {"secrets", "blocklist"}


def test_check_output_side_reads_responses(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"prompt": "key?", "response": "AKIAIOSFODNN7EXAMPLE"}\n')
    config = GuardCheckConfig(
        input=source,
        output=tmp_path / "out.jsonl",
        side="output",
        output_rails=[{"detector": "secrets", "action": "mask"}],
    )
    run_check(config)
    row = json.loads((tmp_path / "out.jsonl").read_text())
    assert row["masked"] == "<AWS_ACCESS_KEY>" and row["side"] == "output"


def test_bad_input_names_file_and_line_and_writes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"prompt": "ok"}\n{"prompt": 3}\n')
    out = tmp_path / "out.jsonl"
    config = GuardCheckConfig(input=source, output=out, input_rails=[{"detector": "secrets"}])
    with pytest.raises(DataError, match=r"in.jsonl:2: field 'prompt'"):
        run_check(config)
    assert not out.exists()
    source.write_text('{"prompt": "ok", "response": "fine"}\n{"prompt": "no answer"}\n')
    missing = GuardCheckConfig(input=source, output=out, side="output", output_rails=[{"detector": "secrets"}])
    with pytest.raises(DataError, match=r"in.jsonl:2: field 'response'"):
        run_check(missing)


def test_eval_reports_recall_at_fixed_fpr_with_a_roc_plot(trained: Path, tmp_path: Path) -> None:
    positive = write_prompts(tmp_path / "p.json", HARMFUL_WORDS, 40, extra="please")
    negative = write_prompts(tmp_path / "n.json", HARMLESS_WORDS, 100, extra="please")
    config = GuardEvalConfig(
        positive=[str(positive)],
        negative=[str(negative)],
        out=tmp_path / "eval",
        input_rails=[
            {"detector": "harmful_request", "options": {"artifact": str(trained / "harmful_request.safetensors")}},
            {"detector": "injection", "action": "log"},
        ],
    )
    result = run_eval(config, embed=fake_encode)
    assert result["positives"] == 40 and result["negatives"] == 100
    rail = result["rails"]["harmful_request"]
    assert rail["auroc"] > 0.95 and rail["at_fpr"][0]["fpr"] == 0.01
    assert result["pipeline"]["recall"]["value"] > 0.9
    html = (tmp_path / "eval" / "report.html").read_text()
    assert "<svg" in html and "recall @ 1% FPR" in html
    assert len((tmp_path / "eval" / "rows.jsonl").read_text().splitlines()) == 140


GOOD = """\
command: guard
input_rails:
  - detector: pii
    action: mask
  - detector: blocklist
    options:
      words: [pipe bomb]
output_rails:
  - detector: secrets
    action: mask
"""


@pytest.mark.parametrize(
    ("edit", "line", "message"),
    [
        (("detector: blocklist", "detector: blocklst"), 5, "unknown detector 'blocklst'"),
        (("      words: [pipe bomb]", "      word: [pipe bomb]"), 6, "blocklist option word"),
        (("  - detector: secrets\n    action: mask", "  - detector: injection"), None, "injection checks input only"),
        (
            ("  - detector: pii\n    action: mask", "  - detector: injection\n    action: mask"),
            3,
            "needs a detector that finds spans",
        ),
        (
            ("    action: mask\n  - detector: blocklist", "    action: hide\n  - detector: blocklist"),
            4,
            "'block', 'mask' or 'log'",
        ),
    ],
)
def test_bad_guard_files_name_the_line(tmp_path: Path, edit: tuple[str, str], line: int | None, message: str) -> None:
    path = tmp_path / "guard.yaml"
    path.write_text(GOOD.replace(*edit))
    with pytest.raises(ConfigError, match=message) as err:
        validate_file(path, {"guard": GuardConfig})
    if line is not None:
        assert f"guard.yaml:{line}:" in str(err.value)


@pytest.mark.slow  # three CLI processes, each loading Presidio: `make test-slow`
def test_cli_validate_detectors_and_check(tmp_path: Path) -> None:
    guard = tmp_path / "guard.yaml"
    guard.write_text(GOOD)
    assert run_cli("validate", str(guard)).returncode == 0
    listing = run_cli("guard", "detectors")
    assert listing.returncode == 0 and "jailbreak_similarity" in listing.stdout and "injection" in listing.stdout
    source = tmp_path / "in.txt"
    source.write_text("how to make a pipe bomb\nhow to bake bread\n")
    done = run_cli(
        "guard", "check", "--config", str(guard), "--input", str(source), "--output", str(tmp_path / "o.jsonl")
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["blocked"] for r in rows] == [True, False]
    bad = run_cli(
        "guard",
        "check",
        "--config",
        str(guard),
        "--input",
        str(tmp_path / "nope.txt"),
        "--output",
        str(tmp_path / "x.jsonl"),
    )
    assert bad.returncode == 2 and "nope.txt: no such file" in bad.stderr
