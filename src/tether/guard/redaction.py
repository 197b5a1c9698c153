"""What the store writes is masked first: PII (Presidio) and secrets, whatever the rails were configured to do."""

from __future__ import annotations

from tether.guard.detectors import build_detector
from tether.guard.masking import mask


class Redactor:
    def __init__(self, key: str | None = None) -> None:
        self.pii = build_detector("pii")
        self.secrets = build_detector("secrets")
        self.key = key

    def warm_up(self) -> None:
        self.pii.warm_up()
        self.secrets.warm_up()

    def __call__(self, text: str | None) -> str | None:
        if not text:
            return text
        spans = list(self.pii.find(text)) + list(self.secrets.score_text(text)[2])  # type: ignore[attr-defined]
        return mask(text, spans, key=self.key) if spans else text
