"""Agreement of tether's refusal judges with human labels on the team-written evaluation set.

Run::

    .venv/bin/python benchmarks/judge_agreement.py [--labels tests/data/refusal_judge_labels.jsonl] [--json out.json]

Judges compared on the same rows (none of them trained on these rows; the classifier was trained on
``src/tether/judges/data/refusal_train.jsonl``, whose prompts are disjoint from these):

- ``phrases``: the classic string matcher (a refusal phrase near the start means ``refuses``, anything
  else ``complies``), the approach of the GCG evaluation (Zou et al. 2023) and of many red-team tools;
- ``phrases+classifier``: tether's default layered judge.

Reported: three-way accuracy (complies / partial / refuses), Cohen's kappa, binary agreement on "did the
answer give the requested content" (complies or partial vs refuses: the question published string
matchers are scored on, where they agree with humans 70-94% of the time), each with a 95% bootstrap
interval, and accuracy per case type (the hard cases are where judges differ).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, markdown_table

REPO = Path(__file__).resolve().parents[1]
LABELS = REPO / "tests" / "data" / "refusal_judge_labels.jsonl"


def cohen_kappa(human: list[str], judged: list[str]) -> float:
    n = len(human)
    observed = sum(h == j for h, j in zip(human, judged, strict=True)) / n
    ph, pj = Counter(human), Counter(judged)
    expected = sum(ph[k] * pj[k] for k in set(ph) | set(pj)) / n**2
    return (observed - expected) / (1 - expected) if expected < 1 else 1.0


def evaluate(rows: list[dict], verdicts: list) -> dict:
    from tether.stats import rate

    human = [r["label"] for r in rows]
    judged = [v.label for v in verdicts]
    gave = {"complies", "partial"}
    by_case: dict[str, list[bool]] = defaultdict(list)
    for r, j in zip(rows, judged, strict=True):
        by_case[r.get("case", "all")].append(r["label"] == j)
    confusion = Counter((h, j) for h, j in zip(human, judged, strict=True))
    return {
        "accuracy_3way": rate([h == j for h, j in zip(human, judged, strict=True)]).to_dict(),
        "kappa_3way": cohen_kappa(human, judged),
        "binary_agreement": rate([(h in gave) == (j in gave) for h, j in zip(human, judged, strict=True)]).to_dict(),
        "unscored": sum(j == "unscored" for j in judged),
        "by_case": {case: rate(flags).to_dict() for case, flags in sorted(by_case.items())},
        "confusion": {f"{h}->{j}": n for (h, j), n in sorted(confusion.items())},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from tether.judges.refusal import RefusalJudge
    from tether.judges.refusal_classifier import read_labelled

    rows = read_labelled(args.labels)
    pairs = [(r["prompt"], r["response"]) for r in rows]
    results, seconds = {}, {}
    for name, judge in (("phrases", RefusalJudge(layers="phrases")), ("phrases+classifier", RefusalJudge())):
        started = time.perf_counter()
        verdicts = judge.judge_many(pairs)
        seconds[name] = time.perf_counter() - started
        results[name] = evaluate(rows, verdicts)
    counts = Counter(r["label"] for r in rows)
    print(f"$ {command_line()}")
    print(f"{len(rows)} human-labelled responses ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})\n")

    def ci(e: dict) -> str:
        return f"{e['value']:.1%} [{e['low']:.1%}, {e['high']:.1%}]"

    print(
        markdown_table(
            ["judge", "3-way accuracy", "3-way kappa", "binary agreement (content given?)", "unscored", "seconds"],
            [
                [
                    n,
                    ci(r["accuracy_3way"]),
                    f"{r['kappa_3way']:.3f}",
                    ci(r["binary_agreement"]),
                    r["unscored"],
                    f"{seconds[n]:.1f}",
                ]
                for n, r in results.items()
            ],
        )
    )
    cases = sorted({c for r in results.values() for c in r["by_case"]})
    print("\n3-way accuracy by case type:\n")
    print(
        markdown_table(
            ["case", "n", *results],
            [
                [
                    c,
                    results["phrases"]["by_case"][c]["n"],
                    *(f"{r['by_case'][c]['value']:.0%}" for r in results.values()),
                ]
                for c in cases
            ],
        )
    )
    if args.json:
        args.json.write_text(json.dumps({"rows": len(rows), "results": results, "seconds": seconds}, indent=2) + "\n")


if __name__ == "__main__":
    main()
