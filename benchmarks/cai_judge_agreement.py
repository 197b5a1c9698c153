"""An AI preference judge against human preference labels: agreement and position bias (`tether cai label`).

Run::

    .venv/bin/python benchmarks/cai_judge_agreement.py [--pairs 200] [--work runs/cai-judge-agreement] \
        [-- any further `tether cai label` flags, e.g. --judge-endpoint URL --judge-endpoint-model NAME]

The labelled set is the first ``--pairs`` rows of HH-RLHF harmless-base test
(``../shared/data/hh-rlhf/harmless-base-test.shared.jsonl``; skipped with a message when the shared data is
absent) that tether's ``hh-rlhf`` reader accepts (rows it rejects, such as an empty assistant turn, are
skipped and counted), written to ``--work``/pairs.jsonl. The script then runs::

    tether cai label --prompts src/tether/demo/data/train.jsonl --limit 4 --out WORK/run \
        --agreement WORK/pairs.jsonl --agreement-format hh-rlhf [extra flags]

(the judge defaults to the generator, the embedded model; ``--limit 4`` keeps the sampling part short, since
the figure wanted is the agreement) and prints, from ``summary.json``: agreement with the human label (share
of pairs whose human-chosen response the judge gives p > 0.5, both orders averaged) and the position-bias
rate (pairs where the judge picked the same letter in both orders), each with its 95% interval.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HH = REPO.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-test.shared.jsonl"
PROMPTS = REPO / "src" / "tether" / "demo" / "data" / "train.jsonl"


def labelled_pairs(source: Path, count: int) -> tuple[list[str], int]:
    """The first ``count`` lines the hh-rlhf reader accepts, and how many it rejected before them."""
    from tether.data.hh_rlhf import row_to_preference
    from tether.data.records import Preference

    kept, rejected = [], 0
    with source.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                record = row_to_preference(json.loads(line))
                if not isinstance(record, Preference):
                    Preference.model_validate(record)
            except Exception:
                rejected += 1
                continue
            kept.append(line if line.endswith("\n") else line + "\n")
            if len(kept) == count:
                break
    return kept, rejected


def interval(block: dict) -> str:
    return f"{block['value']:.1%} [{block['low']:.1%}, {block['high']:.1%}] (n={block['n']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "cai-judge-agreement")
    parser.add_argument("extra", nargs="*", help="further `tether cai label` flags (after --)")
    args = parser.parse_args()
    if not HH.is_file():
        print(f"skipped: {HH} not found (the shared HH-RLHF data)")
        return
    args.work.mkdir(parents=True, exist_ok=True)
    pairs, rejected = labelled_pairs(HH, args.pairs)
    pairs_file = args.work / "pairs.jsonl"
    pairs_file.write_text("".join(pairs), encoding="utf-8")
    command = [
        str(Path(sys.executable).with_name("tether")),
        "cai",
        "label",
        "--prompts",
        str(PROMPTS),
        "--limit",
        "4",
        "--out",
        str(args.work / "run"),
        "--agreement",
        str(pairs_file),
        "--agreement-format",
        "hh-rlhf",
        "--overwrite",
        *args.extra,
    ]
    print("running:", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - start
    summary = json.loads((args.work / "run" / "summary.json").read_text(encoding="utf-8"))
    agreement = summary["agreement"]
    print()
    print(f"Command: {' '.join(sys.argv)}  ({seconds / 60:.1f} min)")
    print(f"Labelled set: first {len(pairs)} accepted rows of {HH.name} ({rejected} rejected rows skipped)")
    print(f"Judge: {summary['identity'].get('judge', 'the generator')}")
    print("| set | pairs | agreement with the human label | position-bias rate | mean disagreement of the orders |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| HH-RLHF harmless-base test | {agreement['pairs']} | {interval(agreement['agreement'])} | "
        f"{interval(agreement['position_bias_rate'])} | {agreement['mean_disagreement']:.2f} |"
    )
    bias = summary["position_bias_rate"]
    if bias["n"]:
        print(f"| its own samples on {summary['prompts']} demo prompts | {summary['judged']} | | {interval(bias)} | |")


if __name__ == "__main__":
    main()
