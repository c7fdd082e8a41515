"""Fixtures: real servers on free ports, started once per test session.

- `mongo_url`: MONGODB_URL when set (a real MongoDB, to check fidelity), else an nx-27017.
- `kafka_bootstrap`: a Tansu broker alone, for integration tests that run a service's code in the test process.
- `sink` and `mailer` (one per test): an SMTP server of the test's own, and the notifier's SMTP client on it.
- `stack`: the whole system as `leadflow-dev` runs it (Tansu, nx-27017, SMTP sink, the
  four services as processes), for e2e tests; stopped when a worker's tests leave tests/e2e/.
- `poisoned_stack`: another one per test module, for the tests that put garbage on every topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiokafka import ConsumerRecord
from seeding import seed_in_process

from leadflow_devstack.servers import MailSink, mongo_wire, tansu
from leadflow_devstack.stack import SERVICES, Stack
from leadflow_devstack.testing import RecordPredicate, WaitForRecord, records_until
from leadflow_notifier.adapters.smtp import SmtpMailer
from leadflow_notifier.settings import SmtpSettings
from leadflow_shared.kafka import ensure_topics
from leadflow_shared.topics import all_topics


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if url := os.environ.get("MONGODB_URL"):
        yield url
        return
    server, url = mongo_wire(tmp_path_factory.mktemp("mongo"))
    try:
        yield url
    finally:
        server.stop(timeout=5)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    broker, bootstrap = tansu(tmp_path_factory.mktemp("tansu"))
    try:
        # leadflow's topics created once, before any client: Tansu creates a topic a client's metadata request
        # names, and several clients doing so at once (consumers joining, a producer) once left a topic whose
        # partitions answered "not leader" for 40 s. The services' own start does the same (`Stack`).
        asyncio.run(ensure_topics(bootstrap, all_topics()))
        yield bootstrap
    finally:
        broker.stop(timeout=5)


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[MailSink]:
    mail = MailSink(tmp_path / "mail")
    mail.start()
    yield mail
    mail.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def mailer(sink: MailSink) -> AsyncIterator[SmtpMailer]:
    smtp = SmtpMailer(SmtpSettings(port=sink.port))
    yield smtp
    await smtp.close()


@contextlib.contextmanager
def running_stack(work_dir: Path) -> Iterator[Stack]:
    system = Stack(work_dir, seed_loader=seed_in_process)
    try:
        system.start_infra()
        # A deadline, not a wait: both workers start their stacks together as a run begins (e2e files first), and
        # on a loaded machine one service took 45 s to import (eight at once, beside others' tests).
        system.start_services(timeout=120)
        for service, _, _ in SERVICES:  # what the tests publish is then seen as it comes, not in one late batch
            system.wait_consuming(service, timeout=120)
        yield system
    finally:
        system.stop()


# This worker's `stack` while it runs. The end-to-end files run first (decision 0065), so once a worker's next test
# neither is one nor asks for the stack, the stack would idle to the end of the run: 130 ms of CPU a second (its
# consumers' fetches, heartbeats), taken from the other worker's tests for the last third of the run. It is stopped
# there (`pytest_runtest_teardown`); a test asking for it afterwards fails with the reason.
_running: list[Stack] = []
_stopped_early: list[Stack] = []
E2E = Path(__file__).parent / "e2e"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stack")) as system:
        _running.append(system)
        try:
            yield system
        finally:
            with contextlib.suppress(ValueError):
                _running.remove(system)


@pytest.hookimpl(trylast=True)  # after pytest's own: the finished module's fixtures are torn down, on a live stack
def pytest_runtest_teardown(nextitem: pytest.Item | None) -> None:
    if nextitem is None or not _running or nextitem.path.is_relative_to(E2E):
        return
    if "stack" not in getattr(nextitem, "fixturenames", ()):
        system = _running.pop()
        system.stop()  # running_stack's own stop, at the end of the session, finds it stopped
        _stopped_early.append(system)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if _stopped_early and "stack" in getattr(item, "fixturenames", ()):
        pytest.fail("this worker's stack was stopped when its tests left tests/e2e/ (tests/conftest.py): run the tests "
                    "that ask for `stack` before the others, as the collection order does")  # fmt: skip


@pytest.fixture(scope="module")
def poisoned_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A second whole system for the tests that fill every topic with garbage on purpose, so
    the other tests' readers (which parse every record of a topic) never meet it. One per module, stopped
    when its module is done: an idle stack's consumers still poll Tansu, which would take CPU from every
    later test of the worker."""
    with running_stack(tmp_path_factory.mktemp("poisoned")) as system:
        yield system


@pytest.fixture
def wait_for_record(stack: Stack) -> WaitForRecord:
    """Read `topic` from the beginning until a record matches, or fail after a deadline."""

    async def wait(topic: str, matches: RecordPredicate, timeout: float = 30.0) -> ConsumerRecord[bytes, bytes]:
        seen = await records_until(stack.bootstrap, topic, matches, timeout)
        return next(r for r in seen if matches(r))

    return wait
