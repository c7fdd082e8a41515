"""MongoDB plumbing: one AsyncMongoClient per process, created inside the running loop."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_shared.settings import MongoSettings

Document = dict[str, Any]


def make_mongo_client(settings: MongoSettings, *, app_name: str) -> AsyncMongoClient[Document]:
    """Client with bounded timeouts, so a missing server fails fast instead of hanging."""
    return AsyncMongoClient(
        settings.url.get_secret_value(),
        appname=app_name,
        serverSelectionTimeoutMS=settings.timeout_ms,
        connectTimeoutMS=settings.timeout_ms,
        tz_aware=True,
    )


def database(client: AsyncMongoClient[Document], settings: MongoSettings) -> AsyncDatabase[Document]:
    return client[settings.database]


async def ping(client: AsyncMongoClient[Document]) -> None:
    await client.admin.command("ping")
