"""Standard generative safety classifiers as judges: a format (:mod:`~tether.judges.guard_formats`) and a
backend that completes raw prompt text.

Backends: :class:`LocalCompleter` loads the classifier here with transformers (safetensors only, remote
code off; vLLM generates where it can run, see :mod:`tether.generation.factory`); :class:`EndpointCompleter`
sends the rendered text to an OpenAI-compatible ``/completions`` endpoint (e.g. ``vllm serve
meta-llama/Llama-Guard-3-8B``), so the server applies no chat template and the model sees exactly the
published format. Decoding is greedy. ShieldGemma is scored by p(Yes) against p(No) at the first answer
token: the logits locally, the top log-probabilities from an endpoint.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from tether.judges.guard_formats import HARMFUL, GenerativeFormat, Question, YesNoFormat
from tether.judges.verdict import Verdict, unscored

Completion = tuple[str, str | None]
"""(text, error): the completion, or an empty text and why the request failed."""
YesProbability = tuple[float | None, str | None]


class Completer(Protocol):
    where: str

    def complete(self, prompts: Sequence[str], max_new_tokens: int) -> list[Completion]: ...

    def yes_probabilities(self, prompts: Sequence[str]) -> list[YesProbability]: ...


def yes_probability(yes: float | None, no: float | None) -> float | None:
    """softmax over the two answer tokens' log-probabilities (a missing one counts as -inf)."""
    if yes is None and no is None:
        return None
    a, b = (-math.inf if yes is None else yes), (-math.inf if no is None else no)
    top = max(a, b)
    return math.exp(a - top) / (math.exp(a - top) + math.exp(b - top))


class LocalCompleter:
    """Greedy completions of raw prompts by a model loaded on this machine (a GPU when one is visible).

    Generation runs on vLLM where it can (installed, a CUDA GPU, a model folder), without loading the
    model into transformers as well; the transformers model is loaded when vLLM cannot run, or for
    ShieldGemma's p(Yes), which needs the logits.
    """

    def __init__(self, spec: str, *, batch_size: int = 8, trust_remote_code: bool = False) -> None:
        from tether.models.loading import load_tokenizer, resolve

        self.spec = spec
        self.where = f"local {spec}"
        self.trust_remote_code = trust_remote_code
        self.tokenizer = load_tokenizer(spec, trust_remote_code=trust_remote_code)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        folder = resolve(spec)
        self.folder = folder if os.path.isdir(folder) else None
        self.batch_size = batch_size
        self._model: Any = None
        self._engine: Any = None

    @property
    def model(self) -> Any:
        if self._model is None:
            import torch

            from tether.models.loading import load_model

            cuda = torch.cuda.is_available()
            dtype = "bfloat16" if cuda else "float32"
            self._model = load_model(self.spec, dtype=dtype, trust_remote_code=self.trust_remote_code).eval()
            if cuda:
                self._model.to("cuda")
        return self._model

    @property
    def engine(self) -> Any:
        if self._engine is None:
            from tether.generation.engine import GenerationEngine
            from tether.generation.factory import vllm_problem
            from tether.generation.vllm_backend import VLLMEngine

            if self.folder is not None and vllm_problem(self.folder) is None:
                self._engine = VLLMEngine(self.folder, self.tokenizer)
            else:
                self._engine = GenerationEngine(self.model, self.tokenizer, batch_size=self.batch_size)
        return self._engine

    def _ids(self, prompt: str) -> list[int]:
        return list(self.tokenizer(prompt, add_special_tokens=True)["input_ids"])

    def complete(self, prompts: Sequence[str], max_new_tokens: int) -> list[Completion]:
        from tether.generation import SamplingParams

        ids = self.engine.generate_from_ids([self._ids(p) for p in prompts], SamplingParams(max_new_tokens))
        return [(self.tokenizer.decode(i, skip_special_tokens=True), None) for i in ids]

    def yes_probabilities(self, prompts: Sequence[str]) -> list[YesProbability]:
        import torch

        vocab = self.tokenizer.get_vocab()
        yes, no = vocab.get("Yes"), vocab.get("No")
        if yes is None or no is None:
            return [(None, "the tokenizer has no 'Yes'/'No' tokens")] * len(prompts)
        device = next(self.model.parameters()).device
        out: list[YesProbability] = []
        with torch.no_grad():
            for start in range(0, len(prompts), self.batch_size):
                encoded = [self._ids(p) for p in prompts[start : start + self.batch_size]]
                width = max(map(len, encoded))
                ids = torch.full((len(encoded), width), self.tokenizer.pad_token_id, dtype=torch.long)
                mask = torch.zeros_like(ids)
                for row, seq in enumerate(encoded):  # left padding: the last position is each prompt's end
                    ids[row, width - len(seq) :] = torch.tensor(seq)
                    mask[row, width - len(seq) :] = 1
                positions = (mask.cumsum(-1) - 1).clamp(min=0)  # as generate does: padding shifts no position
                logits = (
                    self.model(
                        input_ids=ids.to(device),
                        attention_mask=mask.to(device),
                        position_ids=positions.to(device),
                        logits_to_keep=1,  # only the next token's logits
                    )
                    .logits[:, -1]
                    .float()
                )
                pair = torch.softmax(logits[:, [yes, no]], dim=-1)[:, 0]
                out.extend((float(p), None) for p in pair.tolist())
        return out


class EndpointCompleter:
    """Greedy completions through ``POST {base_url}/completions`` of an OpenAI-compatible server."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str,
        timeout: float = 60.0,
        retries: int = 2,
        concurrency: int = 4,
        client: Any = None,
    ) -> None:
        if client is None:
            from tether.targets import openai_client

            client = openai_client(base_url, os.environ.get(api_key_env), timeout=timeout, retries=retries)
        self.client = client
        self.model = model
        self.concurrency = concurrency
        self.where = f"endpoint {model}@{base_url}"

    def _request(self, prompt: str, max_tokens: int, logprobs: int | None = None) -> Any:
        return self.client.completions.create(
            model=self.model, prompt=prompt, max_tokens=max_tokens, temperature=0, logprobs=logprobs
        )

    def _map(self, fn: Any, prompts: Sequence[str]) -> list[Any]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(fn, prompts))

    def complete(self, prompts: Sequence[str], max_new_tokens: int) -> list[Completion]:
        def one(prompt: str) -> Completion:
            try:
                return self._request(prompt, max_new_tokens).choices[0].text or "", None
            except Exception as err:  # any transport or API failure is a could-not-score, with its reason
                return "", f"judge endpoint error: {type(err).__name__}: {err}"[:300]

        return self._map(one, prompts)

    def yes_probabilities(self, prompts: Sequence[str]) -> list[YesProbability]:
        def one(prompt: str) -> YesProbability:
            try:
                choice = self._request(prompt, 1, logprobs=20).choices[0]
            except Exception as err:
                return None, f"judge endpoint error: {type(err).__name__}: {err}"[:300]
            top = (choice.logprobs.top_logprobs or [{}])[0] if choice.logprobs is not None else {}
            best = {
                word: max((lp for tok, lp in top.items() if tok.strip() == word), default=None)
                for word in ("Yes", "No")
            }
            p = yes_probability(best["Yes"], best["No"])
            if p is None:  # no log-probabilities returned: the generated word decides
                word = (choice.text or "").strip()
                p = 1.0 if word.startswith("Yes") else 0.0 if word.startswith("No") else None
            return (p, None) if p is not None else (None, f"reply is neither Yes nor No: {choice.text!r}")

        return self._map(one, prompts)


class GenerativeJudge:
    """``judge_many([(request, response), ...]) -> [Verdict, ...]`` with one standard classifier."""

    def __init__(self, fmt: GenerativeFormat, question: Question, completer: Completer) -> None:
        if question not in fmt.answers:
            raise ValueError(f"{fmt.name} does not answer the {question} question")
        self.fmt = fmt
        self.question = question
        self.completer = completer

    @property
    def name(self) -> str:
        return self.fmt.name

    def judge_many(self, pairs: Sequence[tuple[str, str]]) -> list[Verdict]:
        verdicts: list[Verdict | None] = [
            unscored("empty answer", self.name) if not response.strip() else None for _, response in pairs
        ]
        todo = [i for i, v in enumerate(verdicts) if v is None]
        rendered = [self.fmt.render(*pairs[i]) for i in todo]
        flat = [text for texts in rendered for text in texts]
        if not flat:  # nothing to ask: no model is loaded
            return [v for v in verdicts if v is not None]
        if isinstance(self.fmt, YesNoFormat) and self.fmt.policies:
            scores = iter(self.completer.yes_probabilities(flat))
            for i, texts in zip(todo, rendered, strict=True):
                got = [next(scores) for _ in texts]
                errors = [e for _, e in got if e]
                verdict = self.fmt.from_yes_probabilities([p for p, _ in got])
                # a policy that could not be scored might have been the violated one: only a violation
                # found among the others decides; otherwise the answer is unscored
                if errors and verdict.label != HARMFUL:
                    verdict = unscored(f"{len(errors)} of {len(texts)} policies unscored: {errors[0]}", self.name)
                verdicts[i] = verdict
        else:
            for i, (text, error) in zip(todo, self.completer.complete(flat, self.fmt.max_new_tokens), strict=True):
                verdicts[i] = unscored(error, self.name) if error else self.fmt.parse(text, self.question)
        return [v for v in verdicts if v is not None]
