"""MongoDB plumbing: one AsyncMongoClient per process, created inside the running loop."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from pymongo import AsyncMongoClient, monitoring
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


def _without_secrets(message: str, url: str) -> str:
    """`message` with every run of three or more characters of the URL's user information (what comes between `://`
    and its last `@`, since a URL that cannot be read has no reliable boundaries) masked."""
    rest = url.partition("://")[2]
    userinfo = rest.rpartition("@")[0] if "@" in rest else ""
    for piece in sorted(re.split(r"[:/@?#]", userinfo), key=len, reverse=True):
        if len(piece) >= 3:
            message = message.replace(piece, "***")
    return message


def make_mongo_client(
    settings: MongoSettings, *, app_name: str, listeners: Sequence[monitoring.CommandListener] = ()
) -> AsyncMongoClient[Document]:
    """Client with bounded timeouts, so a missing server fails fast instead of hanging.

    Its background tasks wait for their next run instead of polling for it (decision 0070). A URL PyMongo cannot
    read is its `InvalidURI` (a `PyMongoError`, as callers expect), never the URL in it: a mistyped port was a plain
    ValueError, a traceback out of `leadflow-ops` (helper 192)."""
    quiet_periodic_executors()
    try:
        client: AsyncMongoClient[Document] = AsyncMongoClient(
            settings.url.get_secret_value(),
            appname=app_name,
            serverSelectionTimeoutMS=settings.timeout_ms,
            connectTimeoutMS=settings.timeout_ms,
            tz_aware=True,
            event_listeners=list(listeners),
        )
    except (ValueError, ConfigurationError) as exc:  # InvalidURI is a ConfigurationError
        said = _without_secrets(str(exc).splitlines()[0][:200], settings.url.get_secret_value())
        raise InvalidURI(f"the MongoDB URL: {said}") from None
    slower_upkeep(client)
    return client


def database(client: AsyncMongoClient[Document], settings: MongoSettings) -> AsyncDatabase[Document]:
    return client[settings.database]


async def ping(client: AsyncMongoClient[Document]) -> None:
    await client.admin.command("ping")
