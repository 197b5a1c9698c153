"""Text features for the guard's embedding detectors: the packaged MiniLM's mean-pooled hidden states of every
layer, each L2-normalised, from one forward pass.

``encode(texts) -> [N, layers + 1, 384]``. Row ``-1`` (the last layer) is exactly the model's sentence
embedding (its sentence-transformers recipe: mean pooling, then normalisation), which the jailbreak index
compares by cosine; the harmful-request classifier reads layers 1-6 concatenated. Probing work finds
intermediate layers carry more of a request's intent than the last one alone; on tether's calibration split
the six layers together lifted recall at 1% false-positive rate from 90% (last layer) to 98%
(``benchmarks/guard_quality.py`` measures it on data not used for training or calibration).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

FEATURES = "minilm-l6-meanpool-all-layers"
"""Named in every artifact, so a file built on other features is refused at load time."""


class LayerEncoder:
    def __init__(self, model_dir: str | Path | None = None, *, max_length: int = 256, batch_size: int = 64) -> None:
        from transformers import AutoModel, AutoTokenizer

        from tether.judges.embedding import embedder_dir
        from tether.models.weights import SAFE_LOAD, require_safetensors

        path = Path(model_dir) if model_dir is not None else embedder_dir()
        require_safetensors(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path, **SAFE_LOAD).eval()
        self.max_length = max_length
        self.batch_size = batch_size

    @property
    def shape(self) -> tuple[int, int]:
        config = self.model.config
        return int(config.num_hidden_layers) + 1, int(config.hidden_size)

    def __call__(self, texts: Sequence[str]) -> Any:
        import torch

        out = torch.empty(len(texts), *self.shape)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**batch, output_hidden_states=True).hidden_states
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden[0].dtype)
                pooled = torch.stack([(h * mask).sum(1) / mask.sum(1).clamp(min=1) for h in hidden], dim=1)
                out[idx] = torch.nn.functional.normalize(pooled, dim=-1)
        return out


@lru_cache(maxsize=1)
def default_encoder() -> LayerEncoder:
    """One shared encoder per process."""
    return LayerEncoder()


def sentence_embedding(features: Any) -> Any:
    """``[N, layers + 1, D] -> [N, D]``: the last layer (the model's own sentence embedding)."""
    return features[:, -1, :]


def probe_features(features: Any) -> Any:
    """``[N, layers + 1, D] -> [N, layers * D]``: every layer after the token embeddings, concatenated."""
    return features[:, 1:, :].flatten(1)
