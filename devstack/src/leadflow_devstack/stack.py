"""The whole of leadflow on one machine: servers, topics, account configuration, four services."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, cast, get_args

import httpx

from leadflow_devstack.processes import ManagedProcess, free_port, wait_for_port
from leadflow_devstack.servers import TANSU_FETCH_WAIT_MS, TANSU_SESSION_TIMEOUT_MS, MailSink, mongo_wire, tansu
from leadflow_devstack.tokens import Role, bearer, dev_token
from leadflow_devstack.traces import TraceSink
from leadflow_shared.kafka import ensure_topics
from leadflow_shared.topics import all_topics

SAMPLE_ACCOUNTS = Path(str(resources.files("leadflow_devstack") / "sample_accounts.json"))
SAMPLE_LEADS = Path(str(resources.files("leadflow_devstack") / "sample_leads.json"))

# (service, env prefix, preferred port)
SERVICES = (
    ("intake", "INTAKE_", 8001),
    ("router", "ROUTER_", 8002),
    ("notifier", "NOTIFIER_", 8003),
    ("crm-api", "CRM_API_", 8004),
)


def _port(preferred: int | None) -> int:
    """`preferred` when it is free, else any free port."""
    if preferred is None:
        return free_port()
    try:
        wait_for_port(preferred, timeout=0.05)
    except TimeoutError:
        return preferred
    return free_port()


def _bin(command: str) -> str:
    """A console command of this environment (the venv's bin beside the interpreter)."""
    candidate = Path(sys.executable).parent / command
    return str(candidate) if candidate.exists() else command


@dataclass
class Stack:
    work_dir: Path
    accounts_file: Path = SAMPLE_ACCOUNTS
    preferred_ports: bool = False  # the demo uses 8001-8004 when free; tests take any free port
    bootstrap: str = ""
    mongo_url: str = ""
    mail: MailSink | None = None
    traces: TraceSink | None = None  # where the services would export spans (tracing is off unless enabled)
    ports: dict[str, int] = field(default_factory=dict)
    _infra: list[ManagedProcess] = field(default_factory=list)
    services: dict[str, ManagedProcess] = field(default_factory=dict)
    # crm-api's token key for this run: random, so no token outlives the stack.
    signing_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    # The router's service token for this run (ROUTER_API_TOKEN, CRM_API_ROUTER_TOKEN; decision 0082): random too.
    router_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    # Service -> environment variables added to (or replacing) the stack's own, e.g. a router's test clock.
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)
    # Agent id -> the account that seeded it: user ids are global (decision 0076), and a token names its office
    # (decision 0079), so one stack never seeds one agent id into two accounts.
    seeded_agents: dict[str, str] = field(default_factory=dict)
    # How `seed` loads a file: `leadflow-router seed FILE` by default, as an operator does; a test session passes the
    # same loader run in its own process (`loader(mongo_url, config)`), sparing a process start per seed.
    seed_loader: Callable[[str, Any], None] | None = None

    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"

    @property
    def servers(self) -> list[ManagedProcess]:
        """The broker and the database processes (e.g. for a benchmark to read their CPU time)."""
        return list(self._infra)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def token(self, sub: str, role: Role, account_id: str, *, organisation_id: str | None = None) -> str:
        """A bearer token crm-api of this stack accepts (development only)."""
        return dev_token(sub, role, account_id, key=self.signing_key, organisation_id=organisation_id)

    def auth(self, sub: str, role: str, account_id: str) -> dict[str, str]:
        """The Authorization header of `token`, for a role given as plain text (tests parametrize it)."""
        if role not in get_args(Role):
            raise ValueError(f"unknown role {role!r}")
        return bearer(self.token(sub, cast(Role, role), account_id))

    def router_auth(self) -> dict[str, str]:
        """The Authorization header the router's internal API takes from crm-api in this stack."""
        return {"Authorization": f"Bearer {self.router_token}"}

    def start_infra(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        broker, self.bootstrap = tansu(self.log_dir)
        self._infra.append(broker)
        mongo, self.mongo_url = mongo_wire(self.log_dir)
        self._infra.append(mongo)
        self.mail = MailSink(self.work_dir / "mail")
        self.mail.start()
        self.traces = TraceSink()
        self.traces.start()
        asyncio.run(ensure_topics(self.bootstrap, all_topics()))
        self.seed(self.accounts_file)

    def service_env(self, service: str) -> dict[str, str]:
        prefix = {s: p for s, p, _ in SERVICES}[service]
        assert self.mail is not None  # noqa: S101
        env = {
            "ENVIRONMENT": "development",
            "KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA__PRODUCER_IDEMPOTENCE": "false",  # Tansu has no InitProducerId (docs/decisions)
            # Tansu answers a waiting fetch late (Kafka at once), so on it every fetch waits briefly (decision 0052).
            "KAFKA__FETCH_WAIT_IDLE_MS": str(TANSU_FETCH_WAIT_MS),
            "KAFKA__FETCH_WAIT_IDLE_OFF_PATH_MS": str(TANSU_FETCH_WAIT_MS),
            "KAFKA__SESSION_TIMEOUT_MS": str(TANSU_SESSION_TIMEOUT_MS),  # joins take part of it (decision 0073)
            "MONGO__URL": self.mongo_url,
            "HTTP__PORT": str(self.ports.get(service, 0)),
        }
        if service == "router":
            env["API_TOKEN"] = self.router_token
        if service == "crm-api":
            env["AUTH__KEY"] = self.signing_key
            env["ROUTER_TOKEN"] = self.router_token
            env["WEB__DEV_SIGN_IN"] = "true"  # the sign-in page lists the sample users (development only)
            env["WEB__SECURE_COOKIES"] = "false"  # served over plain http://127.0.0.1
            if "router" in self.ports:
                env["ROUTER_URL"] = self.url("router")
        if service == "notifier":
            env["SMTP__HOST"] = "127.0.0.1"
            env["SMTP__PORT"] = str(self.mail.port)
            env["CRM_BASE_URL"] = self.url("crm-api") if "crm-api" in self.ports else ""
            env["DIGEST__CHECK_SECONDS"] = "2"  # a due digest goes out within seconds, not a minute
        # Standard OpenTelemetry variables (no prefix), read only by a service that enables tracing;
        # a short export delay lets a test see the spans within a fraction of a second.
        otel = {}
        if self.traces is not None:
            otel = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": self.traces.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        return {prefix + k: v for k, v in env.items()} | otel | self.extra_env.get(service, {})

    def seed(self, accounts_file: Path) -> None:
        config = json.loads(accounts_file.read_text())
        self._claim_agent_ids(config)
        if self.seed_loader is not None:
            self.seed_loader(self.mongo_url, config)
            return
        env = {**os.environ, **self.service_env("router")}
        subprocess.run(  # noqa: S603 (argv built here, no shell)
            [_bin("leadflow-router"), "seed", str(accounts_file)], env=env, check=True, capture_output=True
        )

    def _claim_agent_ids(self, config: dict[str, Any]) -> None:
        """Refuse a seed that would move an agent another seed made to another account: the tests sharing this
        stack would then hold tokens of an office their agent is no longer of, and fail far from the cause."""
        for account in config.get("accounts", []):
            for agent in account.get("agents", []):
                agent_id, account_id = agent["agent_id"], account["account_id"]
                if self.seeded_agents.setdefault(agent_id, account_id) != account_id:
                    raise ValueError(
                        f"agent {agent_id!r} is seeded into {account_id!r} but is of {self.seeded_agents[agent_id]!r}"
                        " already: agent ids are global, give this one another id"
                    )

    def start_service(self, service: str) -> ManagedProcess:
        proc = ManagedProcess(
            service, [_bin(f"leadflow-{service}")], log_dir=self.log_dir, env=self.service_env(service)
        )
        proc.start()
        self.services[service] = proc
        return proc

    def start_services(self, timeout: float = 60.0) -> None:
        for service, _, preferred in SERVICES:
            self.ports[service] = _port(preferred if self.preferred_ports else None)
        for service, _, _ in SERVICES:
            self.start_service(service)
        for service, _, _ in SERVICES:
            self.wait_ready(service, timeout=timeout)

    def wait_ready(self, service: str, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        proc = self.services[service]
        while time.monotonic() < deadline:
            if not proc.running():
                raise RuntimeError(f"{service} exited; see {proc.log_path}")
            try:
                if httpx.get(f"{self.url(service)}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{service} not ready after {timeout}s; see {proc.log_path}")

    def wait_consuming(self, service: str, *, timeout: float) -> None:
        """Until `service`'s consumers have joined their groups (its log says so). A service is ready (`wait_ready`)
        before: what is published meanwhile waits on the topic, and a consumer joining late takes it in one batch.
        A test that needs each event seen as it comes waits for this."""
        deadline = time.monotonic() + timeout
        proc = self.services[service]
        while not proc.logged("consumers joined in"):
            if not proc.running() or time.monotonic() > deadline:
                raise TimeoutError(f"{service}'s consumers not joined after {timeout}s; see {proc.log_path}")
            time.sleep(0.1)

    @contextlib.contextmanager
    def extra_intake(
        self, name: str, providers: dict[str, Any], *, timeout: float = 60.0, env: dict[str, str] | None = None
    ) -> Iterator[str]:
        """An HTTP-only intake beside the stack's, with these webhook `providers` (and settings `env`, e.g.
        `INTAKE_HTTP__BODY_TIMEOUT_SECONDS`); yields its URL.

        Its log must hold no traceback when it stops: tests that attack intake use it.
        """
        port = free_port()
        env = self.service_env("intake") | (env or {}) | {
            "INTAKE_ENVIRONMENT": "test", "INTAKE_HTTP__PORT": str(port), "INTAKE_CONSUME_INBOUND": "false",
            "INTAKE_WEBHOOKS__PROVIDERS": json.dumps(providers),
        }  # fmt: skip
        self.ports[name] = port
        self.services[name] = process = ManagedProcess(name, [_bin("leadflow-intake")], log_dir=self.log_dir, env=env)
        process.start()
        try:
            self.wait_ready(name, timeout=timeout)
            yield self.url(name)
        finally:
            process.stop()
            del self.services[name]
        log = process.log_path.read_text()
        if "Traceback" in log:
            raise AssertionError(f"{name} logged a traceback:\n{log[-3000:]}")

    def stop(self) -> dict[str, int | None]:
        """Stop services (SIGTERM, graceful), then the servers; returns the services' exit codes."""
        codes = {name: proc.stop() for name, proc in self.services.items()}
        if self.mail is not None:
            self.mail.stop()
        if self.traces is not None:
            self.traces.stop()
        for proc in reversed(self._infra):
            proc.stop(timeout=5)
        return codes
