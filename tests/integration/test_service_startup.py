"""A service serves before its consumers have joined their groups, and a failed join is not hidden.

Joining a consumer group takes seconds (longer after a crash); HTTP routes, readiness and the
background workers (the router's deadline sweeper, the notifier's re-driver) do not need it.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import GroupCoordinatorNotAvailableError

from leadflow_devstack.servers import TANSU_SESSION_TIMEOUT_MS
from leadflow_devstack.testing import eventually
from leadflow_shared.consumers import Batch
from leadflow_shared.service import ServiceRuntime
from leadflow_shared.settings import ServiceSettings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


def runtime_for(kafka_bootstrap: str, mongo_url: str) -> ServiceRuntime:
    settings = ServiceSettings.model_validate(
        {"kafka": {"bootstrap_servers": kafka_bootstrap, "producer_idempotence": False,
                   "session_timeout_ms": TANSU_SESSION_TIMEOUT_MS},
         "mongo": {"url": mongo_url}}
    )  # fmt: skip
    return ServiceRuntime(settings, service=f"startup-{uuid.uuid4().hex[:8]}")


async def test_workers_and_readiness_do_not_wait_for_consumer_groups(kafka_bootstrap: str, mongo_url: str) -> None:
    runtime = runtime_for(kafka_bootstrap, mongo_url)
    topic = f"startup.probe.{uuid.uuid4().hex}"
    received: list[bytes] = []
    consuming_when_worker_ran: list[bool] = []

    async def handle(body: bytes) -> None:
        received.append(body)

    async def worker(stopping: asyncio.Event) -> None:
        consuming_when_worker_ran.append(runtime.consuming)
        await stopping.wait()

    runtime.subscribe(topic, handle, group_id="startup-test")
    runtime.run_in_background(worker)
    await runtime.start()
    try:
        await runtime.readiness()  # ready at once: MongoDB and the producer are up
        await eventually(lambda: consuming_when_worker_ran, timeout=10, what="the background worker to run")
        assert consuming_when_worker_ran == [False], "the worker waited for the consumer group join"
        # What arrives before the join is consumed once the group has joined (new groups start at the earliest).
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"before-or-after-the-join")
        finally:
            await producer.stop()
        await eventually(lambda: received == [b"before-or-after-the-join"], timeout=60, what="the message")
        assert runtime.consuming
    finally:
        await runtime.stop()


async def test_a_failed_consumer_start_fails_liveness(
    kafka_bootstrap: str, mongo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = runtime_for(kafka_bootstrap, mongo_url)

    async def handle(_body: bytes) -> None:
        return None

    async def coordinator_gone() -> None:
        raise GroupCoordinatorNotAvailableError  # fault injection: the group could not be joined

    runtime.subscribe(f"startup.probe.{uuid.uuid4().hex}", handle, group_id="startup-test")
    monkeypatch.setattr(runtime.broker.subscribers[0], "start", coordinator_gone)
    app = runtime.app()
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as http:

        async def live_status() -> Any:
            return (await http.get("/health/live")).status_code == 503

        await eventually(live_status, timeout=30, what="liveness to report the failed consumer start")
        body = (await http.get("/health/live")).json()
        assert body["status"] == "failed"
        assert (await http.get("/health/ready")).status_code == 503
        assert not runtime.consuming


async def test_idle_consumers_wait_at_the_broker_and_get_every_record(kafka_bootstrap: str, mongo_url: str) -> None:
    """Decision 0052 against the pinned aiokafka and FastStream: every joined consumer's fetches wait
    the idle time (a consumer off a new lead's path its own, decision 0070), its group hears the
    configured session timeout (decision 0073), and single and batch consumers still get each record
    that comes after a quiet spell."""
    settings = ServiceSettings.model_validate(
        {"kafka": {"bootstrap_servers": kafka_bootstrap, "producer_idempotence": False, "fetch_wait_idle_ms": 300,
                   "fetch_wait_idle_off_path_ms": 700, "fetch_wait_busy_ms": 15, "session_timeout_ms": 6000},
         "mongo": {"url": mongo_url}}
    )  # fmt: skip
    runtime = ServiceRuntime(settings, service=f"idle-{uuid.uuid4().hex[:8]}")
    one, many = f"idle.one.{uuid.uuid4().hex}", f"idle.many.{uuid.uuid4().hex}"
    singles: list[bytes] = []
    batches: list[bytes] = []

    async def handle_batch(bodies: Batch[bytes]) -> list[tuple[int, Exception]]:
        batches.extend(body.event for body in bodies)
        return []

    async def handle_single(body: bytes) -> None:
        singles.append(body)

    runtime.subscribe(one, handle_single, group_id="idle-test", on_lead_path=False)
    runtime.subscribe(many, handle_batch, group_id="idle-test")
    await runtime.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await eventually(lambda: runtime.consuming, timeout=60, what="the consumers to join")
        waits = {
            subscriber.topics[0].name: subscriber.consumer._fetcher._fetch_max_wait_ms  # type: ignore[attr-defined]
            for subscriber in runtime.broker.subscribers
        }
        assert waits == {one: 700, many: 300}
        sessions = {  # what each joined consumer told its group (decision 0073)
            (c._session_timeout_ms, c._heartbeat_interval_ms)
            for c in (subscriber.consumer._coordinator for subscriber in runtime.broker.subscribers)  # type: ignore[attr-defined]
        }
        assert sessions == {(6000, 2000)}
        for n in range(1, 4):
            await producer.send_and_wait(one, f"one-{n}".encode())
            await producer.send_and_wait(many, f"many-{n}".encode())

            def arrived(count: int = n) -> bool:
                return len(singles) == len(batches) == count

            await eventually(arrived, timeout=30, what=f"record {n}")
            await asyncio.sleep(0.4)  # a quiet spell longer than the idle wait (the scenario, not a sync)
        assert singles == [b"one-1", b"one-2", b"one-3"]
        assert batches == [b"many-1", b"many-2", b"many-3"]
    finally:
        await producer.stop()
        await runtime.stop()
