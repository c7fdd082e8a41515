"""Prometheus helpers: every process owns one registry, injected where metrics are made."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ConsumerMetrics", "make_registry", "render"]


def make_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


class ConsumerMetrics:
    """What every Kafka consumer counts besides FastStream's own consume/publish metrics."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.dead_lettered = Counter(
            f"{service}_dead_lettered_messages_total",
            "Messages sent to a dead-letter topic, by source topic and reason.",
            ["topic", "reason"],
            registry=registry,
        )
        self.retries = Counter(
            f"{service}_handler_retries_total",
            "Handler attempts that failed with a transient error and were retried.",
            ["topic"],
            registry=registry,
        )
