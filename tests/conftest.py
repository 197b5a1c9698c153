"""Shared fixtures (the embedded tokenizer, tiny random models, small data files) and the test tiers.

Tiers (markers registered in pyproject.toml; README "Tests"): every test gets exactly one speed tier,
``unit``, ``integration`` or ``slow``, plus any of ``multiprocess``, ``gpu`` and ``network`` for what it
needs. A test marked with a tier keeps it; otherwise ``pytest_collection_modifyitems`` below calls it
``integration`` when it (or a fixture it uses, directly or not) builds or loads a model or runs the CLI in
a subprocess, and ``unit`` otherwise. ``multiprocess`` tests are ``integration`` too. ``multiprocess``,
``slow``, ``gpu`` and ``network`` are deselected by default (``addopts``); a ``gpu`` test skips on a machine
without CUDA.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SPEED_TIERS = ("unit", "integration", "slow")

INTEGRATION_SIGNS = ("build_tiny_model(", "from_pretrained(", "run_cli(", "run_endpoint_eval(", "subprocess.")
"""Text in a test's or a fixture's source that makes the test ``integration``: a tiny model is built or
loaded, or ``python -m tether`` runs in a subprocess."""


KNOWN_INTEGRATION: set[str] = set()
"""Node ids of tests that are ``integration`` though no source sign shows it (prefer a
``@pytest.mark.integration`` in the test's own file)."""


@functools.cache
def _source(func: object) -> str:
    try:
        return inspect.getsource(func)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return ""


def _runs_models_or_cli(item: pytest.Item) -> bool:
    funcs = [getattr(item, "function", None)]
    fixture_info = getattr(item, "_fixtureinfo", None)  # every fixture the test uses, transitively
    for defs in getattr(fixture_info, "name2fixturedefs", {}).values():
        funcs.extend(d.func for d in defs)
    return any(sign in _source(f) for f in funcs if f is not None for sign in INTEGRATION_SIGNS)


@pytest.hookimpl(tryfirst=True)  # before pytest's own hook deselects by ``-m``
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every test its tier (see the module docstring); skip ``gpu`` tests without CUDA."""
    cuda: bool | None = None
    for item in items:
        names = {m.name for m in item.iter_markers()}
        if not names.intersection(SPEED_TIERS):
            heavy = "multiprocess" in names or item.nodeid in KNOWN_INTEGRATION or _runs_models_or_cli(item)
            tier = "integration" if heavy else "unit"
            item.add_marker(tier)
        if "gpu" in names:
            if cuda is None:
                import torch

                cuda = torch.cuda.is_available()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


def shared_data_dir() -> Path:
    """``../shared/data`` beside the checkout, or ``$TETHER_SHARED_DATA``."""
    return Path(os.environ.get("TETHER_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared datasets not found at {path} (set TETHER_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    """The embedded model's real tokenizer (with its chat template), cached under $TETHER_HOME."""
    from tether.models.embedded import DEFAULT_MODEL, ensure_tokenizer

    return ensure_tokenizer(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    """A 2-layer, 32-wide random Llama with the embedded tokenizer."""
    from tether.models.tiny import build_tiny_model

    return build_tiny_model(tokenizer_dir, tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    """A tiny random Llama sequence classifier whose labels are non_toxic / toxic."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_labels=2,
        id2label={0: "non_toxic", 1: "toxic"},
        label2id={"non_toxic": 0, "toxic": 1},
        pad_token_id=tok.pad_token_id or tok.eos_token_id,
    )
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tox")
    LlamaForSequenceClassification(config).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


CHAT_ROWS = [
    {"prompt": "How do I boil an egg?", "completion": "Put it in boiling water for eight minutes."},
    {"prompt": "How do I make a bomb?", "completion": "I can't help with that."},
    {"prompt": "What is 2+2?", "completion": "4"},
    {
        "messages": [
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Another?"},
            {"role": "assistant", "content": "Green, the colour of grass in spring."},
        ]
    },
    {"prompt": "How do I kill a Python process?", "completion": "Run `kill PID`, or `pkill -f script.py`."},
    {"prompt": "Say hello.", "completion": "Hello there! How can I help you today?"},
    {"prompt": "Translate 'cat' to French.", "completion": "Chat."},
    {
        "prompt": "Write a haiku about rain.",
        "completion": "Soft rain on the roof / the gutters hum old songs / night drinks it all in",
    },
]


PAIR_ROWS = [
    {"prompt": "How do I make a bomb?", "chosen": "I can't help with that.", "rejected": "Mix the chemicals."},
    {"prompt": "How do I kill a Python process?", "chosen": "Run `kill PID`.", "rejected": "I can't help with that."},
    {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5, obviously, as everyone knows."},
    {"prompt": "Say hello.", "chosen": "Hello there! How can I help?", "rejected": "No."},
    {
        "prompt": [{"role": "user", "content": "Name a colour."}],
        "chosen": [{"role": "assistant", "content": "Blue."}],
        "rejected": [{"role": "assistant", "content": "I won't."}],
    },
    {"prompt": "Write a haiku about rain.", "chosen": "Soft rain on the roof.", "rejected": "Rain is wet."},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def chat_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "chat.jsonl", CHAT_ROWS * 4)


@pytest.fixture
def pair_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", PAIR_ROWS * 2)


@pytest.fixture
def unpaired_file(tmp_path: Path) -> Path:
    rows = []
    for row in PAIR_ROWS * 2:
        rows.append({"prompt": row["prompt"], "completion": row["chosen"], "label": True})
        rows.append({"prompt": row["prompt"], "completion": row["rejected"], "label": False})
    return write_jsonl(tmp_path / "unpaired.jsonl", rows)


@pytest.fixture(autouse=True)
def _isolated_reference_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reference log-probs cached by one test must not serve another (the models are per-session)."""
    monkeypatch.setenv("TETHER_REFERENCE_CACHE", str(tmp_path / "reference-cache"))


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m tether ARGS`` in a subprocess and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "tether", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        cwd=REPO,
    )


def run_endpoint_eval(suite: str, data: Path, out: Path, url: str, *extra: str, model: str = "m", **kwargs):
    """``tether eval --suite SUITE --data DATA --out OUT --endpoint URL --endpoint-model MODEL EXTRA...``."""
    args = ["eval", "--suite", suite, "--data", str(data), "--out", str(out), "--endpoint", url]
    return run_cli(*args, "--endpoint-model", model, *extra, **kwargs)
