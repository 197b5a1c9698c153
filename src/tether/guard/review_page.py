"""The review queue as a server-rendered page: ``GET /review`` lists interactions (flagged and unreviewed by
default, with filters), and each row's form marks it fine, harmful, over-refusal, or corrected (with the
reviewer's response). Sign-in is a form that takes an admin key and keeps it in an HttpOnly, SameSite=Strict
cookie (so a form on another site cannot post with it); every page and action checks it again.
No JavaScript; every value shown is HTML-escaped.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import parse_qs, urlencode

COOKIE = "tether_admin"
LABELS = (("fine", "fine"), ("harmful", "harmful"), ("over_refusal", "over-refusal"), ("corrected", "corrected"))

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; width: 100%; } td, th { border: 1px solid #ddd; padding: 6px; vertical-align: top; }
th { background: #f4f4f4; text-align: left; } pre { white-space: pre-wrap; margin: 0; max-width: 40em; }
.blocked { color: #a00; font-weight: bold; } .reviewed { color: #070; } form.filters { margin: 1em 0; }
textarea { width: 100%; min-height: 3em; }
"""


def page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )


def login_page(message: str = "") -> str:
    note = f'<p class="blocked" id="message">{escape(message)}</p>' if message else ""
    return page(
        "tether guard review: sign in",
        note
        + (
            '<form method="post" action="/review/login"><label>Admin key <input type="password" name="key" id="key" '
            'autocomplete="off"></label> <button type="submit" id="sign-in">Sign in</button></form>'
        ),
    )


def parse_form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (the last value of each field)."""
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v[-1] for k, v in fields.items()}


def _last_user(request: str) -> str:
    try:
        messages = json.loads(request)
    except (TypeError, ValueError):
        return str(request)
    users = [m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") in ("user", "tool")]
    return users[-1] if users else ""


def _rails(verdicts: str) -> str:
    try:
        decisions = json.loads(verdicts)
    except (TypeError, ValueError):
        return ""
    fired = [
        f"{d.get('side')}: {v['rail']} ({v['applied']}, {v['score']:.2f}) {v['reason']}"
        for d in decisions
        for v in d.get("verdicts", [])
        if v.get("applied") != "none"
    ]
    return "<br>".join(escape(f) for f in fired)


def queue_page(rows: list[dict[str, Any]], filters: dict[str, str], *, message: str = "") -> str:
    choices = {
        "flagged": ("", "true", "false"),
        "reviewed": ("", "false", "true"),
        "outcome": ("", "ok", "blocked_input", "blocked_output", "upstream_error", "checked"),
    }
    selects = []
    for name, values in choices.items():
        options = "".join(
            f'<option value="{v}"{" selected" if filters.get(name, "") == v else ""}>{v or "any"}</option>'
            for v in values
        )
        selects.append(f'<label>{name} <select name="{name}" id="filter-{name}">{options}</select></label>')
    filters_form = (
        f'<form class="filters" method="get" action="/review">{" ".join(selects)} '
        '<button id="apply">Filter</button></form>'
    )
    note = f'<p class="reviewed" id="message">{escape(message)}</p>' if message else ""
    back = escape(urlencode(filters))
    body_rows = []
    for r in rows:
        status = (
            f'<span class="blocked">{escape(r["outcome"])}</span>'
            if r["outcome"].startswith("blocked")
            else escape(r["outcome"])
        )
        review = f'<span class="reviewed">{escape(r["review_label"])}</span>' if r.get("review_label") else ""
        buttons = "".join(
            f'<button type="submit" name="label" value="{value}" id="{value}-{escape(r["id"])}">{text}</button> '
            for value, text in LABELS
        )
        body_rows.append(
            f'<tr id="row-{escape(r["id"])}"><td>{status}<br>{review}</td>'
            f"<td><pre>{escape(_last_user(r['request']))}</pre></td>"
            f"<td><pre>{escape(r.get('response') or '')}</pre></td>"
            f"<td>{_rails(r['verdicts'])}</td>"
            f'<td><form method="post" action="/review/{escape(r["id"])}?{back}">'
            f'<textarea name="response" id="response-{escape(r["id"])}" '
            'placeholder="corrected response (for corrected)">'
            f"{escape(r.get('review_response') or '')}</textarea>{buttons}</form></td></tr>"
        )
    table = (
        "<table><thead><tr><th>outcome</th><th>request</th><th>response</th><th>rails</th><th>review</th></tr>"
        f"</thead><tbody>{''.join(body_rows)}</tbody></table>"
        if rows
        else '<p id="empty">Nothing to review.</p>'
    )
    return page("tether guard review", note + filters_form + table)
