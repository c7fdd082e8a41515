"""Each service is its own process: clean SIGTERM shutdown, and the README's run command works."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from leadflow_devstack.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("service", ["intake", "router", "notifier", "crm-api"])
def test_sigterm_shuts_down_cleanly_and_service_restarts(stack: Stack, service: str) -> None:
    proc = stack.services[service]
    assert httpx.get(f"{stack.url(service)}/health/live").json() == {"status": "ok"}
    metrics = httpx.get(f"{stack.url(service)}/metrics")
    assert metrics.status_code == 200
    assert "text/plain" in metrics.headers["content-type"]

    code = proc.stop(timeout=20)

    # uvicorn re-raises SIGTERM after its graceful shutdown, so -15 is the clean exit status.
    assert code == -15, f"{service} exit status {code}"
    log = proc.log_path.read_text()
    assert f"{service} stopped" in log, "the lifespan shutdown (broker drain, Mongo close) did not run"
    assert "Traceback" not in log
    stack.start_service(service)
    stack.wait_ready(service, timeout=60)


def test_crm_api_stopped_under_an_open_live_page_ends_its_stream_at_once(stack: Stack, tmp_path: Path) -> None:
    """A live page's event stream never ends by itself (5 minutes): a stopping crm-api used to wait out its
    graceful timeout (20 s) for it, then cancel it. It ends the stream as the shutdown starts; the browser
    reconnects to a replica that stays."""
    account = "proc-live-realty"
    seed = {"account_id": account, "name": "Proc Live", "round_robin": True, "roster": ["pl-ann"],
            "agents": [{"agent_id": "pl-ann", "name": "Ann", "email": "pl-ann@example.com"}]}  # fmt: skip
    (tmp_path / "accounts.json").write_text(json.dumps({"accounts": [seed]}))
    stack.seed(tmp_path / "accounts.json")
    proc = stack.services["crm-api"]
    ended = threading.Event()
    with httpx.Client(base_url=stack.url("crm-api"), timeout=30) as client:
        csrf = re.compile(r'name="csrf" value="([^"]*)"')
        nonce = csrf.search(client.get(f"/app/sign-in?account={account}").text)
        assert nonce is not None
        client.post("/app/sign-in", data={"csrf": nonce.group(1), "user": f"{account}|pl-broker|broker"})
        with client.stream("GET", f"/app/accounts/{account}/live") as stream:
            assert stream.status_code == 200
            chunks = stream.iter_text()
            assert next(chunks).startswith("retry:")

            def read_to_the_end() -> None:
                for _ in chunks:
                    pass
                ended.set()

            reader = threading.Thread(target=read_to_the_end, daemon=True)
            reader.start()
            code = proc.stop(timeout=30)
            reader.join(timeout=10)
    try:
        assert code == -15, f"crm-api exit status {code}"
        assert ended.is_set(), "the stream did not end with crm-api"
        log = proc.log_path.read_text()
        assert "crm-api stopped" in log
        assert "timeout graceful shutdown exceeded" not in log, "the shutdown waited for the stream, then cut it"
    finally:
        stack.start_service("crm-api")
        stack.wait_ready("crm-api", timeout=60)


def test_readme_run_command_emails_every_sample_lead(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "leadflow-dev"),
            "--work-dir",
            str(tmp_path / "run"),
            "--exit-when-done",
            "--timeout",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "every sample lead reached its agent's inbox" in result.stdout
    # 8 sample leads: 7 go to one agent each; one is offered to a race of 2 agents (summit-homes).
    assert len(list((tmp_path / "run" / "mail").glob("*.eml"))) == 9
