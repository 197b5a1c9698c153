"""Blocklist: configured words and phrases (whole words, case-insensitive by default) and regular expressions."""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field, field_validator

from tether.config.options import Options
from tether.guard.detection import Span
from tether.guard.detectors.base import ViewDetector, register


class BlocklistOptions(Options):
    words: list[str] = Field(default_factory=list)
    """Words or phrases, matched as whole words (``kill`` does not match ``skills``)."""
    patterns: list[str] = Field(default_factory=list)
    """Python regular expressions, searched anywhere in the text."""
    case_sensitive: bool = False
    """Match letter case exactly."""

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {err}") from None
        return patterns


@register
class Blocklist(ViewDetector):
    name: ClassVar[str] = "blocklist"
    summary: ClassVar[str] = "configured words (whole words) and regular expressions"
    finds_spans: ClassVar[bool] = True
    Options = BlocklistOptions

    def __init__(self, options: BlocklistOptions | None = None, *, threshold: float | None = None) -> None:
        super().__init__(options, threshold=threshold)
        opts: BlocklistOptions = self.options  # type: ignore[assignment]
        flags = 0 if opts.case_sensitive else re.IGNORECASE
        words = [rf"(?<!\w){re.escape(w)}(?!\w)" for w in opts.words if w.strip()]
        # Words in one alternation; each pattern compiled on its own, so its inline flags ("(?i)...") stay valid.
        self._patterns = ([re.compile("|".join(words), flags)] if words else []) + [
            re.compile(p, flags) for p in opts.patterns
        ]

    def score_text(self, text: str) -> tuple[float, str, tuple[Span, ...]]:
        if not self._patterns:
            return 0.0, "empty blocklist", ()
        spans = tuple(
            sorted(
                (
                    Span(m.start(), m.end(), "BLOCKLIST")
                    for p in self._patterns
                    for m in p.finditer(text)
                    if m.end() > m.start()
                ),
                key=lambda s: s.start,
            )
        )
        if not spans:
            return 0.0, "nothing found", ()
        first = text[spans[0].start : spans[0].end]
        return 1.0, f"blocklisted {first!r}" + (f" and {len(spans) - 1} more" if len(spans) > 1 else ""), spans
