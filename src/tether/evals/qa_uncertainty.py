"""Open question answering with per-answer uncertainty: is the greedy answer right, and did the model know?

Per question, the model answers greedily (chat template, ``max_new_tokens``); the answer is right when a
normalised reference appears in it (:func:`tether.evals.uncertainty.answer_matches`). Its uncertainty
scores (:mod:`tether.evals.uncertainty`): the sequence NLL, perplexity and mean token entropy of the greedy
answer (one scoring pass over prompt + answer), p(True) (the model judging its own answer, scored as two
options), and semantic entropy over ``samples`` answers sampled at ``temperature``. An answer that abstains
("I am not sure", :func:`tether.evals.uncertainty.abstains`) is never right; the summary adds the answer rate
and the accuracy of the answered questions (what refusal-aware tuning trades). The summary gives each
score's AUROC and PRR for wrong answers, the AURC, and the ECE of the two that are probabilities
(sequence probability and p(True)) with their reliability bins (:mod:`tether.evals.calibration`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch

from tether.data.batching import collate
from tether.data.samples import ChoiceSample, QASample
from tether.data.tokenization import IGNORE_INDEX, TokenizedExample
from tether.evals.calibration import (
    auroc_for_errors,
    expected_calibration_error,
    prediction_rejection_ratio,
    reliability_bins,
    risk_coverage,
)
from tether.evals.loglikelihood import option_loglikelihoods
from tether.evals.uncertainty import (
    abstains,
    answer_matches,
    mean_token_entropy,
    p_true,
    p_true_context,
    perplexity,
    semantic_entropy,
    sequence_nll,
    token_entropies,
)
from tether.generation.engine import GenerationEngine, SamplingParams
from tether.stats import rate

UNCERTAINTIES = ("sequence_nll", "perplexity", "mean_token_entropy", "one_minus_p_true", "semantic_entropy")
"""Each answer's scores, higher meaning less sure (``one_minus_p_true`` is ``1 - p(True)``)."""
CONFIDENCES = {"sequence_probability": "sequence_nll", "p_true": "one_minus_p_true"}
"""The scores that are probabilities, for calibration: name -> the uncertainty it is the complement of."""


@torch.no_grad()
def answer_token_scores(
    model: Any, prompts: Sequence[list[int]], answers: Sequence[list[int]], *, pad_id: int, batch_size: int = 8
) -> list[tuple[list[float], list[float]]]:
    """Per answer: (log-prob of each answer token, entropy of the next-token distribution at each)."""
    examples = [
        TokenizedExample(input_ids=[*p, *a], labels=[IGNORE_INDEX] * len(p) + list(a))
        for p, a in zip(prompts, answers, strict=True)
    ]
    device = next(model.parameters()).device
    out: list[tuple[list[float], list[float]]] = []
    for start in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in collate(examples[start : start + batch_size], pad_id).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        targets = batch["labels"][:, 1:]
        for row in range(logits.shape[0]):
            keep = targets[row] != IGNORE_INDEX
            chosen = logits[row][keep].float()
            logp = torch.log_softmax(chosen, dim=-1).gather(-1, targets[row][keep][:, None]).squeeze(-1)
            out.append((logp.tolist(), token_entropies(chosen).tolist()))
    return out


def qa_records(
    model: Any,
    tokenizer: Any,
    questions: Sequence[QASample],
    *,
    samples: int = 5,
    temperature: float = 1.0,
    max_new_tokens: int = 32,
    batch_size: int = 16,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One record per question: the greedy answer, whether it is right, and its uncertainty scores."""
    engine = GenerationEngine(model, tokenizer, batch_size=batch_size)
    prompts = [engine.prompt_ids(q.question) for q in questions]
    greedy = engine.generate_from_ids(prompts, SamplingParams(max_new_tokens=max_new_tokens))
    texts = tokenizer.batch_decode(greedy, skip_special_tokens=True)
    sampled = [
        tokenizer.batch_decode(
            engine.generate_from_ids(
                prompts, SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed + 1000 * m)
            ),
            skip_special_tokens=True,
        )
        for m in range(samples)
    ]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scored = answer_token_scores(model, prompts, [g or [pad] for g in greedy], pad_id=pad, batch_size=batch_size)
    judged = option_loglikelihoods(
        model,
        tokenizer,
        [
            ChoiceSample(
                id=q.id, context=p_true_context(q.question, t or "(no answer)"), choices=("True", "False"), correct=(0,)
            )
            for q, t in zip(questions, texts, strict=True)
        ],
        batch_size=batch_size,
    )
    records = []
    for i, q in enumerate(questions):
        logps, entropies = scored[i]
        confidence_true = p_true(judged[i][0][0], judged[i][1][0])
        records.append(
            {
                "id": q.id,
                "category": q.category,
                "question": q.question,
                "references": list(q.references),
                "answer": texts[i].strip(),
                "samples": [s[i].strip() for s in sampled],
                "abstained": abstains(texts[i]),
                "correct": answer_matches(texts[i], q.references) and not abstains(texts[i]),
                "sequence_nll": sequence_nll(logps),
                "perplexity": perplexity(logps),
                "mean_token_entropy": mean_token_entropy(entropies),
                "one_minus_p_true": 1 - confidence_true,
                "semantic_entropy": semantic_entropy([s[i] for s in sampled]) if samples else math.nan,
            }
        )
    return records


def summarize_qa(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy (an abstention counts as not right), the answer rate and the accuracy of the answered, each
    uncertainty's AUROC / PRR / AURC for wrong answers, and the probabilities' ECE."""
    right = [bool(r["correct"]) for r in records]
    answered = [bool(r["correct"]) for r in records if not r.get("abstained")]
    scores: dict[str, Any] = {}
    for name in UNCERTAINTIES:
        stored = [r.get(name) for r in records]
        if any(v is None or math.isnan(v) for v in stored):  # NaN is stored as null: a resumed run reads None
            continue
        values = [float(v) for v in stored if v is not None]
        scores[name] = {
            "auroc_wrong": auroc_for_errors(values, right),
            "prr": prediction_rejection_ratio(values, right),
            "aurc": risk_coverage([-v for v in values], right)[2],
        }
    calibration = {}
    for name, source in CONFIDENCES.items():
        confidence = [1 - r[source] if source == "one_minus_p_true" else math.exp(-r[source]) for r in records]
        calibration[name] = {
            "ece": expected_calibration_error(confidence, right),
            "reliability": [asdict(b) for b in reliability_bins(confidence, right)],
        }
    return {
        "n": len(records),
        "accuracy": rate(right).to_dict(),
        "answer_rate": rate([not r.get("abstained") for r in records]).to_dict(),
        "accuracy_answered": rate(answered).to_dict(),
        "uncertainty": scores,
        "calibration": calibration,
    }
