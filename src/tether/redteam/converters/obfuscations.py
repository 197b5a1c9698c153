"""Obfuscations that keep the text readable to a model but not to a filter: spacing, confusable
characters, zero-width characters."""

from __future__ import annotations

import random

from tether.errors import ConfigError, TetherError
from tether.redteam.converters.registry import Converter, register_converter


@register_converter("char_spacing")
class CharSpacing(Converter):
    """Put ``separator`` (a space by default) between every two characters."""

    reversible = True

    def __init__(self, *, separator: str = " ") -> None:
        if not separator:
            raise ConfigError("char_spacing needs a non-empty separator", field="separator")
        self.separator = separator

    def convert(self, text: str) -> str:
        return self.separator.join(text)

    def decode(self, text: str) -> str:
        step = len(self.separator) + 1
        chars = text[::step]
        if self.separator.join(chars) != text:
            raise TetherError(f"text was not spaced with {self.separator!r}, so it cannot be decoded")
        return chars


def _check_rate(rate: float) -> float:
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"rate must be between 0 and 1, got {rate}", field="rate")
    return rate


CONFUSABLES: dict[str, str] = {
    "a": "\u0430",  # Cyrillic а
    "c": "\u0441",  # Cyrillic с
    "e": "\u0435",  # Cyrillic е
    "h": "\u04bb",  # Cyrillic һ
    "i": "\u0456",  # Cyrillic і
    "j": "\u0458",  # Cyrillic ј
    "o": "\u043e\u03bf",  # Cyrillic о, Greek ο
    "p": "\u0440",  # Cyrillic р
    "s": "\u0455",  # Cyrillic ѕ
    "x": "\u0445",  # Cyrillic х
    "y": "\u0443",  # Cyrillic у
    "A": "\u0410\u0391",  # Cyrillic А, Greek Α
    "B": "\u0412\u0392",
    "C": "\u0421",
    "E": "\u0415\u0395",
    "H": "\u041d\u0397",
    "I": "\u0406\u0399",
    "J": "\u0408",
    "K": "\u041a\u039a",
    "M": "\u041c\u039c",
    "N": "\u039d",
    "O": "\u041e\u039f",
    "P": "\u0420\u03a1",
    "S": "\u0405",
    "T": "\u0422\u03a4",
    "X": "\u0425\u03a7",
    "Y": "\u04ae\u03a5",
    "Z": "\u0396",
}
"""Latin letter -> its Cyrillic/Greek look-alikes (each look-alike stands for exactly one Latin letter)."""
_FROM_CONFUSABLE = str.maketrans({alike: latin for latin, alikes in CONFUSABLES.items() for alike in alikes})


@register_converter("confusables")
class Confusables(Converter):
    """Swap a share (``rate``) of Latin letters for Cyrillic/Greek look-alikes (homoglyphs), seeded.

    At least one letter is swapped whenever the text has a swappable letter and ``rate > 0``, so the output
    always differs from the input when it can.
    """

    reversible = True

    def __init__(self, *, rate: float = 0.5, seed: int = 0) -> None:
        self.rate, self.seed = _check_rate(rate), seed

    def convert(self, text: str) -> str:
        rng = random.Random(self.seed)
        chars = list(text)
        candidates = [i for i, c in enumerate(chars) if c in CONFUSABLES]
        chosen = [i for i in candidates if rng.random() < self.rate]
        if not chosen and candidates and self.rate > 0:
            chosen = [rng.choice(candidates)]
        for i in chosen:
            chars[i] = rng.choice(CONFUSABLES[chars[i]])
        return "".join(chars)

    def decode(self, text: str) -> str:
        return text.translate(_FROM_CONFUSABLE)


ZERO_WIDTH = "\u200b\u200c\u200d\u2060"
"""Zero-width space, non-joiner, joiner and word joiner."""


@register_converter("zero_width")
class ZeroWidth(Converter):
    """Insert invisible zero-width characters between characters (each gap with probability ``rate``), seeded.

    At least one is inserted whenever the text has two characters and ``rate > 0``.
    """

    reversible = True

    def __init__(self, *, rate: float = 1.0, seed: int = 0) -> None:
        self.rate, self.seed = _check_rate(rate), seed

    def convert(self, text: str) -> str:
        rng = random.Random(self.seed)
        gaps = [i for i in range(1, len(text)) if rng.random() < self.rate]
        if not gaps and len(text) > 1 and self.rate > 0:
            gaps = [rng.randrange(1, len(text))]
        out, last = [], 0
        for i in gaps:
            out += [text[last:i], rng.choice(ZERO_WIDTH)]
            last = i
        return "".join([*out, text[last:]])

    def decode(self, text: str) -> str:
        return text.translate({ord(c): None for c in ZERO_WIDTH})
