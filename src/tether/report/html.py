"""A tiny builder for self-contained HTML pages: no JavaScript, no external resources, opens offline.

Builders return HTML fragments. Plain text goes through ``html.escape`` in every builder that takes
text (``table`` cells, ``paragraph``, ``bullets``, ``pre``, headings and titles); ``section`` and ``page``
take already-built fragments (or SVG from ``tether.report.plots``) and insert them as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path

from tether.atomic import atomic_write_text

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; color: #222; max-width: 1040px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; white-space: pre-wrap; }
th { background: #f4f4f4; }
pre { background: #f6f6f6; padding: 1em; overflow: auto; }
svg { display: block; max-width: 100%; height: auto; margin: 1em 0; }
"""


def page(title: str, sections: Sequence[str]) -> str:
    """A complete HTML document with ``title`` as heading and the given fragments in order."""
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n<h1>{escape(title)}</h1>\n{body}\n</body>\n</html>\n"
    )


def section(heading: str, *parts: str) -> str:
    """A titled section holding HTML fragments."""
    return f"<section>\n<h2>{escape(heading)}</h2>\n" + "\n".join(parts) + "\n</section>"


def table(headers: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """A table of text cells, each escaped (``None`` is shown empty)."""
    head = "".join(f"<th>{_cell(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def paragraph(text: str) -> str:
    return f"<p>{escape(text)}</p>"


def bullets(items: Iterable[str]) -> str:
    return "<ul>\n" + "\n".join(f"<li>{escape(i)}</li>" for i in items) + "\n</ul>"


def pre(text: str) -> str:
    """Preformatted text, e.g. a YAML config."""
    return f"<pre>{escape(text)}</pre>"


def write_html(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`tether.atomic.atomic_write_text`)."""
    return atomic_write_text(path, text)


def _cell(value: object) -> str:
    return "" if value is None else escape(str(value))
