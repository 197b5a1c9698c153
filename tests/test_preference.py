"""tether dpo / orpo / simpo / kto end to end on tiny random models: exact losses, reference cache, metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from tests.conftest import PAIR_ROWS
from tether.config import DPOConfig, KTOConfig, ORPOConfig, SimPOConfig


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory, tokenizer_dir) -> Path:
    """A second tiny model (another seed, larger weights) to serve as a reference unlike the policy."""
    from tether.models.tiny import build_tiny_model

    return build_tiny_model(tokenizer_dir, tmp_path_factory.mktemp("tiny-ref"), seed=7, initializer_range=0.2)


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _naive_logps(model_dir: Path, tokenizer_dir: Path, rows: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed completion log-probs of each pair, the plain way: one unpadded sequence at a time, full
    log-softmax over the vocabulary, the prompt boundary from the chat template's generation prompt."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)

    def messages(value, role):
        return [{"role": role, "content": value}] if isinstance(value, str) else value

    def score(prompt, completion) -> float:
        prompt_ids = tok.apply_chat_template(messages(prompt, "user"), add_generation_prompt=True, tokenize=True)
        prompt_ids = list(prompt_ids["input_ids"] if hasattr(prompt_ids, "keys") else prompt_ids)
        full = tok.apply_chat_template(messages(prompt, "user") + messages(completion, "assistant"), tokenize=True)
        full = list(full["input_ids"] if hasattr(full, "keys") else full)
        assert full[: len(prompt_ids)] == prompt_ids
        with torch.no_grad():
            logits = model(torch.tensor([full])).logits[0, :-1].double()
        logps = F.log_softmax(logits, -1).gather(-1, torch.tensor(full[1:])[:, None])[:, 0]
        return float(logps[len(prompt_ids) - 1 :].sum())

    chosen = torch.tensor([score(r["prompt"], r["chosen"]) for r in rows], dtype=torch.float64)
    rejected = torch.tensor([score(r["prompt"], r["rejected"]) for r in rows], dtype=torch.float64)
    return chosen, rejected


def test_first_dpo_step_loss_equals_the_formula_on_naive_log_probs(
    tmp_path, tiny_model_dir, other_model_dir, tokenizer_dir, pair_file
):
    """Token for token and formula for formula: tether's logged step-1 loss and metrics equal
    -log sigma(beta h) computed from plain full-softmax log-probs of every pair."""
    from tether.train.preference import run_preference

    out = tmp_path / "run"
    config = DPOConfig(
        model=str(tiny_model_dir),
        ref_model=str(other_model_dir),
        data=str(pair_file),
        out=out,
        beta=0.5,
        batch_size=len(PAIR_ROWS) * 2,
        max_steps=1,
        progress=False,
    )
    run_preference(config)
    first = _metrics(out)[0]
    rows = PAIR_ROWS * 2
    pc, pr = _naive_logps(tiny_model_dir, tokenizer_dir, rows)
    rc, rr = _naive_logps(other_model_dir, tokenizer_dir, rows)
    h = (pc - rc) - (pr - rr)
    expected = -F.logsigmoid(0.5 * h).mean()
    assert first["units"] == len(rows)
    assert first["loss"] == pytest.approx(float(expected), rel=1e-5)
    assert first["logps/chosen"] == pytest.approx(float(pc.mean()), rel=1e-5)
    assert first["logps/ref_rejected"] == pytest.approx(float(rr.mean()), rel=1e-5)
    assert first["rewards/margin"] == pytest.approx(float(0.5 * h.mean()), rel=1e-4, abs=1e-6)
    assert first["rewards/accuracy"] == pytest.approx(float(((pc - rc) > (pr - rr)).double().mean()))


@pytest.mark.parametrize(
    ("cls", "extra"),
    [
        (DPOConfig, {"loss": "sigmoid"}),
        (DPOConfig, {"loss": "cdpo", "label_smoothing": 0.1}),
        (DPOConfig, {"loss": "robust", "label_smoothing": 0.1}),
        (DPOConfig, {"loss": "hinge"}),
        (DPOConfig, {"loss": "ipo"}),
        (DPOConfig, {"loss": "bco"}),
        (DPOConfig, {"loss": "sigmoid", "rpo_alpha": 1.0}),
        (ORPOConfig, {}),
        (SimPOConfig, {}),
    ],
    ids=["sigmoid", "cdpo", "robust", "hinge", "ipo", "bco", "rpo", "orpo", "simpo"],
)
def test_every_paired_loss_trains_and_reports(tmp_path, tiny_model_dir, pair_file, cls, extra):
    from tether.train.preference import run_preference

    out = tmp_path / "run"
    config = cls(
        model=str(tiny_model_dir),
        data=str(pair_file),
        out=out,
        lr=1e-2,
        batch_size=4,
        max_steps=3,
        progress=False,
        **extra,
    )
    model_dir = run_preference(config)
    metrics = _metrics(out)
    assert [m["step"] for m in metrics] == [1, 2, 3]
    for key in ("loss", "grad_norm", "rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy"):
        assert all(key in m for m in metrics), key
    if cls is DPOConfig:
        assert metrics[0]["kl_estimate"] == pytest.approx(0.0, abs=1e-5), "the reference is the starting policy"
        assert metrics[0]["logps/chosen"] == pytest.approx(metrics[0]["logps/ref_chosen"], abs=1e-4)
        assert abs(metrics[-1]["kl_estimate"]) > 1e-4, "training moved the policy away from the reference"
    if extra.get("rpo_alpha"):
        assert "terms/rpo_nll" in metrics[0]
    trained = load_file(str(model_dir / "model.safetensors"))
    initial = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    assert [n for n in initial if torch.equal(initial[n], trained[n])] == []
    report = (out / "report.html").read_text()
    assert report.count("<svg") >= 3 and "rewards" in report


def test_lora_reference_is_the_base_model_with_adapters_disabled(tmp_path, tiny_model_dir, pair_file, monkeypatch):
    """With LoRA the reference pass runs on the policy itself under peft's disable_adapter: no second model
    is loaded, and the numbers equal the base model's."""
    import tether.train.preference as preference
    import tether.train.recipe as recipe
    from tether.models import loading

    loads = []
    real_load = loading.load_model
    for module in (loading, recipe):  # the recipe loads the policy, --ref-model would go through loading
        monkeypatch.setattr(module, "load_model", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    disabled = []
    real_score = preference.score_examples
    monkeypatch.setattr(
        preference, "score_examples", lambda *a, **k: disabled.append(k["disable_adapters"]) or real_score(*a, **k)
    )
    out = tmp_path / "lora"
    config = DPOConfig(
        model=str(tiny_model_dir),
        data=str(pair_file),
        out=out,
        lora=True,
        lr=1e-2,
        batch_size=4,
        max_steps=2,
        progress=False,
    )
    preference.run_preference(config)
    assert disabled == [True]
    assert len(loads) == 1, "only the policy is loaded"
    first = _metrics(out)[0]
    assert first["logps/chosen"] == pytest.approx(first["logps/ref_chosen"], abs=1e-5)
    assert (out / "model" / "adapter_config.json").is_file()


def test_reference_log_probs_are_cached_by_model_and_data(tmp_path, tiny_model_dir, pair_file, monkeypatch):
    import tether.train.preference as preference
    from tests.conftest import write_jsonl

    calls = []
    real_score = preference.score_examples
    monkeypatch.setattr(preference, "score_examples", lambda *a, **k: calls.append(1) or real_score(*a, **k))

    def run(data: Path, out: str, **extra) -> None:
        config = DPOConfig(
            model=str(tiny_model_dir),
            data=str(data),
            out=tmp_path / out,
            batch_size=4,
            max_steps=1,
            progress=False,
            **extra,
        )
        preference.run_preference(config)

    run(pair_file, "a")
    run(pair_file, "b")
    assert len(calls) == 1, "the second run must reuse the cached reference log-probs"
    assert _metrics(tmp_path / "a")[0]["loss"] == _metrics(tmp_path / "b")[0]["loss"]
    run(pair_file, "c", max_length=24, max_prompt_length=16)
    assert len(calls) == 2, "other truncation, other token ids: a cache miss"
    changed = write_jsonl(tmp_path / "other.jsonl", [{**PAIR_ROWS[0], "chosen": "Never."}] + PAIR_ROWS[1:] * 2)
    run(changed, "d")
    assert len(calls) == 3, "other data: a cache miss"
    run(pair_file, "e", ref_cache=False)
    assert len(calls) == 4


def test_bf16_autocast_scores_the_reference_in_the_same_precision(tmp_path, tiny_model_dir, pair_file):
    """Under --mixed-precision bf16 the step-1 policy is its reference exactly (loss log 2), the log-probs
    are not the fp32 ones (autocast really ran), and the reference cache keeps the two precisions apart."""
    from tether.train.preference import run_preference

    def run(out: str, precision: str) -> dict:
        config = DPOConfig(
            model=str(tiny_model_dir),
            data=str(pair_file),
            out=tmp_path / out,
            batch_size=4,
            max_steps=2,
            mixed_precision=precision,
            progress=False,
        )
        run_preference(config)
        return _metrics(tmp_path / out)

    fp32 = run("fp32", "no")
    bf16 = run("bf16", "bf16")
    assert bf16[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert bf16[0]["logps/ref_chosen"] == pytest.approx(bf16[0]["logps/chosen"], rel=1e-4)
    assert bf16[0]["logps/ref_chosen"] != fp32[0]["logps/ref_chosen"], "the reference was scored in bf16 too"
    assert bf16[0]["logps/chosen"] != fp32[0]["logps/chosen"]
    assert bf16[0]["logps/chosen"] == pytest.approx(fp32[0]["logps/chosen"], rel=0.05)
    assert all(math.isfinite(m["loss"]) for m in bf16)


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 autocast is allowed on a GPU")
def test_fp16_on_cpu_is_refused_with_the_fix(tmp_path, tiny_model_dir, pair_file):
    from tests.conftest import run_cli

    result = run_cli(
        "dpo",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(pair_file),
        "--out",
        str(tmp_path / "o"),
        "--mixed-precision",
        "fp16",
        "--max-steps",
        "1",
        "--no-progress",
    )
    assert result.returncode != 0
    assert "fp16 needs a GPU" in result.stderr and "bf16" in result.stderr
    assert not (tmp_path / "o" / "model").exists()


def test_kto_trains_with_a_mismatched_reference_point(tmp_path, tiny_model_dir, unpaired_file):
    from tether.train.kto import mismatched_sequences, run_kto

    out = tmp_path / "kto"
    config = KTOConfig(
        model=str(tiny_model_dir),
        data=str(unpaired_file),
        out=out,
        lr=1e-2,
        batch_size=6,
        max_steps=3,
        progress=False,
        undesirable_weight=1.5,
    )
    run_kto(config)
    metrics = _metrics(out)
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert metrics[0]["kto/z0"] == pytest.approx(0.0, abs=1e-5)
    assert all(m["kto/z0"] >= 0 for m in metrics)
    assert (out / "report.html").is_file()

    from tether.data.pair_encoding import UnpairedExample

    examples = [UnpairedExample([1, 2], [3, 4, 5], True), UnpairedExample([6], [7], False)]
    kl = mismatched_sequences(examples, max_length=4)
    assert kl[0].input_ids == [1, 2, 7] and kl[1].input_ids == [6, 3, 4, 5]
    assert kl[0].labels[:2] == [-100, -100]


def test_bco_resume_restores_the_running_reward_mean(tmp_path, tiny_model_dir, pair_file):
    """BCO's shift delta is a running mean over the whole run: a resumed run must continue it, so its
    final weights equal an uninterrupted run's."""
    import shutil

    from tether.train.checkpoint import checkpoint_dirs
    from tether.train.preference import run_preference

    def config(out: Path, **extra) -> DPOConfig:
        return DPOConfig(
            model=str(tiny_model_dir),
            data=str(pair_file),
            out=out,
            loss="bco",
            lr=1e-2,
            batch_size=2,
            max_steps=4,
            save_every=2,
            progress=False,
            **extra,
        )

    straight = tmp_path / "straight"
    run_preference(config(straight))
    first, last = checkpoint_dirs(straight / "checkpoints")
    state = json.loads((first / "state.json").read_text())
    assert state["extra"]["bco_mean"]["count"] == 2 * 2 * 2, "2 steps x 2 pairs x (chosen, rejected)"

    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "model")
    shutil.rmtree(resumed / "checkpoints" / last.name)
    run_preference(config(resumed, resume=True))
    a = load_file(str(straight / "model" / "model.safetensors"))
    b = load_file(str(resumed / "model" / "model.safetensors"))
    assert all(torch.equal(a[n], b[n]) for n in a)
    deltas = [m["bco/delta"] for m in _metrics(resumed)]
    assert deltas == [m["bco/delta"] for m in _metrics(straight)]
