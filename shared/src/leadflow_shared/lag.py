"""Consumer lag as this process sees it: per assigned partition, high watermark - position.

Each replica reports the partitions it holds, so `sum by (group, topic)` over the pods is the
group's lag. Both numbers are local to the consumer (the watermark comes with every fetch), so
reporting costs no request to the broker. A partition no replica holds reports nothing: the
"no replica up" alert covers that case.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from faststream.kafka import KafkaBroker

from leadflow_shared.background import every
from leadflow_shared.metrics import ServiceMetrics

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

    async def report() -> None:
        nonlocal shown
        shown = await _report_once(broker, metrics, groups, shown)

    # Any error is quiet: a metric must never take the service down, nor fill the log.
    await every(every_seconds, stopping, report, what="consumer lag not reported", quiet=(Exception,))


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
