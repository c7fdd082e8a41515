"""Consumer lag as this process sees it: per assigned partition, high watermark - position.

Each replica reports the partitions it holds, so `sum by (group, topic)` over the pods is the
group's lag. Both numbers are local to the consumer (the watermark comes with every fetch), so
reporting costs no request to the broker. A partition no replica holds reports nothing: the
"no replica up" alert covers that case.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from faststream.kafka import KafkaBroker

from leadflow_shared.metrics import ServiceMetrics

log = logging.getLogger(__name__)

Series = tuple[str, str, str, str]


async def report_lag(
    broker: KafkaBroker,
    metrics: ServiceMetrics,
    groups: Mapping[str, str],
    stopping: asyncio.Event,
    *,
    every_seconds: float = 10.0,
) -> None:
    """Update `leadflow_consumer_lag_messages` every `every_seconds` until `stopping` is set."""
    shown: set[Series] = set()
    while not stopping.is_set():
        try:
            shown = await _report_once(broker, metrics, groups, shown)
        except Exception as exc:  # noqa: BLE001 (a metric must never take the service down)
            log.warning("consumer lag not reported: %s", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), every_seconds)


async def _report_once(
    broker: KafkaBroker, metrics: ServiceMetrics, groups: Mapping[str, str], shown: set[Series]
) -> set[Series]:
    now: set[Series] = set()
    for subscriber in broker.subscribers:
        consumer = getattr(subscriber, "consumer", None)
        if consumer is None:  # not started yet, or stopped
            continue
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:  # no fetch answered yet
                continue
            position = await asyncio.wait_for(consumer.position(tp), 2.0)
            series = (metrics.service, groups.get(tp.topic, ""), tp.topic, str(tp.partition))
            metrics.consumer_lag.labels(*series).set(max(0, high - position))
            now.add(series)
    for gone in shown - now:  # revoked in a rebalance: another replica reports it now
        with contextlib.suppress(KeyError):
            metrics.consumer_lag.remove(*gone)
    return now
