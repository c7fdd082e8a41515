"""Prometheus helpers: every process owns one registry, injected where metrics are made.

Names: what every service exports alike is `leadflow_*` with a `service` label (HTTP requests,
readiness, consumer lag), so one alert covers all four; what one service counts carries its
prefix (`router_*`). Every labelled counter an alert reads is exported at zero from the start
for its known label values, so the first increment after a pod starts is an increase that
`increase()` and `rate()` see (a series born at 1 is not).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = [
    "CONTENT_TYPE_LATEST",
    "DEAD_LETTER_REASONS",
    "ConsumerMetrics",
    "ServiceMetrics",
    "make_registry",
    "render",
]

# Why a message was dead-lettered (the DLQ header `dlq-error-type` has the exception's name):
# invalid: the bytes can never be handled (schema, JSON, PoisonMessage); unreadable: the record
# itself is broken; failed: the handler kept failing after its retries.
DEAD_LETTER_REASONS: Final = ("invalid", "unreadable", "failed")


def make_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


class ConsumerMetrics:
    """What every Kafka consumer counts besides FastStream's own consume/publish metrics."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.dead_lettered = Counter(
            f"{service}_dead_lettered_messages_total",
            "Messages sent to a dead-letter topic, by source topic and reason (invalid, unreadable, failed).",
            ["topic", "reason"],
            registry=registry,
        )
        self.retries = Counter(
            f"{service}_handler_retries_total",
            "Handler attempts that failed with a transient error and were retried.",
            ["topic"],
            registry=registry,
        )

    def consuming(self, topic: str) -> None:
        """Export this topic's series at zero (called once per subscribed topic)."""
        for reason in DEAD_LETTER_REASONS:
            self.dead_lettered.labels(topic, reason)
        self.retries.labels(topic)


class ServiceMetrics:
    """What every service exports alike: HTTP requests, readiness, consumer lag."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.service = service
        self.http_requests = Counter(
            "leadflow_http_requests_total",
            "HTTP requests answered, by route template, method and status code.",
            ["service", "route", "method", "code"],
            registry=registry,
        )
        self.http_seconds = Histogram(
            "leadflow_http_request_seconds",
            "HTTP request latency, from the request to the response's start, by route template.",
            ["service", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        self.ready = Gauge(
            "leadflow_ready", "1 when the last readiness check passed, 0 when it failed.", ["service"],
            registry=registry,
        )  # fmt: skip
        self.readiness_changes = Counter(
            "leadflow_readiness_changes_total", "Readiness flipping between ready and not ready.", ["service"],
            registry=registry,
        )  # fmt: skip
        self.consumer_lag = Gauge(
            "leadflow_consumer_lag_messages",
            "Records on this process's assigned partitions not yet taken by its consumer (high watermark - position).",
            ["service", "group", "topic", "partition"],
            registry=registry,
        )
        self._ready = False
        self.ready.labels(service).set(0)
        self.readiness_changes.labels(service)
        self.http_requests.labels(service, "/health/ready", "GET", "200")
        self.http_requests.labels(service, "/health/ready", "GET", "500")

    def readiness(self, ok: bool) -> None:
        if ok != self._ready:
            self.readiness_changes.labels(self.service).inc()
            self._ready = ok
        self.ready.labels(self.service).set(float(ok))
