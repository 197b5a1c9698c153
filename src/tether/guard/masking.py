"""Masking found spans: ``<EMAIL_ADDRESS>`` (irreversible), or encrypted so that only a key holder can undo it.

``mask(text, spans)`` replaces each span with ``<KIND>``. With a ``key`` (16, 24 or 32 characters: AES-128/
192/256) each span becomes ``<KIND:ciphertext>``, encrypted by Presidio's anonymizer (AES-CBC, random IV);
``unmask(text, key)`` decrypts every such marker and leaves the rest. Without the key the original is gone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tether.errors import ConfigError
from tether.guard.detection import Span, merge_spans

KEY_LENGTHS = (16, 24, 32)
_ENCRYPTED = re.compile(r"<([A-Z][A-Z0-9_]*):([A-Za-z0-9_=+/-]+)>")


def check_key(key: str) -> str:
    if len(key.encode()) not in KEY_LENGTHS:
        raise ConfigError(f"a masking key must be 16, 24 or 32 bytes (AES), got {len(key.encode())}")
    return key


def mask(text: str, spans: Sequence[Span], *, key: str | None = None) -> str:
    """``text`` with every span (overlaps merged) replaced; see the module docstring."""
    if not spans:
        return text
    encrypt = None
    if key is not None:
        from presidio_anonymizer.operators import Encrypt

        check_key(key)
        encrypt = Encrypt()
    out, last = [], 0
    for span in merge_spans(list(spans)):
        out.append(text[last : span.start])
        if encrypt is None:
            out.append(f"<{span.kind}>")
        else:
            out.append(f"<{span.kind}:{encrypt.operate(text[span.start : span.end], {'key': key})}>")
        last = span.end
    out.append(text[last:])
    return "".join(out)


def unmask(text: str, key: str) -> str:
    """Every ``<KIND:ciphertext>`` marker decrypted with ``key``; a wrong key is a ConfigError."""
    from presidio_anonymizer.operators import Decrypt

    check_key(key)
    decrypt = Decrypt()

    def undo(match: re.Match[str]) -> str:
        try:
            return str(decrypt.operate(match.group(2), {"key": key}))
        except Exception as err:
            raise ConfigError(f"cannot decrypt a masked {match.group(1)}: wrong key? ({err})") from None

    return _ENCRYPTED.sub(undo, text)
