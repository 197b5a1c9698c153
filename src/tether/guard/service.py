"""The guard server's state (:class:`Guard`: config, pipeline, store, upstream, metrics, monitor, redactor) and
:func:`build_guard`, which loads all of it before the first request."""

from __future__ import annotations

import os
import threading
import time
import uuid

from tether.generation import SamplingParams
from tether.guard.api import ChatRequest
from tether.guard.config import GuardConfig
from tether.guard.metrics import Metrics
from tether.guard.monitor import Monitor
from tether.guard.pipeline import Decision, Pipeline
from tether.guard.redaction import Redactor
from tether.guard.store import ApiKey, Store
from tether.guard.upstream import Upstream

ADMIN_KEY_ENV = "TETHER_GUARD_ADMIN_KEY"
"""When set at start, this key is added to the store as an admin key (if not there yet)."""


def _blocked(decisions: list[Decision]) -> bool:
    return any(d.blocked for d in decisions)


def _refused(decision: Decision) -> bool:
    return any(v.detection.flagged and "refuses" in v.detection.reason for v in decision.verdicts)


class Guard:
    """The server's state: config, pipeline, store, upstream, metrics, redactor."""

    def __init__(self, config: GuardConfig, pipeline: Pipeline, store: Store, upstream: Upstream) -> None:
        self.config = config
        self.pipeline = pipeline
        self.store = store
        self.upstream = upstream
        self.metrics = Metrics()
        self.redactor = Redactor(pipeline.mask_key) if config.redact else None
        self.monitor = Monitor(config.monitor, store, on_alert=lambda a: self.metrics.alerts.labels(a.kind).inc())

    def warm_up(self) -> None:
        self.pipeline.warm_up()
        self.upstream.warm_up()
        if self.redactor is not None:
            self.redactor.warm_up()

    def redact(self, text: str | None) -> str | None:
        return self.redactor(text) if self.redactor is not None else text

    def params(self, body: ChatRequest) -> SamplingParams:
        wanted = body.max_completion_tokens or body.max_tokens or self.config.max_new_tokens
        stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
        return SamplingParams(
            max_new_tokens=min(wanted, self.config.max_new_tokens) if self.upstream_is_local else wanted,
            temperature=body.temperature,
            top_p=body.top_p,
            seed=body.seed or 0,
            stop=stop,
        )

    @property
    def upstream_is_local(self) -> bool:
        return self.config.upstream_endpoint is None

    def save(
        self,
        *,
        key: ApiKey,
        endpoint: str,
        messages: list[dict[str, str]],
        answer: str | None,
        outcome: str,
        decisions: list[Decision],
        seconds: dict[str, float],
        interaction: str | None = None,
    ) -> str:
        """Write the interaction (redacted) and count it; the row is committed when this returns."""
        request = [{"role": m["role"], "content": self.redact(m["content"])} for m in messages]
        flagged = any(d.flagged for d in decisions)
        row = {
            "id": interaction or str(uuid.uuid4()),
            "key_id": key.id,
            "endpoint": endpoint,
            "model": self.upstream.name if endpoint == "chat" else None,
            "request": request,
            "response": self.redact(answer),
            "outcome": outcome,
            "flagged": flagged,
            "refused": any(_refused(d) for d in decisions if d.side == "output"),
            "verdicts": [d.to_dict() for d in decisions],
            "latency_ms": seconds.get("total", 0.0) * 1000,
            "guard_ms": (seconds.get("input_rails", 0.0) + seconds.get("output_rails", 0.0)) * 1000,
            "upstream_ms": seconds["upstream"] * 1000 if "upstream" in seconds else None,
        }
        interaction = self.store.record(row)
        self.metrics.observe(endpoint, outcome, decisions, seconds)
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        self.monitor.observe(
            key_id=key.id, blocked=outcome.startswith("blocked") or _blocked(decisions), prompt=last_user
        )
        return interaction


def build_guard(config: GuardConfig, *, migrate_schema: bool = True) -> Guard:
    """Pipeline, store, upstream and metrics for ``config``, all loaded (the first request pays nothing)."""
    from tether.guard.store import open_store
    from tether.guard.upstream import EndpointUpstream, LocalUpstream

    store = open_store(config.database, migrate_schema=migrate_schema)
    admin = os.environ.get(ADMIN_KEY_ENV)
    if admin and store.verify_key(admin) is None:
        store.add_key(admin, name="admin (from environment)", admin=True)
    elif admin is None and not store.list_keys():
        import warnings

        warnings.warn(
            "the store has no API keys: create one with `tether guard keys create --admin` (or set "
            f"{ADMIN_KEY_ENV}); until then every request is refused with 401",
            stacklevel=2,
        )
    upstream: Upstream
    if config.upstream_endpoint:
        upstream = EndpointUpstream(
            config.upstream_endpoint,
            config.upstream_model,
            api_key=os.environ.get(config.upstream_key_env),
            timeout=config.upstream_timeout,
            retries=config.upstream_retries,
        )
    else:
        upstream = LocalUpstream(config.upstream_model)
    guard = Guard(config, Pipeline(config), store, upstream)
    guard.warm_up()
    guard.monitor.start()
    if config.retention_days is not None:
        _start_retention(store, config.retention_days)
    return guard


def _start_retention(store: Store, days: float) -> None:
    def loop() -> None:
        while True:
            store.purge(days)
            time.sleep(3600)

    threading.Thread(target=loop, daemon=True, name="tether-retention").start()
