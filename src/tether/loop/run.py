"""`tether loop`: the closed loop, iteration by iteration, resumable stage by stage.

The run folder (``--out``)::

    config.yaml            the resolved config
    loop.json              what was run (a resume with other settings is refused) and every finished iteration
    report.html            every iteration side by side (:mod:`tether.loop.report`)
    iter-000/eval/<name>/  the starting model measured: one `tether eval` run per eval set
    iter-001/
      sources/<name>/      each source's own run (a red-team campaign, a cai revise or label run, samples)
      data/preferences.jsonl   the merged, de-duplicated pairs with provenance (:mod:`tether.loop.merge`), in a
                           seeded random order (a recipe's `limit` then takes a share of every source)
      data/counts.json     per source: rows read, kept, duplicates, trained before, contradicting; its own counts
      train/               the recipe's run (`tether dpo` by default); train/model is the next model
      eval/<name>/         the trained model measured
      summary.json         written last: the iteration is finished
    iter-002/ ...          starts from iter-001/train/model

Every stage leaves the file that says it finished (a source's summary, ``data/preferences.jsonl``,
``train/model``, an eval's ``summary.json``); ``--resume`` skips finished stages and continues an unfinished one
inside its own folder (a red-team campaign, a CAI run, an eval, training from its newest checkpoint), and a
higher ``--iterations`` adds iterations to a finished loop. Sources, constitutions and eval sets are read and
checked before any model loads.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console

from tether.atomic import atomic_write_json, atomic_write_jsonl, atomic_write_text
from tether.config import dump_config
from tether.errors import TetherError, UsageError
from tether.loop.config import LoopConfig, recipe_config
from tether.loop.measure import check_eval_sets, measure
from tether.loop.merge import merge, pair_key
from tether.loop.report import print_iteration, write_loop_report
from tether.loop.sources import Iteration, check_source, gather
from tether.models.loading import check_weights
from tether.runs.folders import check_run_folder, open_run_folder

KIND = "loop"
ITERATION = re.compile(r"^iter-\d{3}$")
UNCHANGED = ("iterations", "resume", "overwrite", "progress", "examples")
"""Settings a resume may change: everything else must match the run it continues."""


def iteration_folder(out: Path, number: int) -> Path:
    return Path(out) / f"iter-{number:03d}"


def _identity(config: LoopConfig) -> dict[str, Any]:
    return {k: v for k, v in config.model_dump(mode="json").items() if k not in UNCHANGED}


def _open(config: LoopConfig) -> dict[str, Any]:
    """Open the run folder; the loop's state (``loop.json``): the identity and finished iterations."""
    out = Path(config.out)
    check_run_folder(out, KIND, resume=config.resume, overwrite=config.overwrite)
    state_file = out / "loop.json"
    identity = _identity(config)
    if config.resume and state_file.exists():
        state = json.loads(state_file.read_text(encoding="utf-8"))
        changed = sorted(k for k in {*identity, *state["identity"]} if identity.get(k) != state["identity"].get(k))
        if changed:
            raise UsageError(
                f"cannot resume {out}: it was run with other settings ({', '.join(changed)}); only "
                f"{', '.join(UNCHANGED)} may change. Pass --overwrite or another --out"
            )
    else:
        state = {"identity": identity, "iterations": []}
    extra = tuple(p for p in out.iterdir() if ITERATION.match(p.name)) if out.is_dir() else ()
    open_run_folder(out, KIND, resume=config.resume, overwrite=config.overwrite, extra=extra)
    atomic_write_text(out / "config.yaml", dump_config(config))
    atomic_write_json(state_file, state)
    return state


def _trained_keys(out: Path, before: int) -> set[str]:
    """The pair keys of every iteration before ``before``."""
    from tether.data.readers import iter_rows

    keys: set[str] = set()
    for number in range(1, before):
        data = iteration_folder(out, number) / "data" / "preferences.jsonl"
        if data.exists() and data.stat().st_size:
            keys.update(pair_key(row) for _, row in iter_rows(data))
    return keys


def _gather_and_merge(config: LoopConfig, number: int, model: str, console: Console) -> tuple[Path, dict[str, Any]]:
    folder = iteration_folder(config.out, number)
    data, counts_file = folder / "data" / "preferences.jsonl", folder / "data" / "counts.json"
    if data.exists() and counts_file.exists():
        return data, json.loads(counts_file.read_text(encoding="utf-8"))
    gathered = {}
    for source in config.sources:
        console.rule(f"[bold]iteration {number}: source {source.name} ({source.type})")
        it = Iteration(number, model, folder / "sources" / source.name, config, console)
        gathered[source.name] = (source.type, gather(source, it))
    merged = merge(
        ((name, kind, g.rows) for name, (kind, g) in gathered.items()), trained=_trained_keys(config.out, number)
    )
    tallies = {name: merged.counts.get(name, Counter()) for name in gathered}
    counts = {
        name: {
            "type": kind,
            **{k: tallies[name][k] for k in ("read", "kept", "duplicate", "trained_before", "contradicting")},
            "source": g.counts,
        }
        for name, (kind, g) in gathered.items()
    }
    rows = list(merged.rows)
    random.Random(config.seed + number).shuffle(rows)  # so that a recipe's `limit` takes a share of every source
    atomic_write_jsonl(data, rows)
    atomic_write_json(counts_file, counts)
    return data, counts


def _sft_data(data: Path) -> Path:
    """The merged pairs as SFT conversations (prompt + chosen), for ``recipe: sft``."""
    from tether.data.readers import iter_rows

    rows = [
        {"messages": [*row["prompt"], *row["chosen"]], "provenance": row["provenance"]} for _, row in iter_rows(data)
    ]
    return atomic_write_jsonl(data.with_name("sft.jsonl"), rows)


def _train(config: LoopConfig, number: int, model: str, data: Path, console: Console) -> str:
    """Train the iteration's model (or keep ``model`` when there is nothing to train on); its path."""
    out = iteration_folder(config.out, number) / "train"
    if (out / "model").exists():
        return str(out / "model")
    if not data.stat().st_size:
        console.print(f"[yellow]iteration {number}[/]: no new pairs from any source; the model stays {model}")
        return model
    if config.train.recipe == "sft":
        data = _sft_data(data)
    resume = (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir())
    recipe = recipe_config(
        config.train,
        model=model,
        data=str(data),
        out=out,
        resume=resume,
        overwrite=out.exists() and not resume,
        progress=config.progress,
    )
    console.rule(f"[bold]iteration {number}: {config.train.recipe} on {data}")
    if config.train.recipe == "sft":
        from tether.train.sft import run_sft

        return str(run_sft(recipe, console=console))
    from tether.train.preference import run_preference

    return str(run_preference(recipe, console=console))


def run_loop(config: LoopConfig, *, console: Console | None = None) -> dict[str, Any]:
    """Run (or resume) the loop; returns ``loop.json``'s contents."""
    console = console or Console()
    started = time.perf_counter()
    for source in config.sources:
        check_source(source)
    check_eval_sets(config.evals)
    check_weights(config.model)  # a missing model or pickle weights fail before the folder is written
    state = _open(config)
    out = Path(config.out)
    console.rule("[bold]iteration 0: the starting model")
    baseline = measure(config, config.model, iteration_folder(out, 0), console)
    finished = {it["number"]: it for it in state["iterations"]}
    model = config.model
    for number in range(1, config.iterations + 1):
        folder = iteration_folder(out, number)
        if number in finished and (folder / "summary.json").exists():
            model = finished[number]["model"]
            continue
        data, counts = _gather_and_merge(config, number, model, console)
        new_model = _train(config, number, model, data, console)
        results = measure(config, new_model, folder, console)
        summary = {
            "number": number,
            "started_from": model,
            "model": new_model,
            "trained": new_model != model,
            "pairs": sum(c["kept"] for c in counts.values()),
            "sources": counts,
            "evals": results,
        }
        atomic_write_json(folder / "summary.json", summary)
        finished[number] = summary
        state["iterations"] = [finished[n] for n in sorted(finished)]
        state["baseline"] = baseline
        atomic_write_json(out / "loop.json", state)
        print_iteration(console, summary, baseline)
        model = new_model
    state["baseline"] = baseline
    state["iterations"] = [finished[n] for n in sorted(finished)]
    state["seconds"] = time.perf_counter() - started
    atomic_write_json(out / "loop.json", state)
    report = write_loop_report(out / "report.html", config, state)
    console.print(f"loop: {out / 'loop.json'}  report: {report}  ({state['seconds']:.0f} s)")
    if not state["iterations"]:
        raise TetherError("the loop ran no iteration")
    return state
