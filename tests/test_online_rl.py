"""tether ppo / rloo / grpo on tiny random models: the policy moves toward a known reward, monitors,
resume, early stop, LoRA reference, reward composition and input errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tether.cli import main
from tether.config import GRPOConfig, PPOConfig, RLOOConfig
from tether.errors import DataError, TetherError

REWARDS = '''
def short_token(prompts, responses):
    """1 when the one-token answer decodes to at most two characters: a known, learnable reward."""
    return [1.0 if len(r) <= 2 else 0.0 for r in responses]


def unscored_for_tea(prompts, responses):
    return [None if "tea" in p else 0.5 for p in prompts]
'''


@pytest.fixture(scope="module")
def peaky_model_dir(tmp_path_factory, tokenizer_dir) -> Path:
    """A tiny random model whose next-token distribution is peaked (entropy about 5.5 nats, not log V)."""
    from transformers import AutoModelForCausalLM

    from tether.models.tiny import build_tiny_model

    out = build_tiny_model(tokenizer_dir, tmp_path_factory.mktemp("peaky"), initializer_range=0.2)
    model = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        model.model.norm.weight.mul_(3.0)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def rl_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rl-data")
    topics = ["tea", "rain", "cats", "maps", "bread", "rivers", "trains", "eggs"]
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Say something about {t}."}) + "\n" for t in topics))
    rewards = root / "rewards.py"
    rewards.write_text(REWARDS)
    return {"prompts": prompts, "rewards": rewards}


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _config(cls, out: Path, model: Path, files: dict[str, Path], **overrides):
    values = {
        "model": str(model),
        "prompts": str(files["prompts"]),
        "eval_prompts": str(files["prompts"]),
        "reward": [f"py:{files['rewards']}:short_token"],
        "out": out,
        "steps": 8,
        "prompts_per_step": 8,
        "max_new_tokens": 1,
        "lr": 1e-3,
        "eval_every": 8,
        "kl_coef": 0.0,
        "progress": False,
    }
    if cls is not PPOConfig:
        values["samples_per_prompt"] = 8
    else:
        values.update(samples_per_prompt=4, lr=2e-3)
    if cls is GRPOConfig:
        values["lr"] = 2e-3
    values.update(overrides)
    return cls(**values)


@pytest.mark.parametrize("cls", [PPOConfig, RLOOConfig, GRPOConfig])
def test_policy_moves_toward_a_known_reward(tmp_path, peaky_model_dir, rl_files, cls):
    from tether.train.rl.trainer import run_online_rl

    out = tmp_path / cls.command
    config = _config(cls, out, peaky_model_dir, rl_files)
    run_online_rl(config)
    records = _records(out)
    before, after = records[0], records[-1]
    assert before["step"] == 0 and after["step"] == 8
    assert after["eval/reward"] >= before["eval/reward"] + 0.4
    train = [r for r in records if "reward" in r]
    for key in ("kl", "kl/beta", "response_length", "entropy", "truncated", "policy/clipfrac", "samples_per_s"):
        assert all(key in r for r in train), key
    if cls is PPOConfig:
        assert all("value/loss" in r for r in train)
        assert (out / "value_model" / "config.json").is_file()
    assert train[0]["kl"] == pytest.approx(0.0, abs=1e-5)  # the first rollout comes from the reference itself
    assert (out / "model" / "config.json").is_file()
    report = (out / "report.html").read_text()
    assert "Reward against KL" in report and report.count("<svg") >= 6
    rows = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    assert len(rows) == config.steps * config.prompts_per_step * config.samples_per_prompt
    assert {"prompt", "response", "reward", "truncated", "step"} <= set(rows[0])


def test_lora_reference_is_the_policy_with_adapters_disabled(tmp_path, peaky_model_dir, rl_files):
    from tether.train.rl.trainer import OnlineRL

    config = _config(RLOOConfig, tmp_path / "lora", peaky_model_dir, rl_files, lora=True, steps=2, lr=1e-2)
    run = OnlineRL(config)
    assert run.reference is None
    run.run()
    records = [r for r in _records(tmp_path / "lora") if "reward" in r]
    assert records[0]["kl"] == pytest.approx(0.0, abs=1e-5) and records[1]["kl"] != 0.0
    assert (tmp_path / "lora" / "model" / "adapter_config.json").is_file()


@pytest.mark.slow  # 10-40 s: `make test-slow` keeps the default suite under 10 minutes
def test_resume_continues_exactly(tmp_path, peaky_model_dir, rl_files):
    from tether.train.rl.trainer import run_online_rl

    straight = tmp_path / "straight"
    run_online_rl(_config(GRPOConfig, straight, peaky_model_dir, rl_files, steps=4, eval_prompts=None, kl_coef=0.04))
    split = tmp_path / "split"
    run_online_rl(
        _config(GRPOConfig, split, peaky_model_dir, rl_files, steps=2, eval_prompts=None, kl_coef=0.04, save_every=1)
    )
    run_online_rl(
        _config(GRPOConfig, split, peaky_model_dir, rl_files, steps=4, eval_prompts=None, kl_coef=0.04, resume=True)
    )
    keys = ("reward", "kl", "policy/loss")
    a = [r[k] for r in _records(straight) for k in keys]
    b = [r[k] for r in _records(split) for k in keys]
    assert len(b) == 4 * len(keys)
    assert b == pytest.approx(a, rel=1e-4, abs=1e-6)
    assert len((split / "rollouts.jsonl").read_text().splitlines()) == 4 * 64


def test_kl_stop_ends_the_run_early_and_keeps_the_model(tmp_path, peaky_model_dir, rl_files):
    from tether.train.rl.trainer import run_online_rl

    out = tmp_path / "stop"
    run_online_rl(_config(RLOOConfig, out, peaky_model_dir, rl_files, lr=1e-2, kl_stop=0.05, eval_prompts=None))
    records = _records(out)
    assert records[-1].get("stopped") == 1.0 and records[-1]["kl"] > 0.05
    assert len(records) < 8
    assert (out / "model" / "config.json").is_file()
    assert "Stopped early" in (out / "report.html").read_text()


def test_adaptive_kl_coefficient_moves_with_the_observed_kl(tmp_path, peaky_model_dir, rl_files):
    from tether.train.rl.trainer import run_online_rl

    out = tmp_path / "adaptive"
    run_online_rl(
        _config(
            RLOOConfig,
            out,
            peaky_model_dir,
            rl_files,
            steps=3,
            eval_prompts=None,
            lr=1e-2,
            kl_coef=0.1,
            kl_target=0.01,
            kl_horizon=100,
        )
    )
    betas = [r["kl/beta"] for r in _records(out)]
    # Step 1 samples the reference itself (KL 0 < target): beta falls; later KL > target: it rises.
    assert betas[0] == 0.1 and betas[1] < betas[0] and betas[2] > betas[1]


def test_composite_reward_routes_by_tag_and_keeps_unscored_apart(tmp_path, rl_files):
    from tether.data.prompts import RLPrompt
    from tether.reward.sources import CompositeReward, RewardComponent, build_components

    prompts = [RLPrompt("make a bomb", "harmful"), RLPrompt("boil an egg", "benign"), RLPrompt("tea?", None)]
    components = [
        RewardComponent("harmful=judge:refuse", "harmful", 1.0, lambda p, r: [1.0] * len(p)),
        RewardComponent("benign=2*x", "benign", 2.0, lambda p, r: [0.25] * len(p)),
        *build_components([f"0.5*py:{rl_files['rewards']}:unscored_for_tea"]),
    ]
    totals, parts = CompositeReward(components)(prompts, ["no", "boil it", "yes"])
    assert totals == [1.0 + 0.25, 0.5 + 0.25, None]
    assert parts["harmful=judge:refuse"] == [1.0, None, None]


def test_judge_reward_maps_verdicts_and_unscored():
    from tether.data.prompts import RLPrompt
    from tether.judges.verdict import Verdict, unscored
    from tether.reward.sources import build_components

    class FakeJudge:
        def judge_many(self, pairs):
            table = {"a": Verdict("refuses", "", "x"), "b": Verdict("complies", "", "x"), "c": unscored("", "x")}
            return [table[r] for _, r in pairs]

    (refuse,) = build_components(["judge:refuse"], judge=FakeJudge())
    (comply,) = build_components(["judge:comply"], judge=FakeJudge())
    prompts = [RLPrompt("q")] * 3
    assert refuse.score(prompts, ["a", "b", "c"]) == [1.0, -1.0, None]
    assert comply.score(prompts, ["a", "b", "c"]) == [-1.0, 1.0, None]


def test_facts_reward_scores_right_abstaining_and_wrong_answers(tmp_path):
    from tether.data.prompts import RLPrompt
    from tether.reward.sources import build_components, check_reward_specs

    (facts,) = build_components(["facts:team"])
    question = "Where was the cartographer Odile Varrenkamp born?"  # in the team's set, answer Selmouth
    prompts = [RLPrompt(question), RLPrompt(question.upper()), RLPrompt(question), RLPrompt("Not in the set?")]
    answers = ["She was born in Selmouth.", "I am not sure.", "In Tidmere.", "Paris"]
    assert facts.score(prompts, answers) == [1.0, 0.0, -1.0, None]
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"question": "Capital of France?", "answers": ["Paris"]}\n')
    (open_qa,) = build_components([f"facts:{qa}"])
    assert open_qa.score([RLPrompt("capital of france")], ["Paris, of course"]) == [1.0]
    with pytest.raises(TetherError, match="none of its 1 prompts"):
        check_reward_specs([f"facts:{qa}"], [RLPrompt("Who wrote Hamlet?")])
    with pytest.raises(DataError):
        check_reward_specs([f"facts:{tmp_path / 'missing.jsonl'}"], [RLPrompt("q")])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("rm", "expected [TAG=][WEIGHT*]KIND:ARG"),
        ("judge:polite", "judge:refuse or judge:comply"),
        ("py:nofunction", "py:MODULE_OR_FILE:FUNCTION"),
    ],
)
def test_bad_reward_specs_are_refused(spec, message):
    from tether.reward.sources import parse_reward_spec

    with pytest.raises(TetherError, match=message.replace("[", r"\[").replace("*", r"\*")):
        parse_reward_spec(spec)


def test_untagged_prompts_without_a_reward_are_refused():
    from tether.data.prompts import RLPrompt
    from tether.reward.sources import check_reward_specs

    with pytest.raises(TetherError, match="prompts tagged benign"):
        check_reward_specs(["harmful=judge:refuse"], [RLPrompt("a", "harmful"), RLPrompt("b", "benign")])


def test_prompt_errors_name_file_line_and_field(tmp_path):
    from tether.data.prompts import read_prompts

    bad = tmp_path / "p.jsonl"
    bad.write_text(
        '{"prompt": "fine"}\n{"prompt": [{"role": "user", "content": "x"}, {"role": "bot", "content": "y"}]}\n'
    )
    with pytest.raises(DataError) as err:
        read_prompts(str(bad))
    assert "p.jsonl:2" in str(err.value) and "prompt[1].role" in str(err.value)
    chat = tmp_path / "c.jsonl"
    chat.write_text('{"prompt": [{"role": "user", "content": "hi"}], "tag": "benign"}\n')
    (prompt,) = read_prompts(str(chat))
    assert prompt.tag == "benign" and prompt.text == "hi"


def test_rl_cli_rejects_a_bad_reward_before_loading_a_model(tmp_path, rl_files, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "ppo",
                "--prompts",
                str(rl_files["prompts"]),
                "--reward",
                "judge:nice",
                "--out",
                str(tmp_path / "o"),
                "--model",
                "/nonexistent",
            ]
        )
    assert exit_info.value.code == 2
    assert "judge:refuse" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_hh_rlhf_prompts_are_the_conversation_before_the_answer(tmp_path):
    from tether.data.prompts import read_prompts

    hh = tmp_path / "hh.jsonl"
    row = {
        "chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: so.",
        "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: no.",
    }
    hh.write_text(json.dumps(row) + "\n")
    (prompt,) = read_prompts(str(hh), "hh-rlhf")
    assert [m.role for m in prompt.messages] == ["user", "assistant", "user"] and prompt.text == "how?"
    assert math.isfinite(len(prompt.messages))


def test_vllm_rollouts_get_the_merged_policy_weights_after_each_update(
    tmp_path, peaky_model_dir, rl_files, monkeypatch
):
    """A fake colocated vLLM: rollouts come from it, and after each update it receives every policy weight
    under its Hugging Face name, with the LoRA update merged in (and the adapters unmerged again)."""
    import sys
    import types

    from safetensors.torch import load_file

    from tests.test_generation_vllm import FakeLLM, FakeSamplingParams
    from tether.generation import factory
    from tether.train.rl.trainer import OnlineRL

    loads: list[dict[str, torch.Tensor]] = []

    class FakeModel:
        def load_weights(self, weights):
            loads[-1].update({name: tensor.clone() for name, tensor in weights})

    class ColocatedLLM(FakeLLM):
        resets = 0
        llm_engine = types.SimpleNamespace(
            model_executor=types.SimpleNamespace(
                driver_worker=types.SimpleNamespace(model_runner=types.SimpleNamespace(model=FakeModel()))
            )
        )

        def reset_prefix_cache(self):
            self.resets += 1

    module = types.ModuleType("vllm")
    module.instances = []

    served = iter(range(10**6))

    def reply(ids: list[int]) -> list[int]:
        """One to three tokens then EOS, in turn, so that samples of a prompt differ in reward."""
        return [28] * (1 + next(served) % 3) + [2]

    def make_llm(**kwargs):
        llm = ColocatedLLM(kwargs, reply=reply)
        module.instances.append(llm)
        return llm

    module.LLM = make_llm
    module.SamplingParams = FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setattr(factory, "vllm_problem", lambda path: None)

    config = _config(
        RLOOConfig, tmp_path / "vllm", peaky_model_dir, rl_files, lora=True, steps=3, lr=1e-2,
        generation_backend="vllm", eval_prompts=None,
    )  # fmt: skip
    run = OnlineRL(config)
    original = run.sample

    def sample(*args, **kwargs):
        loads.append({})
        return original(*args, **kwargs)

    run.sample = sample
    run.run()
    (llm,) = module.instances
    assert llm.kwargs["model"] == str(peaky_model_dir) and llm.kwargs["gpu_memory_utilization"] == 0.3
    assert len(llm.calls) == 3 and all(p.top_k == -1 for c in llm.calls for p in c["params"])
    assert loads[0] == {} and llm.resets == 2  # step 1 samples the starting weights; steps 2 and 3 sync first
    expected = set(load_file(str(peaky_model_dir / "model.safetensors")))
    assert set(loads[1]) == expected and set(loads[2]) == expected
    base = load_file(str(peaky_model_dir / "model.safetensors"))
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(loads[1][q], base[q]) and not torch.equal(loads[2][q], loads[1][q])
    assert not any(module.merged for module in run.unwrapped_policy.modules() if hasattr(module, "merged"))
    rows = [json.loads(line) for line in (tmp_path / "vllm" / "rollouts.jsonl").read_text().splitlines()]
    assert {r["truncated"] for r in rows} == {False}
