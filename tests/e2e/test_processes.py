"""Each service is its own process: clean SIGTERM shutdown, and the README's run command works."""

from __future__ import annotations

import subprocess
import sys
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
