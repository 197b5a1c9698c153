"""Normalisation before any detector: one canonical reading of a text, plus every payload decoded from it.

``canonical(text)``: Unicode NFKC (full-width and compatibility forms to their plain letters), then every
invisible format character removed (category ``Cf``: zero-width space/joiners, word joiner, bidi controls,
soft hyphen, tag characters), then homoglyphs folded to the Latin letter they imitate, using Unicode's
confusables table (UTS #39, as shipped by ``confusable-homoglyphs``) in words that mix scripts or in a text
that is mostly Latin, so Cyrillic or Greek prose is left as it is.

``views(text)``: the text as written, its canonical form, then readings of it with encoded payloads decoded in
place, each named by its encoding: ``base64`` and ``hex`` runs that decode to printable UTF-8, ``rot13`` when it turns
the text into more common English words than it had, ``leetspeak`` when words mix letters and digits,
``spacing`` for letters spaced apart, ``morse`` for runs of dots and dashes. (Pig Latin and translations are
not decoded: the embedding detectors see them as they are.)
Decoded readings are scanned again (``depth`` levels), so a base64 payload of ROT13 text is read too.
Detectors run on every view; the pipeline keeps the strongest finding and names the view it came from.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class View:
    """One reading of a text: ``how`` names the decodings applied (``text``, ``base64``, ``base64+rot13``)."""

    how: str
    text: str


@lru_cache(maxsize=1)
def _homoglyph_table() -> dict[int, str]:
    """Non-ASCII character -> the ASCII letter or digit Unicode lists as its confusable."""
    from confusable_homoglyphs import confusables

    table: dict[int, str] = {}
    for char, alikes in confusables.confusables_data.items():
        if len(char) != 1 or char.isascii():
            continue
        targets = [a["c"] for a in alikes if len(a["c"]) == 1 and a["c"].isascii() and a["c"].isalnum()]
        if targets:
            # Prefer the letter the character is named after (Cyrillic "... I" -> I, not the look-alike l).
            name = unicodedata.name(char, "").split()
            named = name[-1] if name and len(name[-1]) == 1 and name[-1].isascii() and name[-1].isalpha() else ""
            named = named.lower() if "SMALL" in name else named
            table[ord(char)] = named or targets[0]
    return table


_WORDS = re.compile(r"\w+")


def _fold_homoglyphs(text: str) -> str:
    if text.isascii():
        return text
    table = _homoglyph_table()
    letters = [c for c in text if c.isalpha()]
    mostly_latin = sum(c.isascii() for c in letters) * 2 >= len(letters)

    def fold(match: re.Match[str]) -> str:
        word = match.group()
        if word.isascii() or not any(ord(c) in table for c in word):
            return word
        if mostly_latin or any(c.isascii() and c.isalpha() for c in word):
            return word.translate(table)
        return word

    return _WORDS.sub(fold, text)


def canonical(text: str) -> str:
    """NFKC, invisible characters removed, homoglyphs folded (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text)
    if not text.isascii():
        text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return _fold_homoglyphs(text)


def _printable(decoded: str) -> bool:
    if not decoded.strip():
        return False
    good = sum(c.isprintable() or c in "\n\t\r" for c in decoded)
    return good >= 0.95 * len(decoded) and sum(c.isalpha() for c in decoded) >= 0.5 * len(decoded.replace(" ", ""))


_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}[ :]?){8,}(?![0-9A-Fa-f])")


def _decode_base64(token: str) -> str | None:
    if token.isalpha() or token.isdigit():  # a long word or number, not a payload
        return None
    body = token.rstrip("=")
    padded = body + "=" * (-len(body) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        decoded = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return decoded if _printable(decoded) else None


def _decode_hex(token: str) -> str | None:
    digits = re.sub(r"[ :]", "", token)
    if len(digits) % 2:
        return None
    try:
        decoded = bytes.fromhex(digits).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    return decoded if _printable(decoded) else None


def _replace_payloads(text: str, pattern: re.Pattern[str], decode) -> str | None:  # type: ignore[no-untyped-def]
    found = False

    def swap(match: re.Match[str]) -> str:
        nonlocal found
        decoded = decode(match.group().strip())
        if decoded is None:
            return match.group()
        found = True
        return decoded + (" " if match.group().endswith(" ") else "")

    out = pattern.sub(swap, text)
    return out if found else None


_COMMON = """the a an and or of to in on for with is are was be how what why who can do does i you me my it this
that make get write give tell explain step steps your from by at as not"""
COMMON_WORDS = frozenset(_COMMON.split())
"""Frequent English words: a ROT13 reading is kept when it holds more of them than the text did."""


def _common_words(text: str) -> int:
    return sum(w in COMMON_WORDS for w in re.findall(r"[a-z]+", text.lower()))


_CLAUSES = re.compile(r"[^:.?!\n]+|[:.?!\n]+")


def _rot13(text: str) -> str | None:
    """Each clause that reads as more common English in ROT13 than as written is decoded."""
    found = False

    def clause(part: str) -> str:
        nonlocal found
        decoded = codecs.encode(part, "rot13")
        after = _common_words(decoded)
        if after >= 2 and after > 2 * _common_words(part):
            found = True
            return decoded
        return part

    out = "".join(clause(part) for part in _CLAUSES.findall(text))
    return out if found else None


_LEET = str.maketrans({"4": "a", "@": "a", "3": "e", "1": "i", "!": "i", "0": "o", "5": "s", "$": "s", "7": "t"})
_MIXED = re.compile(r"(?<![\w@$!])(?=[\w@$!]*[A-Za-z])(?=[\w@$!]*[0-9@$])[\w@$!]{2,15}(?![\w@$!])")
_LEET_WORD = re.compile(r"(?<![\w@$!])(?=[\w@$!]*[0-9@$!])[\w@$!]{1,15}(?![\w@$!])")
_NOT_LEET = re.compile(r"[0-9A-Fa-f]{2}|[A-Za-z]+[0-9]+|[0-9]+[A-Za-z]{1,2}")
"""Hex pairs, names with a number (base64, ROT13, GPT4) and quantities (10kg, 3rd) are not leetspeak."""


def _leetspeak(text: str) -> str | None:
    mixed = [w for w in _MIXED.findall(text) if not _NOT_LEET.fullmatch(w)]
    if len(mixed) < 2:
        return None
    # Once the text is leetspeak, short all-digit words are letters too ("4" a, "47" at).
    return _LEET_WORD.sub(lambda m: m.group().translate(_LEET), text)


_SPACED = re.compile(r"(?<!\S)(?:\S {1,3}){5,}\S(?!\S)")


def _unspace(text: str) -> str | None:
    """Characters spaced apart ("h o w   d o"): one space inside a word, three or more between words."""

    def join(match: re.Match[str]) -> str:
        return " ".join(word.replace(" ", "") for word in re.split(r" {2,}", match.group()))

    out = _SPACED.sub(join, text)
    return out if out != text else None


_MORSE_RUN = re.compile(r"(?:[.\-]{1,7}[ /]+){3,}[.\-]{1,7}")


def _morse(text: str) -> str | None:
    from tether.redteam.converters.encodings import MORSE

    table = {code: char for char, code in MORSE.items()}

    def decode(match: re.Match[str]) -> str:
        words = re.split(r"\s*/\s*", match.group().strip())
        return " ".join("".join(table.get(code, "?") for code in word.split()) for word in words)

    out = _MORSE_RUN.sub(decode, text)
    return out if out != text else None


DECODERS = {
    "base64": lambda t: _replace_payloads(t, _BASE64, _decode_base64),
    "hex": lambda t: _replace_payloads(t, _HEX, _decode_hex),
    "rot13": _rot13,
    "leetspeak": _leetspeak,
    "spacing": _unspace,
    "morse": _morse,
}
"""Encoding name -> ``decode(text) -> decoded reading, or None when the text holds no such payload``."""


def views(text: str, *, depth: int = 2, decoders: tuple[str, ...] = tuple(DECODERS)) -> list[View]:
    """The text as written (``text``), its canonical form when that differs (``normalized``), then each
    reading decoded from the canonical form (distinct texts only), breadth first."""
    out = [View("text", text)]
    first = View("normalized", canonical(text))
    if first.text != text:
        out.append(first)
    seen, frontier = {text, first.text}, [first]
    for _ in range(depth):
        nxt = []
        for view in frontier:
            for name in decoders:
                decoded = DECODERS[name](view.text)
                if decoded is None:
                    continue
                decoded = canonical(decoded)
                if decoded in seen:
                    continue
                seen.add(decoded)
                how = name if view.how == "normalized" else f"{view.how}+{name}"
                nxt.append(View(how, decoded))
        out += nxt
        frontier = nxt
    return out
