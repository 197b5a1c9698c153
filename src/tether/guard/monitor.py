"""Monitoring: spikes in block or refusal rate, one key probing the rails, bursts of near-duplicate attacks.

- **Rate spikes**: every ``check_seconds`` the store is asked for the block (and refusal) rate of the last
  ``window_seconds`` against the ``baseline_seconds`` before it, across every worker. An alert fires when
  the window holds at least ``min_requests`` and its rate exceeds the baseline by a one-sided two-proportion
  z-test at ``z`` (default 3), and by at least ``min_increase`` in absolute terms.
- **Probing**: a key with ``probe_blocks`` blocked requests within ``probe_seconds`` (counted in the store,
  so across workers) raises an alert; with ``rate_limit`` its requests get HTTP 429 until the window passes.
- **Near-duplicate bursts**: a blocked prompt whose word 3-gram Jaccard similarity to at least
  ``burst_size - 1`` other blocked prompts of the last ``burst_seconds`` reaches ``burst_similarity``
  (the same attack sent again with small edits), per worker.

Alerts go to the log (``tether.guard`` logger, level WARNING), to ``/metrics``
(``tether_guard_alerts_total{kind}``) and, when ``webhook`` is set, as a JSON POST to it (in the
background: a slow or failing webhook never delays a request). Each kind alerts at most once per window.
"""

from __future__ import annotations

import collections
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from tether.guard.config import MonitorOptions
from tether.guard.store import Store, interactions

log = logging.getLogger("tether.guard")


@dataclass(frozen=True)
class Alert:
    kind: str
    """``block_rate_spike``, ``refusal_rate_spike``, ``probing`` or ``near_duplicate_burst``."""
    message: str
    details: dict[str, Any]
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "details": self.details, "at": self.at}


def spike(window_hits: int, window_n: int, base_hits: int, base_n: int, *, z: float, min_increase: float) -> bool:
    """One-sided two-proportion z-test (pooled variance): is the window's rate above the baseline's?"""
    if window_n == 0 or base_n == 0:
        return False
    p1, p0 = window_hits / window_n, base_hits / base_n
    if p1 - p0 < min_increase:
        return False
    pooled = (window_hits + base_hits) / (window_n + base_n)
    se = math.sqrt(pooled * (1 - pooled) * (1 / window_n + 1 / base_n))
    return se == 0 or (p1 - p0) / se >= z


_WORDS = re.compile(r"\w+")


def shingles(text: str) -> frozenset[tuple[str, ...]]:
    words = _WORDS.findall(text.lower())
    if len(words) < 3:
        return frozenset({tuple(words)})
    return frozenset(tuple(words[i : i + 3]) for i in range(len(words) - 2))


def jaccard(a: frozenset[Any], b: frozenset[Any]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class Monitor:
    def __init__(
        self,
        options: MonitorOptions,
        store: Store,
        *,
        on_alert: Callable[[Alert], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.store = store
        self.clock = clock
        self.on_alert = on_alert
        self.alerts: collections.deque[Alert] = collections.deque(maxlen=1000)
        self._last: dict[str, float] = {}
        self._limited: dict[str, float] = {}
        self._blocked: collections.deque[tuple[float, frozenset[Any]]] = collections.deque()
        self._lock = threading.Lock()

    def _alert(self, kind: str, subject: str, message: str, details: dict[str, Any], every: float) -> Alert | None:
        now = self.clock()
        with self._lock:
            if now - self._last.get(f"{kind}:{subject}", -math.inf) < every:
                return None
            self._last[f"{kind}:{subject}"] = now
        alert = Alert(kind, message, details, now)
        self.alerts.append(alert)
        log.warning("tether guard alert %s: %s", kind, message)
        if self.on_alert is not None:
            self.on_alert(alert)
        if self.options.webhook:
            threading.Thread(target=_post, args=(self.options.webhook, alert.to_dict()), daemon=True).start()
        return alert

    def limited(self, key_id: str) -> bool:
        """True while this key is rate-limited for probing."""
        until = self._limited.get(key_id)
        return until is not None and self.clock() < until

    def observe(self, *, key_id: str, blocked: bool, prompt: str) -> list[Alert]:
        """After each request: probing and near-duplicate checks (rates are checked by :meth:`check_rates`)."""
        if not blocked:
            return []
        found = []
        o = self.options
        now = self.clock()
        with self.store.engine.connect() as db:
            recent = db.execute(
                sa.select(sa.func.count())
                .select_from(interactions)
                .where(
                    interactions.c.key_id == key_id,
                    interactions.c.created_at >= now - o.probe_seconds,
                    interactions.c.outcome.in_(("blocked_input", "blocked_output")),
                )
            ).scalar_one()
        if recent >= o.probe_blocks:
            if o.rate_limit:
                self._limited[key_id] = now + o.probe_seconds
            alert = self._alert(
                "probing",
                key_id,
                f"key {key_id} had {recent} blocked requests in "
                f"{o.probe_seconds:g} s" + ("; rate-limited" if o.rate_limit else ""),
                {"key_id": key_id, "blocked": int(recent)},
                o.probe_seconds,
            )
            found += [alert] if alert else []
        mine = shingles(prompt)
        with self._lock:
            while self._blocked and self._blocked[0][0] < now - o.burst_seconds:
                self._blocked.popleft()
            similar = sum(jaccard(mine, other) >= o.burst_similarity for _, other in self._blocked)
            self._blocked.append((now, mine))
            if len(self._blocked) > 2000:
                self._blocked.popleft()
        if similar + 1 >= o.burst_size:
            alert = self._alert(
                "near_duplicate_burst",
                "all",
                f"{similar + 1} near-duplicate blocked prompts in {o.burst_seconds:g} s",
                {"count": similar + 1, "example": prompt[:200]},
                o.burst_seconds,
            )
            found += [alert] if alert else []
        return found

    def check_rates(self) -> list[Alert]:
        """Block and refusal rate of the last window against the baseline before it (every worker's rows)."""
        o = self.options
        now = self.clock()
        window_start, base_start = now - o.window_seconds, now - o.window_seconds - o.baseline_seconds
        blocked = interactions.c.outcome.in_(("blocked_input", "blocked_output"))
        refused = interactions.c.refused.is_(True)
        chat = interactions.c.endpoint == "chat"

        def counts(start: float, end: float) -> tuple[int, int, int]:
            with self.store.engine.connect() as db:
                row = db.execute(
                    sa.select(
                        sa.func.count(),
                        sa.func.sum(sa.case((blocked, 1), else_=0)),
                        sa.func.sum(sa.case((refused, 1), else_=0)),
                    ).where(chat, interactions.c.created_at >= start, interactions.c.created_at < end)
                ).one()
            return int(row[0] or 0), int(row[1] or 0), int(row[2] or 0)

        n1, b1, r1 = counts(window_start, now + 1)
        n0, b0, r0 = counts(base_start, window_start)
        found = []
        if n1 >= o.min_requests:
            for kind, hits1, hits0 in (("block_rate_spike", b1, b0), ("refusal_rate_spike", r1, r0)):
                if spike(hits1, n1, hits0, n0, z=o.z, min_increase=o.min_increase):
                    alert = self._alert(
                        kind,
                        "all",
                        f"{kind.split('_')[0]} rate {hits1 / n1:.0%} over the last "
                        f"{o.window_seconds:g} s against {hits0 / max(n0, 1):.0%} before",
                        {"window": [hits1, n1], "baseline": [hits0, n0]},
                        o.window_seconds,
                    )
                    found += [alert] if alert else []
        return found

    def start(self) -> None:
        """Check rates in the background every ``check_seconds``."""

        def loop() -> None:
            while True:
                time.sleep(self.options.check_seconds)
                try:
                    self.check_rates()
                except sa.exc.SQLAlchemyError as err:
                    log.warning("tether guard monitor: rate check failed: %s", err)

        threading.Thread(target=loop, daemon=True, name="tether-monitor").start()


def _post(url: str, body: dict[str, Any]) -> None:
    import httpx

    try:
        httpx.post(url, json=body, timeout=5)
    except httpx.HTTPError as err:
        log.warning("tether guard monitor: webhook %s failed: %s", url, err)
