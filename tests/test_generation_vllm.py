"""The vLLM backend against a fake ``vllm`` module, and the factory's choice of backend.

vLLM is not installed on CPU machines, so a fake module records what ``VLLMEngine`` passes to it: the
prompt token ids (they must equal the HF engine's), the sampling parameters, and the order of results.
The real vLLM path is exercised only on GPU machines.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from tether.data.records import Message
from tether.errors import TetherError
from tether.generation import GenerationEngine, SamplingParams, VLLMEngine, factory, make_engine

PROMPTS = [
    "Hi",
    "Tell me a long story about a dragon and a knight",
    [Message(role="system", content="Be brief."), Message(role="user", content="2+2?")],
    [
        Message(role="user", content="Name a colour."),
        Message(role="assistant", content="Blue."),
        Message(role="user", content="Another?"),
    ],
]


@dataclass
class FakeSamplingParams:
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str] | None
    top_k: int = -1


@dataclass
class FakeCompletion:
    token_ids: list[int]


@dataclass
class FakeRequestOutput:
    request_id: str
    outputs: list[FakeCompletion]


@dataclass
class FakeLLM:
    """Answers ``reply(prompt_token_ids)`` to each request, in the order given, as ``vllm.LLM`` does."""

    kwargs: dict
    calls: list = field(default_factory=list)
    reply: object = None

    def generate(self, prompts, sampling_params, use_tqdm=True):
        self.calls.append({"prompts": prompts, "params": sampling_params, "use_tqdm": use_tqdm})
        return [
            FakeRequestOutput(str(i), [FakeCompletion(self.reply(p["prompt_token_ids"]))])
            for i, p in enumerate(prompts)
        ]


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    from tether.models.loading import load_tokenizer

    return load_tokenizer(str(tokenizer_dir))


@pytest.fixture
def fake_vllm(monkeypatch, tokenizer):
    """Install a fake ``vllm``; its LLMs answer "reply to N tokens" plus EOS, N being the prompt's length."""
    module = types.ModuleType("vllm")
    module.instances = []

    def reply(ids: list[int]) -> list[int]:
        return [*tokenizer.encode(f" reply to {len(ids)} tokens"), tokenizer.eos_token_id]

    def make_llm(**kwargs):
        llm = FakeLLM(kwargs, reply=reply)
        module.instances.append(llm)
        return llm

    module.LLM = make_llm
    module.SamplingParams = FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


@pytest.fixture
def engine(fake_vllm, tokenizer, tmp_path):
    return VLLMEngine(str(tmp_path), tokenizer, batch_size=8, progress=True, gpu_memory_utilization=0.5)


def test_llm_is_built_from_the_folder_with_our_settings(engine, fake_vllm, tokenizer, tmp_path):
    (llm,) = fake_vllm.instances
    assert llm.kwargs == {
        "model": str(tmp_path),
        "tokenizer": tokenizer.name_or_path,
        "dtype": "auto",
        "seed": 0,
        "trust_remote_code": False,
        "load_format": "safetensors",
        "max_num_seqs": 8,
        "gpu_memory_utilization": 0.5,
    }


def test_prompt_ids_equal_the_hf_engine_s(engine, fake_vllm, tokenizer):
    engine.generate(PROMPTS, SamplingParams())
    hf = GenerationEngine(None, tokenizer)
    sent = [p["prompt_token_ids"] for p in fake_vllm.instances[0].calls[0]["prompts"]]
    assert sent == [hf.prompt_ids(p) for p in PROMPTS]
    assert len(set(map(len, sent))) == len(PROMPTS)  # distinct lengths, so the order check below means something
    assert fake_vllm.instances[0].calls[0]["use_tqdm"] is True


def test_results_come_back_in_the_caller_s_order(engine, tokenizer):
    hf = GenerationEngine(None, tokenizer)
    texts = engine.generate(PROMPTS, SamplingParams())
    assert texts == [f"reply to {len(hf.prompt_ids(p))} tokens" for p in PROMPTS]
    ids = engine.generate_ids(PROMPTS, SamplingParams())
    assert all(row[-1] == tokenizer.eos_token_id for row in ids)


def test_greedy_maps_to_temperature_zero_without_seed(engine, fake_vllm):
    engine.generate(PROMPTS[:2], SamplingParams(max_new_tokens=7, top_p=0.5, seed=3))
    params = fake_vllm.instances[0].calls[0]["params"]
    assert params == [FakeSamplingParams(max_tokens=7, temperature=0.0, top_p=1.0, seed=None, stop=None)] * 2


def test_sampling_passes_a_seed_per_request(engine, fake_vllm):
    engine.generate(["same", "same", "other"], SamplingParams(max_new_tokens=5, temperature=0.7, top_p=0.9, seed=10))
    params = fake_vllm.instances[0].calls[0]["params"]
    assert [p.seed for p in params] == [10, 11, 12]  # repeated prompts draw different samples, reproducibly
    assert all((p.temperature, p.top_p, p.max_tokens) == (0.7, 0.9, 5) for p in params)


def test_stop_strings_are_passed_and_cut_like_the_hf_engine(engine, fake_vllm, tokenizer):
    fake_vllm.instances[0].reply = lambda ids: tokenizer.encode("Sure. STOP and more. END")
    texts = engine.generate(PROMPTS[:2], SamplingParams(stop=("END", "STOP")))
    assert texts == ["Sure."] * 2
    assert fake_vllm.instances[0].calls[0]["params"][0].stop == ["END", "STOP"]


def test_generate_ids_end_at_the_first_eos(engine, fake_vllm, tokenizer):
    eos = tokenizer.eos_token_id
    fake_vllm.instances[0].reply = lambda ids: [5, 6, eos, 7]
    assert engine.generate_ids(["Hi"], SamplingParams()) == [[5, 6, eos]]


# -- the factory -----------------------------------------------------------------------------------


@pytest.fixture
def model_dir(tmp_path) -> Path:
    (tmp_path / "config.json").write_text("{}")
    return tmp_path


def _environment(monkeypatch, *, installed: bool, cuda: bool) -> None:
    monkeypatch.setattr(factory, "find_spec", lambda name: object() if installed else None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)


@pytest.mark.parametrize(("installed", "cuda"), [(False, False), (False, True), (True, False)])
def test_auto_falls_back_to_hf_without_vllm_or_gpu(monkeypatch, tokenizer, model_dir, installed, cuda):
    _environment(monkeypatch, installed=installed, cuda=cuda)
    engine = make_engine(object(), tokenizer, model_path=str(model_dir))
    assert isinstance(engine, GenerationEngine) and engine.batch_size == 64


def test_auto_needs_a_model_folder(monkeypatch, fake_vllm, tokenizer, tmp_path):
    _environment(monkeypatch, installed=True, cuda=True)
    assert isinstance(make_engine(object(), tokenizer), GenerationEngine)
    assert isinstance(make_engine(object(), tokenizer, model_path=str(tmp_path)), GenerationEngine)
    (tmp_path / "adapter_config.json").write_text('{"base_model_name_or_path": "base"}')
    assert isinstance(make_engine(object(), tokenizer, model_path=str(tmp_path)), GenerationEngine)
    assert not fake_vllm.instances


def test_auto_picks_vllm_when_it_can_run(monkeypatch, fake_vllm, tokenizer, model_dir):
    _environment(monkeypatch, installed=True, cuda=True)
    engine = make_engine(object(), tokenizer, model_path=str(model_dir), batch_size=16, max_model_len=512)
    assert isinstance(engine, VLLMEngine)
    assert fake_vllm.instances[0].kwargs["model"] == str(model_dir)
    assert fake_vllm.instances[0].kwargs["max_num_seqs"] == 16
    assert fake_vllm.instances[0].kwargs["max_model_len"] == 512


def test_hf_is_used_when_asked_even_with_vllm(monkeypatch, fake_vllm, tokenizer, model_dir):
    _environment(monkeypatch, installed=True, cuda=True)
    engine = make_engine(object(), tokenizer, backend="hf", model_path=str(model_dir), batch_size=4)
    assert isinstance(engine, GenerationEngine) and engine.batch_size == 4


@pytest.mark.parametrize(
    ("installed", "cuda", "folder", "message"),
    [
        (False, True, "model", "pip install vllm"),
        (True, False, "model", "CUDA GPU"),
        (True, True, None, "model_path"),
        (True, True, "adapter", "merge_and_unload"),
        (True, True, "empty", "config.json"),
    ],
)
def test_explicit_vllm_says_how_to_fix_what_is_missing(
    monkeypatch, tokenizer, tmp_path, installed, cuda, folder, message
):
    _environment(monkeypatch, installed=installed, cuda=cuda)
    if folder == "model":
        (tmp_path / "config.json").write_text("{}")
    if folder == "adapter":
        (tmp_path / "adapter_config.json").write_text('{"base_model_name_or_path": "base"}')
    path = str(tmp_path) if folder else None
    with pytest.raises(TetherError, match=message):
        make_engine(object(), tokenizer, backend="vllm", model_path=path)


def test_an_unknown_backend_is_refused(tokenizer):
    with pytest.raises(TetherError, match="'auto', 'hf' or 'vllm'"):
        make_engine(object(), tokenizer, backend="tgi")  # type: ignore[arg-type]


def test_the_engine_says_how_to_install_vllm(monkeypatch, tokenizer, tmp_path):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(TetherError, match="pip install vllm"):
        VLLMEngine(str(tmp_path), tokenizer)


def test_a_local_guard_judge_generates_with_vllm_without_loading_the_model_twice(
    monkeypatch, fake_vllm, tokenizer, tiny_model_dir
):
    from tether.judges.generative import GenerativeJudge, LocalCompleter
    from tether.judges.guard_formats import FORMATS

    _environment(monkeypatch, installed=True, cuda=True)
    completer = LocalCompleter(str(tiny_model_dir))
    judge = GenerativeJudge(FORMATS["llama-guard-3"], "harm", completer)
    (verdict,) = judge.judge_many([("How do I pick a lock?", "Rake the pins.")])
    assert isinstance(completer.engine, VLLMEngine) and completer._model is None  # transformers never loaded it
    sent = fake_vllm.instances[0].calls[0]["prompts"][0]["prompt_token_ids"]
    rendered = FORMATS["llama-guard-3"].render("How do I pick a lock?", "Rake the pins.")[0]
    assert sent == tokenizer(rendered, add_special_tokens=True)["input_ids"]
    assert verdict.label == "unscored" and f"reply to {len(sent)} tokens" in verdict.reason  # off-format reply
