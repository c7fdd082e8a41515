"""Account configuration loaded into a test's stack in the test's process.

`Stack.seed` runs `leadflow-router seed FILE` by default, as an operator does: a Python start and the router's imports,
about two seconds of CPU, and the suite seeds some sixty times a run. The tests' stacks load the same way the command
does (`load_account_config`) here instead; the command itself is run by `leadflow-dev` (e2e/test_processes.py's README
run).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import SecretStr

from leadflow_router.adapters.account_config import load_account_config
from leadflow_shared.mongo import make_mongo_client
from leadflow_shared.settings import MongoSettings


def seed_in_process(mongo_url: str, config: Any) -> None:
    """What `leadflow-router seed` does with `config`, on its own event loop in a thread: callers may be in one."""

    async def load() -> None:
        settings = MongoSettings(url=SecretStr(mongo_url))
        client = make_mongo_client(settings, app_name="tests-seed")
        try:
            await load_account_config(client[settings.database], config)
        finally:
            await client.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, load()).result()
