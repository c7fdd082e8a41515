"""A misspelt variable is named at start by the service process itself, with the nearest setting and never its
value, and the service runs on (decision 0084): an intake beside the stack's, started with misspelt names,
serves and ignores them. Each service's command warns the same way, also when its settings are then refused
(without printing the values pydantic's message would). The stack's own services start without a warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from leadflow_devstack.stack import SERVICES, Stack

pytestmark = [pytest.mark.e2e]

SECRET = "never-in-a-log-5b1e"  # the value of every misspelt variable: it must appear in no log


def settings_lines(log: str) -> list[dict[str, Any]]:
    """The JSON lines of `log` about settings: unknown variables and refusals."""
    found = []
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and ("variable" in record or "setting" in record):
            found.append(record)
    return found


def test_an_intake_started_with_misspelt_variables_names_them_and_serves_without_them(stack: Stack) -> None:
    misspelt = {
        "INTAKE_MAX_BODY_BYTE": "1024",  # were it read, the 2 KiB body below would be refused with 413
        "intake_http__body_timeout_second": SECRET,  # names are read in any case: so is the check
        "INTAKE_WEBHOOKS__SECRET": SECRET,  # the nearest name is a guess, but a setting
        "INTAKE_QQQQQQQQQQQQQQQQQQQQQQQQ": SECRET,  # nothing near
    }
    with stack.extra_intake("intake-misspelt", {}, env=misspelt) as url:
        answer = httpx.post(f"{url}/v1/leads", content=b"{" + b" " * 2048, headers={"Content-Type": "application/json"})
        assert answer.status_code in {400, 422}, answer.text  # read as JSON, not refused for its size
        log = stack.services["intake-misspelt"].log_path.read_text()
    warned = {
        (line["variable"], line["nearest_setting"], line["level"], line["service"]) for line in settings_lines(log)
    }
    assert warned == {
        ("INTAKE_MAX_BODY_BYTE", "INTAKE_MAX_BODY_BYTES", "WARNING", "intake"),
        ("intake_http__body_timeout_second", "INTAKE_HTTP__BODY_TIMEOUT_SECONDS", "WARNING", "intake"),
        ("INTAKE_WEBHOOKS__SECRET", "INTAKE_WEBHOOKS__PROVIDERS", "WARNING", "intake"),
        ("INTAKE_QQQQQQQQQQQQQQQQQQQQQQQQ", None, "WARNING", "intake"),
    }
    assert SECRET not in log


@pytest.mark.parametrize(("service", "prefix"), [(name, prefix) for name, prefix, _ in SERVICES])
def test_every_service_names_a_misspelt_variable_before_it_refuses_its_settings(
    service: str, prefix: str, tmp_path: Path
) -> None:
    # Production without Kafka's address: refused at once, before connecting to anything.
    env = {key: value for key, value in os.environ.items() if not key.upper().startswith(prefix)}
    env |= {f"{prefix}ENVIRONMENT": "production", f"{prefix}MONGO__URL": f"mongodb://u:{SECRET}@db/",
            f"{prefix}KAFKA__BOOTSTRAP_SERVER": SECRET}  # fmt: skip
    command = str(Path(sys.executable).parent / f"leadflow-{service}")
    ran = subprocess.run([command], env=env, capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    assert ran.returncode == 2, ran.stderr[-3000:]
    lines = settings_lines(ran.stderr)
    assert [(line["variable"], line["nearest_setting"]) for line in lines if "variable" in line] == [
        (f"{prefix}KAFKA__BOOTSTRAP_SERVER", f"{prefix}KAFKA__BOOTSTRAP_SERVERS")
    ]
    refusals = [line for line in lines if "setting" in line]
    assert refusals, ran.stderr[-3000:]
    assert any(f"{prefix}KAFKA__BOOTSTRAP_SERVERS must be set in production" in line["message"] for line in refusals)
    assert SECRET not in ran.stdout + ran.stderr
    assert "Traceback" not in ran.stderr


@pytest.mark.parametrize("service", [name for name, _, _ in SERVICES])
def test_the_stack_s_services_start_without_an_unknown_variable(stack: Stack, service: str) -> None:
    log = stack.services[service].log_path.read_text()
    assert '"service": ' in log, f"{service}: no JSON log lines to look at"
    assert settings_lines(log) == []
