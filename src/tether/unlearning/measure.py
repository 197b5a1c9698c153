"""What a model knows of a fact set: cloze accuracy per split, and membership inference by min-k% probability.

- **Cloze accuracy.** The question in the chat template, the assistant turn opened, then the answer up to
  where the right option starts (:attr:`tether.data.benchmarks.facts.Fact.cloze_prefix`, its trailing space
  left to the scorer, which puts one before each option, so an option's tokens are those the answer was
  trained on); the options are scored by their mean log-prob per token (tether's shared-context scorer,
  :mod:`tether.evals.loglikelihood`) and the highest is the model's pick. Chance is 1 / (number of options).
  The same with the question reworded (``paraphrase``) tests whether what was learned or forgotten goes
  beyond the trained wording.
- **Min-k% probability** (Shi et al. 2024, "Detecting Pretraining Data from Large Language Models",
  arXiv:2310.16789): the mean of the lowest k% token log-probs of the answer given the question; a text seen
  in training scores higher. The membership AUC is the ROC AUC of that score for forget facts (members: they
  were taught) against holdout facts (never trained on): about 1 when the model remembers, about 0.5 when
  forget facts look as unseen as never-seen ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from tether.data.batching import collate
from tether.data.benchmarks.facts import SPLITS, Fact
from tether.data.records import Conversation
from tether.data.samples import ChoiceSample
from tether.data.tokenization import ChatEncoder
from tether.evals.loglikelihood import option_loglikelihoods
from tether.stats import rate
from tether.train.logprobs import final_hidden_states, selected_logprobs


def cloze_samples(tokenizer: Any, facts: Sequence[Fact], *, paraphrase: bool = False) -> list[ChoiceSample]:
    """One multiple-choice sample per fact (module docstring); ``category`` is the fact's split."""
    samples = []
    for fact in facts:
        question = fact.paraphrase if paraphrase else fact.question
        chat = [{"role": "user", "content": question}]
        prompt = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        samples.append(
            ChoiceSample(
                id=fact.id,
                context=prompt + fact.cloze_prefix.rstrip(),
                choices=fact.choices,
                correct=(fact.label,),
                category=fact.split,
                source=fact.source,
            )
        )
    return samples


def cloze_correct(model: Any, tokenizer: Any, samples: Sequence[ChoiceSample], *, batch_size: int = 16) -> list[bool]:
    """Per sample: is the right option the one with the highest mean log-prob per token?"""
    scores = option_loglikelihoods(model, tokenizer, samples, batch_size=batch_size)
    picks = [int(torch.tensor([logp / max(n, 1) for logp, n in options]).argmax()) for options in scores]
    return [pick in sample.correct for pick, sample in zip(picks, samples, strict=True)]


def accuracy_by_split(facts: Sequence[Fact], correct: Sequence[bool]) -> dict[str, dict[str, float]]:
    """Accuracy with its 95% bootstrap interval for each split present."""
    out = {}
    for split in SPLITS:
        flags = [c for f, c in zip(facts, correct, strict=True) if f.split == split]
        if flags:
            out[split] = rate(flags).to_dict()
    return out


@torch.no_grad()
def answer_token_logprobs(
    model: Any, tokenizer: Any, facts: Sequence[Fact], *, batch_size: int = 16
) -> list[list[float]]:
    """log p of each answer token given the question in the chat template (the SFT encoding), per fact."""
    encoder = ChatEncoder(tokenizer)
    examples = [encoder.encode_untruncated(Conversation.from_prompt_completion(f.question, f.answer)) for f in facts]
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    out: list[list[float]] = []
    try:
        for start in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in collate(examples[start : start + batch_size], pad).items()}
            hidden, head = final_hidden_states(model, batch)
            logps, mask = selected_logprobs(hidden, head, batch["labels"])
            out += [part.tolist() for part in logps.split(mask.sum(-1).tolist())]
    finally:
        model.train(was_training)
    return out


def min_k_score(logprobs: Sequence[float], k: float = 0.2) -> float:
    """Mean of the lowest ``ceil(k * n)`` token log-probs (at least one)."""
    if not logprobs:
        raise ValueError("min-k% needs at least one token")
    lowest = sorted(logprobs)[: max(1, math.ceil(k * len(logprobs)))]
    return sum(lowest) / len(lowest)


def membership_auc(members: Sequence[float], non_members: Sequence[float]) -> float | None:
    """ROC AUC of a score that should be higher for members; None without both kinds."""
    if not members or not non_members:
        return None
    from sklearn.metrics import roc_auc_score

    labels = [1] * len(members) + [0] * len(non_members)
    return float(roc_auc_score(labels, [*members, *non_members]))


def measure_facts(
    model: Any, tokenizer: Any, facts: Sequence[Fact], *, k: float = 0.2, batch_size: int = 16
) -> dict[str, Any]:
    """Cloze accuracy per split (question and paraphrase), min-k% scores, and the membership AUCs."""
    correct = cloze_correct(model, tokenizer, cloze_samples(tokenizer, facts), batch_size=batch_size)
    reworded = cloze_correct(model, tokenizer, cloze_samples(tokenizer, facts, paraphrase=True), batch_size=batch_size)
    scores = [min_k_score(lp, k) for lp in answer_token_logprobs(model, tokenizer, facts, batch_size=batch_size)]
    by_split = {s: [x for f, x in zip(facts, scores, strict=True) if f.split == s] for s in SPLITS}
    return {
        "accuracy": accuracy_by_split(facts, correct),
        "paraphrase_accuracy": accuracy_by_split(facts, reworded),
        "chance": sum(1 / len(f.choices) for f in facts) / len(facts),
        "min_k": {"k": k, **{s: sum(v) / len(v) for s, v in by_split.items() if v}},
        "membership_auc": {
            "forget_vs_holdout": membership_auc(by_split["forget"], by_split["holdout"]),
            "retain_vs_holdout": membership_auc(by_split["retain"], by_split["holdout"]),
        },
        "per_fact": [
            {"id": f.id, "split": f.split, "correct": c, "paraphrase_correct": r, "min_k": x}
            for f, c, r, x in zip(facts, correct, reworded, scores, strict=True)
        ],
    }
