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
from typing import Any

from tether.judges.embedding import SentenceEmbedder

FEATURES = "minilm-l6-meanpool-all-layers"
"""Named in every artifact, so a file built on other features is refused at load time."""


class LayerEncoder(SentenceEmbedder):
    """``encoder(texts) -> [N, layers + 1, D]`` (:meth:`SentenceEmbedder.embed_layers`)."""

    @property
    def shape(self) -> tuple[int, int]:
        return self.layers, self.dim

    def __call__(self, texts: Sequence[str]) -> Any:
        return self.embed_layers(texts)


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
