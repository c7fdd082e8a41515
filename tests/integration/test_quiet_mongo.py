"""PyMongo's background tasks wait instead of polling (decision 0070), on nx-27017: an idle client wakes
a fraction as often, and a client whose server went away and came back works again at once. That a
wake is answered at once is proved without a server, in tests/unit/test_quiet_mongo_executor.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import ConnectionFailure, ServerSelectionTimeoutError

from leadflow_devstack.processes import free_port
from leadflow_devstack.servers import mongo_wire
from leadflow_shared import quiet_mongo

pytestmark = pytest.mark.integration

# One idle client in a process of its own, counting how often its threads are put on a CPU (what
# bench/path_bench.py reports per service). Argument 1: install the quiet wait or not.
IDLE_CLIENT = """
import asyncio, sys, time
from pathlib import Path
from pydantic import SecretStr
from pymongo import AsyncMongoClient
from leadflow_shared.mongo import make_mongo_client
from leadflow_shared.settings import MongoSettings

def wakeups():
    return sum(int(p.read_text().split()[2]) for p in Path("/proc/self/task").glob("*/schedstat"))

async def main(url, quiet):
    if quiet:
        client = make_mongo_client(MongoSettings(url=SecretStr(url)), app_name="idle")
    else:
        client = AsyncMongoClient(url)
    await client.admin.command("ping")
    await asyncio.sleep(1.5)  # the first heartbeat and upkeep runs, not what idle costs
    before, start = wakeups(), time.monotonic()
    await asyncio.sleep(4)
    print((wakeups() - before) / (time.monotonic() - start))
    await client.close()

asyncio.run(main(sys.argv[1], sys.argv[2] == "quiet"))
"""


def idle_wakeups_per_second(url: str, mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", IDLE_CLIENT, url, mode], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return float(out.stdout)


def test_an_idle_leadflow_client_wakes_far_less_often_than_pymongos_own(mongo_url: str) -> None:
    polling = idle_wakeups_per_second(mongo_url, "polling")
    quiet = idle_wakeups_per_second(mongo_url, "quiet")
    # PyMongo's own wait: the monitor and the client's upkeep each wake every 0.5 s (2 to 4 times a
    # second, as their steps fall together or apart).
    assert polling >= 1.8, polling
    # leadflow's client (`make_mongo_client`): the upkeep every 5 s, the monitor every 10 s.
    assert quiet <= 1.0, quiet


@pytest.mark.asyncio
async def test_a_server_back_after_an_outage_is_used_at_once(tmp_path: Path) -> None:
    quiet_mongo.quiet_periodic_executors()
    port = free_port()
    server, url = mongo_wire(tmp_path, port)
    # Heartbeats 60 s apart: the server is used again long before the monitor's next heartbeat.
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        url, heartbeatFrequencyMS=60_000, serverSelectionTimeoutMS=5_000, connectTimeoutMS=1_000
    )
    try:
        await client.admin.command("ping")
        server.stop(timeout=5)
        with pytest.raises(ConnectionFailure):  # the pooled connection dropped
            await client.admin.command("ping")
        # The server not found for 5 s: the monitor's checks have failed and it waits for its next heartbeat.
        with pytest.raises(ServerSelectionTimeoutError):
            await client.admin.command("ping")
        server, _ = mongo_wire(tmp_path, port)
        assert (await client.admin.command("ping"))["ok"] == 1
    finally:
        await client.close()
        server.stop(timeout=5)
