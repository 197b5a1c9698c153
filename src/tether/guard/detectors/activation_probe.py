"""A linear probe on a language model's own residual stream, trained by `tether interp probe`.

The request is written as a user turn in the probed model's chat template (assistant turn opened), run
through that model once, and the probe reads the activation at its site and position rule
(:mod:`tether.interp.probes`): ``p = sigmoid(w . (x - m) / s + b)``. The threshold is the file's, set at 1%
false-positive rate on held-out harmless instructions, unless the rail sets one.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from tether.config.options import Options
from tether.guard.detection import Span
from tether.guard.detectors.base import Detector, Sample, register


class ActivationProbeOptions(Options):
    artifact: Path
    """probe.safetensors written by `tether interp probe` (it names the model, site and position it reads)."""
    max_chars: int = Field(8000, ge=1)
    """Read at most the first N characters of a request (a longer one costs one forward pass of this much)."""


@register
class ActivationProbe(Detector):
    name: ClassVar[str] = "activation_probe"
    summary: ClassVar[str] = (
        "linear probe on the residual stream of a local LM: harmful requests (`tether interp probe`)"
    )
    sides: ClassVar[tuple[Any, ...]] = ("input",)
    roles: ClassVar[tuple[Any, ...]] = ("user",)
    inline: bool = False
    needs_artifact: ClassVar[bool] = True
    Options = ActivationProbeOptions

    def __init__(self, options: ActivationProbeOptions | None = None, *, threshold: float | None = None) -> None:
        super().__init__(options, threshold=threshold)
        self._explicit_threshold = threshold
        self._loaded: tuple[Any, Any, Any, Any] | None = None
        self.meta: dict[str, Any] = {}
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        with self._lock:
            if self._loaded is not None:
                return
            from tether.errors import ConfigError
            from tether.interp.probes import POSITIVE, load_probe
            from tether.interp.sites import layer_count, parse_site
            from tether.models.loading import load_model, load_tokenizer

            opts: ActivationProbeOptions = self.options  # type: ignore[assignment]
            probe, meta = load_probe(opts.artifact)
            if meta.get("positive") != POSITIVE or "model" not in meta or "site" not in meta:
                raise ConfigError(f"{opts.artifact}: not a {POSITIVE!r} probe naming its model and site")
            spec = dict(revision=meta.get("revision"), trust_remote_code=bool(meta.get("trust_remote_code")))
            model = load_model(meta["model"], dtype=meta.get("dtype", "float32"), **spec).eval()  # type: ignore[arg-type]
            tokenizer = load_tokenizer(meta["model"], **spec)  # type: ignore[arg-type]
            site = parse_site(meta["site"], layer_count(model))
            if self._explicit_threshold is None:
                self.threshold = float(meta["threshold"])
            self.meta = meta
            self._loaded = (probe, model, tokenizer, site)

    def score(self, sample: Sample) -> tuple[float, str, str, tuple[Span, ...]]:
        self.warm_up()
        assert self._loaded is not None
        from tether.interp.probes import features

        probe, model, tokenizer, site = self._loaded
        opts: ActivationProbeOptions = self.options  # type: ignore[assignment]
        x = features(
            model, tokenizer, [sample.text], [site], self.meta.get("position", "last"), max_chars=opts.max_chars
        )
        p = float(probe.proba(x[site].double().numpy())[0])
        return p, f"p(harmful request) = {p:.2f} ({self.meta['site']} probe)", "text", ()
