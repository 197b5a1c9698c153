"""Training memory: the estimator, 'auto' gradient checkpointing, the pre-flight refusal, the record-size cap
and the allocator setting that returns freed activations to the system."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from tests.conftest import REPO, run_cli, write_jsonl
from tether.cli_options import config_command
from tether.config import RMTrainConfig, SFTConfig, load_config
from tether.data.pair_encoding import encode_records
from tether.data.records import Conversation, Preference, Unpaired
from tether.data.tokenization import ChatEncoder
from tether.errors import MemoryBudgetError
from tether.train.memory import GB, ModelShape, Trained, Workload, activation_bytes, estimate
from tether.train.preflight import check_memory, resolve
from tether.train.workloads import offline_workload

SMOLLM2 = {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
}
TINY = {**SMOLLM2, "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2, "num_attention_heads": 4}
TINY.update(num_key_value_heads=2, head_dim=16, vocab_size=1000)


def llama(config: dict, layers: int | None = None):
    from transformers import LlamaConfig, LlamaForCausalLM

    values = {**config, "num_hidden_layers": layers or config["num_hidden_layers"]}
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**values, attn_implementation="sdpa"))


# --- the estimator ------------------------------------------------------------------------------------


def test_parameter_counts_match_the_model_and_peft():
    from peft import LoraConfig, get_peft_model

    shape = ModelShape.from_config(TINY)
    model = llama(TINY)
    assert shape.params == sum(p.numel() for p in model.parameters())
    lora = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    assert shape.lora_params(8) == sum(p.numel() for p in lora.parameters() if p.requires_grad)
    assert shape.lora_params(8, ("q_proj", "v_proj")) == 2 * 8 * ((64 + 64) + (64 + 32))


def saved_bytes_per_token(config: dict, *, lora: bool, mixed_precision: str) -> float:
    """Bytes one token stores for backward in one decoder layer, counted with saved-tensor hooks."""
    model = llama(config, layers=1)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    rows, length = 2, 48
    mask = torch.ones(rows, length, dtype=torch.long)
    mask[1, length // 2 :] = 0  # padding: SDPA then gets a mask and K, V repeated to every head
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, tuple[tuple[int, ...], int]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen.setdefault(t.untyped_storage().data_ptr(), (tuple(t.shape), t.untyped_storage().nbytes()))
        return t

    layer = (model.get_base_model() if lora else model).model.layers[0]
    hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
    layer.register_forward_pre_hook(lambda *_: hooks.__enter__())
    layer.register_forward_hook(lambda *_: hooks.__exit__(None, None, None))
    dtype = torch.bfloat16 if mixed_precision == "bf16" else torch.float32
    with torch.autocast("cpu", dtype=dtype, enabled=mixed_precision == "bf16"):
        model(input_ids=torch.randint(0, 1000, (rows, length)), attention_mask=mask, use_cache=False)
    total = 0
    for ptr, (shape, nbytes) in seen.items():
        per_row = shape[0] in (rows, rows * length)
        is_mask = len(shape) == 4 and shape[1] == 1 and shape[-2:] == (length, length)
        if ptr not in params and per_row and not is_mask:  # not weights (or their bf16 casts), the mask, RoPE
            total += nbytes
    return total / (rows * length)


@pytest.mark.parametrize("lora", [False, True])
@pytest.mark.parametrize("mixed_precision", ["no", "bf16"])
def test_activation_formula_matches_the_saved_tensors(lora, mixed_precision):
    shape = ModelShape.from_config(TINY)
    counted = saved_bytes_per_token(TINY, lora=lora, mixed_precision=mixed_precision)
    formula = activation_bytes(shape, Trained(8 if lora else None), mixed_precision)
    assert formula == pytest.approx(counted, rel=0.05)


def workload(**changes) -> Workload:
    values = {"shape": ModelShape.from_config(SMOLLM2), "rows": 16, "length": 1024, "trained": (Trained(16),)}
    return Workload(**{**values, **changes})


def test_the_issues_rm_train_case_needs_checkpointing_and_then_fits_8_gb():
    """rm train --lora --batch-size 8 at 1,024 tokens, fp32: without checkpointing the 30 layers' activations
    of 16 rows need about 20 GB (the OOM at 24 GB); with it the run fits in 8 GB."""
    without = estimate(workload(trained=(Trained(16, scalar_head=True),)))
    with_it = estimate(workload(trained=(Trained(16, scalar_head=True),), checkpointing=True))
    assert without.total > 20 * GB
    assert with_it.total < 8 * GB
    assert without.total > 2 * with_it.total


def test_estimate_grows_with_every_input():
    base = estimate(workload(checkpointing=True)).total
    assert estimate(workload(checkpointing=True, rows=32)).total > base
    assert estimate(workload(checkpointing=True, length=2048)).total > base
    assert estimate(workload(checkpointing=True, trained=(Trained(),))).total > base + GB  # AdamW, head gradient
    assert estimate(workload(checkpointing=True, frozen_models=1)).total == pytest.approx(base + 134.5e6 * 4, 1e-3)
    rollout = estimate(workload(checkpointing=True, generation_rows=64, generation_length=4096))
    assert rollout.phase == "generation"
    assert "generation" in rollout.describe()


def test_every_training_load_path_uses_sdpa_attention(tiny_model_dir):
    """Eager attention would store [B, heads, T, T] weights per layer; SDPA with a padding mask does not."""
    from tether.models.loading import load_model
    from tether.models.reward import load_scalar_model

    assert load_model(str(tiny_model_dir)).config._attn_implementation == "sdpa"  # policy, reference
    scalar = load_scalar_model(str(tiny_model_dir), pad_token_id=2)  # reward and value models
    assert scalar.config._attn_implementation == "sdpa"


# --- 'auto' checkpointing and the refusal --------------------------------------------------------------


def rm_config(tmp_path: Path, **values) -> RMTrainConfig:
    return RMTrainConfig(**{"data": "x.jsonl", "out": tmp_path / "out", "batch_size": 8, "lora": True, **values})


def build_for(longest: int = 1024):
    shape = ModelShape.from_config(SMOLLM2)
    facts = {"longest": longest, "examples": 100, "data_tokens": 0}
    return lambda c: offline_workload(c, shape, **facts, rows_per_example=2, scalar_head=True)


@pytest.mark.slow  # 10-40 s: `make test-slow` keeps the default suite under 10 minutes
def test_checkpointing_defaults_to_auto_and_auto_turns_it_on_where_activations_dominate(tmp_path):
    config = rm_config(tmp_path)
    assert config.gradient_checkpointing == "auto"
    on, chosen, without = resolve(config, build_for(1024), budget=100 * GB)  # fits either way: the ratio decides
    assert on and chosen.total < 8 * GB and without.total > 2 * chosen.total
    off, _, _ = resolve(rm_config(tmp_path, lora=False), build_for(64), budget=100 * GB)  # weights, AdamW dominate
    assert not off
    assert check_memory(config, build_for(1024)).gradient_checkpointing is True


def test_auto_turns_checkpointing_on_when_the_run_would_not_fit_otherwise(tmp_path):
    config, build = rm_config(tmp_path, lora=False), build_for(64)
    with_it = estimate(build(config.model_copy(update={"gradient_checkpointing": True}))).total
    without = estimate(build(config.model_copy(update={"gradient_checkpointing": False}))).total
    assert not resolve(config, build, budget=100 * GB)[0]
    assert resolve(config, build, budget=(with_it + without) / 2)[0]


def test_forced_settings_are_kept(tmp_path):
    assert resolve(rm_config(tmp_path, gradient_checkpointing=False), build_for(1024), None)[0] is False
    assert resolve(rm_config(tmp_path, gradient_checkpointing=True), build_for(64), None)[0] is True


def test_refusal_names_settings_that_fit(tmp_path):
    config = rm_config(tmp_path, gradient_checkpointing=False, memory_budget=6)
    with pytest.raises(MemoryBudgetError) as caught:
        check_memory(config, build_for(1024))
    message = str(caught.value)
    assert caught.value.exit_code == 2
    assert "exceeds the budget of 6.0 GB" in message
    assert "--gradient-checkpointing (" in message and "--batch-size" in message
    assert "\n" not in message


def test_memory_budget_zero_turns_the_check_off(tmp_path):
    config = rm_config(tmp_path, gradient_checkpointing=False, memory_budget=0)
    assert check_memory(config, build_for(1024)).gradient_checkpointing is False


def test_yaml_and_flags_keep_the_old_checkpointing_values(tmp_path):
    for text, want in (("true", True), ("false", False), ("auto", "auto")):
        path = tmp_path / f"{text}.yaml"
        path.write_text(f"data: d.jsonl\nout: o\ngradient_checkpointing: {text}\n")
        assert load_config(SFTConfig, path, {}).gradient_checkpointing == want
    for flags, want in (([], "auto"), (["--gradient-checkpointing"], True), (["--no-gradient-checkpointing"], False)):
        seen: dict = {}
        single = typer.Typer()
        single.command()(config_command(SFTConfig, lambda c, seen=seen: seen.setdefault("c", c), load=load_config))
        result = CliRunner().invoke(single, ["--data", "d.jsonl", "--out", "o", *flags])
        assert result.exit_code == 0, result.output
        assert seen["c"].gradient_checkpointing == want


def big_model_folder(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A folder whose config.json describes SmolLM2-135M but whose weights are the tiny model's: loading it
    would fail, so a refusal proves that nothing was loaded."""
    folder = tmp_path / "big-model"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update({k: v for k, v in SMOLLM2.items() if k != "vocab_size"})
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_cli_refuses_up_front_with_exit_2_and_writes_nothing(tmp_path, tiny_model_dir):
    long = " ".join(["word"] * 1500)
    data = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "Hi", "chosen": long, "rejected": long + " no"}] * 16)
    out = tmp_path / "out"
    model = big_model_folder(tmp_path, tiny_model_dir)
    result = run_cli(
        *("rm", "train", "--model", str(model), "--data", str(data), "--out", str(out)),
        *("--batch-size", "8", "--no-gradient-checkpointing", "--memory-budget", "6", "--no-progress"),
    )
    assert result.returncode == 2, result.stderr
    assert "exceeds the budget of 6.0 GB" in result.stderr
    assert "would fit: --gradient-checkpointing" in result.stderr
    assert not out.exists()


# --- the record-size cap ---------------------------------------------------------------------------------


class GuardedTokenizer:
    """The embedded tokenizer, failing the test if asked to tokenize more than ``limit`` characters."""

    def __init__(self, tokenizer, limit: int) -> None:
        self.inner, self.limit = tokenizer, limit

    def __call__(self, text, **kwargs):
        assert len(text) <= self.limit, f"the tokenizer was given {len(text)} characters"
        return self.inner(text, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


HUGE = "lorem ipsum dolor sit amet " * 2_000_000  # 54 MB


@pytest.fixture
def guarded(tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    return GuardedTokenizer(tokenizer, limit=100_000)


def test_a_50_mb_pair_is_cut_before_tokenizing(guarded):
    records = [
        Preference(prompt="Why? " + HUGE, chosen=HUGE, rejected="No. " + HUGE),
        Unpaired(prompt=HUGE, completion=HUGE, label=True),
    ]
    examples, report = encode_records(ChatEncoder(guarded), records, max_length=64, max_prompt_length=32)
    assert [len(e) for e in examples] == [64, 64] and report.truncated == 2


def test_a_50_mb_conversation_is_cut_before_tokenizing(guarded):
    record = Conversation.from_prompt_completion("Say it.", HUGE)
    example = ChatEncoder(guarded, max_length=64).encode(record)
    assert example is not None and len(example) == 64


def test_a_50_mb_rl_prompt_is_cut_before_tokenizing(guarded):
    from types import SimpleNamespace

    from tether.data.prompts import RLPrompt
    from tether.train.rl.trainer import OnlineRL

    owner = SimpleNamespace(config=SimpleNamespace(max_prompt_length=32))
    ids = OnlineRL._prompt_ids(owner, ChatEncoder(guarded), RLPrompt(HUGE + " end?"))
    assert len(ids) == 32


def test_cut_records_give_the_tokens_truncation_keeps(tokenizer_dir):
    from transformers import AutoTokenizer

    from tether.data.pair_encoding import encode_pair, truncate_pair

    encoder = ChatEncoder(AutoTokenizer.from_pretrained(tokenizer_dir))
    words = (
        "safety",
        "policy",
        "answers",
        "why",
        "requests",
        "are",
        "refused,",
        "with",
        "care;",
        "42",
        "naïve",
        "日本語",
    )
    text = " ".join(words[i % len(words)] for i in range(20_000))
    record = Preference(prompt="Q: " + text, chosen=text + " yes", rejected="no " + text)
    (cut,), _ = encode_records(encoder, [record], max_length=64, max_prompt_length=32)
    assert cut == truncate_pair(encode_pair(encoder, record), 64, 32)


@pytest.mark.slow  # 10-40 s: `make test-slow` keeps the default suite under 10 minutes
def test_cli_trains_on_a_50_mb_record_in_little_memory(tmp_path, tiny_model_dir):
    """Before the cap, `tether dpo --max-length 64` tokenized the whole 50 MB record (7.6 GB, then an abort)."""
    rows = [
        {"prompt": "Why?", "chosen": HUGE, "rejected": "No."},
        {"prompt": "Hi", "chosen": "Hello.", "rejected": "Go."},
    ]
    data = write_jsonl(tmp_path / "big.jsonl", rows)
    argv = ["dpo", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(tmp_path / "out")]
    argv += ["--max-length", "64", "--batch-size", "1", "--max-steps", "1", "--no-progress"]
    process = subprocess.Popen(
        [sys.executable, "-m", "tether", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
    )
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, output
    assert usage.ru_maxrss * 1024 < 3e9  # KiB on Linux; ~1 GB with the cap


# --- freed memory goes back to the system ----------------------------------------------------------------


def test_training_commands_return_freed_activation_memory(tmp_path, tokenizer_dir):
    """After read_inputs (what every offline command runs first), tensors freed between layers do not stay
    resident: the layer-by-layer pattern of a checkpointed forward grows RSS by about what it keeps."""
    data = write_jsonl(tmp_path / "chat.jsonl", [{"prompt": "Hi", "completion": "Hello."}])
    script = textwrap.dedent(
        f"""
        import psutil, torch
        from tether.config import SFTConfig
        from tether.train.recipe import read_inputs
        config = SFTConfig(model={str(tokenizer_dir)!r}, data={str(data)!r}, out={str(tmp_path / "o")!r})
        read_inputs(config, "conversation")
        process = psutil.Process()
        big = torch.ones(64 << 18); del big  # a 64 MiB block freed: glibc's threshold would rise to it
        start, kept = process.memory_info().rss, []
        for layer in range(30):
            transients = [torch.ones(2 << 20) for _ in range(4)]  # 8 MiB each, freed
            kept.append(torch.ones(1 << 19))  # 2 MiB kept, like a checkpointed layer's input
            del transients
        print((process.memory_info().rss - start) / 2**20)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    growth_mib = float(result.stdout.strip().splitlines()[-1])
    assert growth_mib < 2 * 60, f"RSS grew {growth_mib:.0f} MiB for 60 MiB kept"
