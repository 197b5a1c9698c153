"""Secrets: API keys, tokens and private keys, with the regular expressions of Yelp's ``detect-secrets``.

Every regex-based plugin of detect-secrets (AWS, GitHub, GitLab, OpenAI, Slack, Stripe, JWT, private keys
...) except public IPs (the PII detector's job), plus its keyword plugin (``password = "..."``). Its
high-entropy plugins are left out: on free text they flag ordinary words.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, ClassVar

from tether.guard.detection import Span, merge_spans
from tether.guard.detectors.base import ViewDetector, register

SKIPPED_PLUGINS = ("IPPublicDetector",)
EXTRA_PATTERNS = {
    "OPENAI_TOKEN": r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}",
    "ANTHROPIC_TOKEN": r"\bsk-ant-[A-Za-z0-9_-]{20,}",
    "HUGGING_FACE_TOKEN": r"\bhf_[A-Za-z0-9]{30,}",
    "GOOGLE_API_KEY": r"\bAIza[0-9A-Za-z_-]{35}",
    "PRIVATE_KEY": r"-----BEGIN [A-Z ]*PRIVATE KEY( BLOCK)?-----[\s\S]*?"
    r"(?:-----END [A-Z ]*PRIVATE KEY( BLOCK)?-----|$)",
}
"""Formats detect-secrets 1.5 does not know (project-scoped OpenAI keys, Anthropic, Hugging Face, Google), and
a whole PEM private-key block (its plugin matches the header line only, which would leave the key unmasked)."""
_TOKEN_TAIL = re.compile(r"[\w+/=.-]*")


@lru_cache(maxsize=1)
def _plugins() -> tuple[list[tuple[str, re.Pattern[str]]], Any]:
    """(secret type, compiled regex) for every regex plugin, and a keyword plugin instance."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.plugins.base import RegexBasedDetector
    from detect_secrets.plugins.keyword import KeywordDetector

    regexes = []
    plugin: Any
    for secret_type, plugin in get_mapping_from_secret_type_to_class().items():
        if issubclass(plugin, RegexBasedDetector) and plugin.__name__ not in SKIPPED_PLUGINS:
            kind = secret_type.upper().replace(" ", "_")
            regexes += [(kind, pattern) for pattern in plugin.denylist]  # a class attribute: compiled regexes
    regexes += [(kind, re.compile(pattern)) for kind, pattern in EXTRA_PATTERNS.items()]
    return regexes, KeywordDetector()


@register
class Secrets(ViewDetector):
    name: ClassVar[str] = "secrets"
    summary: ClassVar[str] = "API keys, tokens, private keys, password assignments (detect-secrets' plugins)"
    finds_spans: ClassVar[bool] = True

    def warm_up(self) -> None:
        _plugins()

    def score_text(self, text: str) -> tuple[float, str, tuple[Span, ...]]:
        regexes, keyword = _plugins()
        spans: list[Span] = []
        for kind, pattern in regexes:
            for match in pattern.finditer(text):
                # The span is the whole match, run on to the end of the token (some plugin regexes are lazy).
                tail = _TOKEN_TAIL.match(text, match.end())
                end = tail.end() if tail and kind != "PRIVATE_KEY" else match.end()
                spans.append(Span(match.start(), end, kind))
        offset = 0
        for number, line in enumerate(text.splitlines(keepends=True)):
            for found in keyword.analyze_line(filename="message.txt", line=line, line_number=number + 1):
                value = found.secret_value or ""
                at = line.find(value) if value else -1
                if at >= 0:
                    spans.append(Span(offset + at, offset + at + len(value), "SECRET_KEYWORD"))
            offset += len(line)
        if not spans:
            return 0.0, "nothing found", ()
        spans = merge_spans(spans)
        kinds = sorted({s.kind for s in spans})
        return 1.0, f"{len(spans)} secret(s): {', '.join(kinds)}", tuple(spans)
