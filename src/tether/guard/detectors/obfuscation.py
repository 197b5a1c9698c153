"""Obfuscation: the text hides something from a plain reading (invisible characters, homoglyphs, encoded
payloads). Flags when normalisation changed the text or a decoder found a payload, and names what it found.
Other detectors already read every decoded view; this rail records *that* the text was obfuscated (a log-only
rail by default in the shipped configs), which is itself a signal of an attack."""

from __future__ import annotations

import unicodedata
from typing import ClassVar

from tether.guard.detection import Span
from tether.guard.detectors.base import Detector, Sample, register


@register
class Obfuscation(Detector):
    name: ClassVar[str] = "obfuscation"
    summary: ClassVar[str] = "invisible characters, homoglyphs or encoded payloads (base64, ROT13, hex, leetspeak)"
    sides: ClassVar[tuple[str, ...]] = ("input",)  # type: ignore[assignment]

    def score(self, sample: Sample) -> tuple[float, str, str, tuple[Span, ...]]:
        found = []
        invisible = sum(unicodedata.category(c) == "Cf" for c in sample.text) if not sample.text.isascii() else 0
        if invisible:
            found.append(f"{invisible} invisible character(s)")
        hows = [v.how for v in sample.views]
        if "normalized" in hows and not invisible:
            found.append("compatibility forms or homoglyphs")
        decoded = [h for h in hows if h not in ("text", "normalized")]
        if decoded:
            found.append("decoded payloads: " + ", ".join(decoded))
        if not found:
            return 0.0, "plain text", "text", ()
        return 1.0, "; ".join(found), decoded[0] if decoded else "normalized", ()
