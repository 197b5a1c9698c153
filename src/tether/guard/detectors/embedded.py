"""Detectors on the packaged MiniLM's features: jailbreak similarity, and linear probes for harmful requests
and for jailbreaks.

Both read a file made by ``tether guard train`` (:mod:`tether.guard.train`) and score every view of the text
(decoded payloads included), each long view in windows of ``WINDOW_CHARS`` characters so that a payload
after a long harmless preamble is not cut off by the model's 256-token limit. One view's embeddings are
computed once per check and shared by both detectors (:class:`~tether.guard.detectors.base.EmbeddingCache`).
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from tether.config.options import Options
from tether.guard.detection import Span
from tether.guard.detectors.base import Detector, EmbeddingCache, Sample, register
from tether.guard.normalize import View

if TYPE_CHECKING:
    import torch

WINDOW_CHARS = 1000
MAX_WINDOWS = 4


def windows(text: str) -> list[str]:
    """The text itself, plus overlapping windows of a long text (at most ``MAX_WINDOWS``, the last one last)."""
    if len(text) <= WINDOW_CHARS:
        return [text]
    step = WINDOW_CHARS // 2
    starts = list(range(0, len(text) - step, step))
    if len(starts) > MAX_WINDOWS:
        starts = [*starts[: MAX_WINDOWS - 1], len(text) - WINDOW_CHARS]
    return [text] + [text[s : s + WINDOW_CHARS] for s in starts if s > 0]


def readable_views(views: list[View]) -> list[View]:
    """The views an embedding model can read: when a payload was decoded, the decoded readings replace the
    text that still holds it (an encoded string is noise to the encoder, and scoring it flags any encoded
    input, harmless or not); otherwise the text and its normal form."""
    decoded = [v for v in views if v.how not in ("text", "normalized")]
    return decoded or views


def default_cache() -> EmbeddingCache:
    from tether.guard.encoder import default_encoder

    return EmbeddingCache(default_encoder())


class ArtifactOptions(Options):
    artifact: Path
    """The file `tether guard train` wrote for this detector (jailbreak_index.safetensors,
    request_classifier.safetensors)."""


class EmbeddingDetector(Detector):
    kind: ClassVar[str]
    roles: ClassVar[tuple[Any, ...]] = ("user",)
    inline: bool = False
    needs_artifact: ClassVar[bool] = True
    Options = ArtifactOptions

    def __init__(self, options: ArtifactOptions | None = None, *, threshold: float | None = None) -> None:
        super().__init__(options, threshold=threshold)
        self._explicit_threshold = threshold
        self._tensors: dict[str, Any] | None = None
        self.meta: dict[str, Any] = {}
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        with self._lock:
            if self._tensors is None:
                from tether.guard.artifacts import load_artifact

                opts: ArtifactOptions = self.options  # type: ignore[assignment]
                from tether.guard.encoder import FEATURES, default_encoder

                tensors, self.meta = load_artifact(opts.artifact, self.kind)
                if self.meta.get("features") != FEATURES:
                    from tether.errors import ConfigError

                    raise ConfigError(
                        f"{opts.artifact}: built on features {self.meta.get('features')!r}, this tether reads "
                        f"{FEATURES!r}; rebuild it with `tether guard train`"
                    )
                self._tensors = {k: v.float() for k, v in tensors.items()}
                if self._explicit_threshold is None:
                    self.threshold = float(self.meta["threshold"])
                default_encoder()

    @staticmethod
    def texts(sample: Sample) -> tuple[list[str], list[str]]:
        """The windows of every readable view, and the view each came from."""
        texts, hows = [], []
        for view in readable_views(sample.views):
            for window in windows(view.text):
                texts.append(window)
                hows.append(view.how)
        return texts, hows

    @classmethod
    def prepare(cls, sample: Sample) -> None:
        """Encode the sample's texts now (the pipeline does, once, before its embedding rails run)."""
        if sample.embed is None:
            sample.embed = default_cache()
        sample.embed(cls.texts(sample)[0])

    def score(self, sample: Sample) -> tuple[float, str, str, tuple[Span, ...]]:
        self.warm_up()
        if sample.embed is None:
            sample.embed = default_cache()
        texts, hows = self.texts(sample)
        scores, reasons = self.score_embeddings(sample.embed(texts))
        best = int(scores.argmax())
        return float(scores[best]), reasons[best], hows[best], ()

    @abstractmethod
    def score_embeddings(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
        """(a score per row of ``[N, layers + 1, D]`` features, a reason per row)."""


@register
class JailbreakSimilarity(EmbeddingDetector):
    name: ClassVar[str] = "jailbreak_similarity"
    summary: ClassVar[str] = "cosine similarity (MiniLM) to a corpus of known jailbreaks; calibrated threshold"
    sides: ClassVar[tuple[Any, ...]] = ("input",)
    kind: ClassVar[str] = "jailbreak-index"

    def score_embeddings(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
        assert self._tensors is not None
        from tether.guard.encoder import sentence_embedding

        similarity = sentence_embedding(embeddings) @ self._tensors["embeddings"].T
        best, index = similarity.max(dim=1)
        return best.clamp(min=0), [
            f"cosine {s:.2f} to known jailbreak #{int(i)}" for s, i in zip(best, index, strict=True)
        ]


class LinearProbe(EmbeddingDetector):
    """``sigmoid(w . features + b)`` over the pooled layers, trained by `tether guard train`."""

    kind: ClassVar[str] = "linear-probe"
    positive: ClassVar[str]

    def warm_up(self) -> None:
        super().warm_up()
        if self.meta.get("positive") != self.positive:
            from tether.errors import ConfigError

            opts: ArtifactOptions = self.options  # type: ignore[assignment]
            raise ConfigError(
                f"{self.name}: {opts.artifact} is a probe for {self.meta.get('positive')!r}, not {self.positive!r}"
            )

    def score_embeddings(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
        from tether.guard.encoder import probe_features

        assert self._tensors is not None
        p = (probe_features(embeddings) @ self._tensors["weight"] + self._tensors["bias"]).sigmoid()
        return p, [f"p({self.positive}) = {x:.2f}" for x in p]


@register
class HarmfulRequest(LinearProbe):
    name: ClassVar[str] = "harmful_request"
    summary: ClassVar[str] = "logistic regression on MiniLM layers: harmful vs harmless requests (`tether guard train`)"
    sides: ClassVar[tuple[Any, ...]] = ("input",)
    positive: ClassVar[str] = "harmful request"


@register
class JailbreakClassifier(LinearProbe):
    name: ClassVar[str] = "jailbreak_classifier"
    summary: ClassVar[str] = (
        "logistic regression on MiniLM layers: jailbreak prompts vs harmless (`tether guard train`)"
    )
    sides: ClassVar[tuple[Any, ...]] = ("input",)
    positive: ClassVar[str] = "jailbreak"
