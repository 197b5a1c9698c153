"""Refusal-aware training data, in the manner of R-Tuning (Zhang et al. 2024, "R-Tuning: Instructing Large
Language Models to Say 'I Don't Know'", NAACL).

The model answers every training question greedily. Where the answer is right (a normalised reference in
it, :func:`tether.evals.uncertainty.answer_matches`), the row keeps the question with that answer; where it
is wrong, the row teaches "I am not sure." (R-Tuning's refusal form, :data:`tether.evals.uncertainty.ABSTAIN`).
As SFT conversations (``prompt``, ``completion``) for `tether sft`, or as preference pairs for `tether dpo`:
the right answer over the abstention, the abstention over the wrong answer. What the model gets right is
kept in its own words (R-Tuning keeps the dataset's answer; a reference here is often a bare name).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from tether.data.samples import QASample
from tether.evals.refusal_aware_config import RefusalAwareDataConfig
from tether.evals.uncertainty import ABSTAIN, abstains, answer_matches
from tether.generation.engine import GenerationEngine, SamplingParams

Form = Literal["sft", "dpo"]


def refusal_aware_rows(
    model: Any,
    tokenizer: Any,
    questions: Sequence[QASample],
    *,
    form: Form = "sft",
    max_new_tokens: int = 32,
    batch_size: int = 16,
    progress: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The rows (module docstring), each with ``id`` and ``known``, and the counts of known and unknown."""
    engine = GenerationEngine(model, tokenizer, batch_size=batch_size, progress=progress)
    answers = engine.generate([q.question for q in questions], SamplingParams(max_new_tokens=max_new_tokens))
    rows = []
    for question, answer in zip(questions, answers, strict=True):
        known = answer_matches(answer, question.references) and not abstains(answer)
        row: dict[str, Any] = {"id": question.id, "prompt": question.question, "known": known}
        if form == "sft":
            row["completion"] = answer if known else ABSTAIN
        else:
            row["chosen"], row["rejected"] = (answer, ABSTAIN) if known else (ABSTAIN, answer or "(no answer)")
        rows.append(row)
    known_count = sum(r["known"] for r in rows)
    return rows, {"questions": len(rows), "known": known_count, "unknown": len(rows) - known_count}


def run_refusal_aware_data(config: RefusalAwareDataConfig, *, console: Any = None) -> dict[str, int]:
    """`tether refusal-aware-data`: questions read and filtered and --output checked before the model loads."""
    from tether.atomic import atomic_write_jsonl
    from tether.errors import UsageError
    from tether.evals.registry import get_suite
    from tether.models.loading import load_model, load_tokenizer
    from tether.runs.folders import check_output_file

    questions = get_suite(config.suite).load(config.data)
    if config.categories:
        questions = [q for q in questions if q.category in config.categories]
        if not questions:
            raise UsageError(f"{config.data}: no question of categories {', '.join(config.categories)}")
    output = check_output_file(config.output)
    if output.exists() and not config.overwrite:
        raise UsageError(f"--output {output} exists; pass --overwrite to replace it")
    tokenizer = load_tokenizer(config.model, trust_remote_code=config.trust_remote_code, revision=config.revision)
    model = load_model(
        config.model, dtype=config.dtype, trust_remote_code=config.trust_remote_code, revision=config.revision
    )
    rows, counts = refusal_aware_rows(
        model,
        tokenizer,
        questions,
        form=config.format,
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size,
        progress=config.progress,
    )
    atomic_write_jsonl(output, rows)
    if console is not None:
        console.print(
            f"refusal-aware-data: {counts['known']} of {counts['questions']} answered right (kept), "
            f"{counts['unknown']} taught '{ABSTAIN}' -> {output}",
            highlight=False,
        )
    return counts
