"""The services' HTTP server sleeps while idle (decision 0055): no tick, yet every response is dated
and the server still stops when told to."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from email.utils import parsedate_to_datetime

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from leadflow_devstack.processes import free_port, wait_for_port
from leadflow_devstack.testing import eventually
from leadflow_shared import http

pytestmark = pytest.mark.integration


@pytest.mark.asyncio
async def test_the_server_never_ticks_dates_each_response_and_stops_when_told() -> None:
    app = FastAPI()

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"status": "ok"}

    port = free_port()
    server = http.QuietServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, http="h11"))
    ticks: list[int] = []

    async def on_tick(counter: int) -> bool:  # uvicorn's own main loop calls this 10 times a second
        ticks.append(counter)
        return server.should_exit

    server.on_tick = on_tick  # type: ignore[method-assign]
    serving = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, timeout=10, what="the server to start")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.get("/")
        assert response.status_code == 200
        assert len(response.headers.get_list("date")) == 1
        assert abs(parsedate_to_datetime(response.headers["date"]).timestamp() - time.time()) < 2
        assert response.headers["server"] == "uvicorn"  # uvicorn's other default headers stay
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=10)
    assert ticks == []


def test_the_date_is_formatted_once_per_second_and_follows_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_790_000_000.2)
    first = http.http_date()
    monkeypatch.setattr(time, "time", lambda: 1_790_000_000.9)
    assert http.http_date() is first  # the same second: formatted once
    monkeypatch.setattr(time, "time", lambda: 1_790_000_001.0)
    assert (first, http.http_date()) == (b"Mon, 21 Sep 2026 14:13:20 GMT", b"Mon, 21 Sep 2026 14:13:21 GMT")


SERVE = """
import sys
from fastapi import FastAPI
from leadflow_shared.http import serve
from leadflow_shared.settings import HttpSettings
serve(FastAPI(), HttpSettings(host="127.0.0.1", port=int(sys.argv[1])))
print("served", flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_server_cleanly(sig: signal.Signals) -> None:
    """SIGINT (Ctrl-C in leadflow-dev reaches every service) ends without a traceback, as with uvicorn.run;
    SIGTERM ends with uvicorn's re-raised signal, as the orchestrator expects."""
    port = free_port()
    command = [sys.executable, "-c", SERVE, str(port)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        wait_for_port(port, timeout=30, process=process)
        process.send_signal(sig)
        out, err = process.communicate(timeout=30)
    assert b"Traceback" not in err, err.decode()
    assert (process.returncode, out.strip()) == ((0, b"served") if sig is signal.SIGINT else (-sig, b""))
