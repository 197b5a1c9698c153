"""Shared pieces of the guard tests: a fake feature encoder and small labelled files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

DIM = 64
HARMFUL_WORDS = ["weapon", "poison", "explosive", "steal", "hack", "malware", "attack", "bomb"]
HARMLESS_WORDS = ["recipe", "garden", "poem", "travel", "music", "history", "math", "bread"]
VOCAB = HARMFUL_WORDS + HARMLESS_WORDS + ["pretend", "unfiltered", "roleplay", "dan"]


def fake_encode(texts: list[str]) -> torch.Tensor:
    """``[N, 2, DIM]`` bag-of-words features (hashed words), each layer unit-norm: what LayerEncoder returns,
    small and instant."""
    rows = []
    for text in texts:
        v = torch.zeros(DIM)
        for word in text.lower().split():
            word = word.strip("?.!,")
            if word in VOCAB:  # the words that tell the classes apart get a dimension each
                v[VOCAB.index(word)] += 3.0
            else:
                v[len(VOCAB) + int(hashlib.md5(word.encode()).hexdigest(), 16) % (DIM - len(VOCAB))] += 1.0
        v = torch.nn.functional.normalize(v + 1e-3, dim=0)
        rows.append(torch.stack([v.flip(0), v]))
    return torch.stack(rows)


def write_prompts(path: Path, words: list[str], n: int, *, extra: str = "") -> Path:
    rows = [{"instruction": f"tell me about the {words[i % len(words)]} number {i} {extra}".strip()} for i in range(n)]
    path.write_text(json.dumps(rows, indent=1))
    return path
