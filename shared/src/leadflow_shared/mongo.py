"""MongoDB plumbing: one AsyncMongoClient per process, created inside the running loop."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from pymongo import AsyncMongoClient, monitoring, uri_parser
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConfigurationError, InvalidURI

from leadflow_shared.quiet_mongo import quiet_periodic_executors, slower_upkeep
from leadflow_shared.settings import MongoSettings

Document = dict[str, Any]


class CommandCounter(monitoring.CommandListener):
    """Counts MongoDB commands by name: the round trips behind each unit of work (P4)."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self._commands = Counter(
            f"{service}_mongo_commands_total",
            "MongoDB commands sent, by command name.",
            ["command"],
            registry=registry,
        )

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self._commands.labels(event.command_name).inc()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


CREDENTIALS_UNREADABLE = "its user name or password cannot be read: percent-encode any / ? # @ : % [ ] in them"


def make_mongo_client(
    settings: MongoSettings, *, app_name: str, listeners: Sequence[monitoring.CommandListener] = ()
) -> AsyncMongoClient[Document]:
    """Client with bounded timeouts, so a missing server fails fast instead of hanging.

    Its background tasks wait for their next run instead of polling for it (decision 0070). A URL PyMongo cannot
    read is an `InvalidURI` (a `PyMongoError`, as callers expect) that names what is wrong without its credentials:
    a mistyped port was a plain ValueError, a traceback out of `leadflow-ops` (helper 192), and PyMongo's own errors
    and warnings quote the part it misread, a password's with an unescaped `/` or `?` (helpers 194, 198)."""
    quiet_periodic_executors()
    url = settings.url.get_secret_value()
    client: AsyncMongoClient[Document] | None = None
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        with contextlib.suppress(ValueError, ConfigurationError):  # InvalidURI is a ConfigurationError
            client = AsyncMongoClient(
                url,
                appname=app_name,
                serverSelectionTimeoutMS=settings.timeout_ms,
                connectTimeoutMS=settings.timeout_ms,
                tz_aware=True,
                event_listeners=list(listeners),
            )
    if client is None or warned:
        _read_without_credentials(url, failed=client is None, warnings_seen=len(warned))
    assert client is not None  # noqa: S101 (a failure raised above)
    slower_upkeep(client)
    return client


def _read_without_credentials(url: str, *, failed: bool, warnings_seen: int) -> None:
    """What PyMongo says of the URL with its user information replaced (everything between `://` and the last `@`):
    its warnings shown, its error raised. Read fine that way while the real one failed or warned more, the
    credentials are what it could not read."""
    scheme, _, rest = url.partition("://")
    userinfo, at, hosts = rest.rpartition("@")
    plain = f"mongodb://{'user:password@' if at else ''}{hosts if at else rest}"  # SRV read without its DNS
    problem: str | None = None
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        try:
            uri_parser.parse_uri(plain, validate=True, warn=True)
        except (ValueError, ConfigurationError) as exc:
            problem = str(exc).splitlines()[0][:300] if scheme else "it names no scheme (mongodb:// or mongodb+srv://)"
    for warning in again:
        warnings.warn(f"the MongoDB URL: {warning.message}", UserWarning, stacklevel=3)
    if problem is None and (failed or len(again) < warnings_seen):
        problem = CREDENTIALS_UNREADABLE if userinfo else "PyMongo cannot read it"
    if problem is not None:
        raise InvalidURI(f"the MongoDB URL: {problem}")


def database(client: AsyncMongoClient[Document], settings: MongoSettings) -> AsyncDatabase[Document]:
    return client[settings.database]


async def ping(client: AsyncMongoClient[Document]) -> None:
    await client.admin.command("ping")
