"""Prometheus metrics of the guard (``/metrics``), with ``prometheus-client``.

``tether_guard_requests_total{endpoint, outcome}``, ``tether_guard_rail_verdicts_total{side, rail, applied}``
(every rail that flagged or erred), ``tether_guard_seconds{stage}`` (``input_rails``, ``output_rails``,
``upstream``, ``total``) and ``tether_guard_alerts_total{kind}``. With several worker processes, set
``PROMETHEUS_MULTIPROC_DIR`` (``tether guard serve --workers N`` does) and ``/metrics`` sums every worker.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tether_guard_requests",
            "Requests by endpoint and outcome.",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self.verdicts = Counter(
            "tether_guard_rail_verdicts",
            "Rail verdicts that flagged or erred.",
            ["side", "rail", "applied"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "tether_guard_seconds", "Time per stage.", ["stage"], buckets=BUCKETS, registry=self.registry
        )
        self.alerts = Counter("tether_guard_alerts", "Monitor alerts by kind.", ["kind"], registry=self.registry)

    def observe(self, endpoint: str, outcome: str, decisions: list[Any], seconds: dict[str, float]) -> None:
        self.requests.labels(endpoint, outcome).inc()
        for decision in decisions:
            for v in decision.verdicts:
                if v.applied != "none":
                    self.verdicts.labels(decision.side, v.rail, v.applied).inc()
        for stage, value in seconds.items():
            self.seconds.labels(stage).observe(value)

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
