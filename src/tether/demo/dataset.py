"""The demo's prompts, written by the team and shipped in the package.

``train.jsonl``: harmful requests with a helpful refusal, plus benign and "scary-sounding but safe"
(borderline) requests whose answers the model itself writes during the demo. ``heldout.jsonl``: other
prompts of the same kinds, never trained on, used to measure before and after.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Literal

Kind = Literal["harmful", "benign", "borderline"]


@dataclass(frozen=True)
class DemoPrompt:
    prompt: str
    category: str
    kind: Kind
    refusal: str | None = None


def load_demo_prompts(name: Literal["train", "heldout"]) -> list[DemoPrompt]:
    text = resources.files("tether.demo").joinpath("data", f"{name}.jsonl").read_text(encoding="utf-8")
    return [DemoPrompt(**json.loads(line)) for line in text.splitlines() if line.strip()]
