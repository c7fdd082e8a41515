"""MongoDB for a command, opened with the services' settings and closed at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from leadflow_shared.mongo import make_mongo_client
from leadflow_shared.settings import MongoSettings


@asynccontextmanager
async def database(settings: MongoSettings) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client = make_mongo_client(settings, app_name="leadflow-ops")
    try:
        yield client[settings.database]
    finally:
        await client.close()
