"""What an SRE team relies on, checked against the running processes.

- Every metric an alert or the dashboard reads is exported by a service (a renamed counter
  would otherwise leave an alert that can never fire), and the counters alerts read exist at
  zero before anything happened (the first dead letter after a start is an increase).
- Logs are JSON lines with the service, and a lead's name, email and phone appear in none of them.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually
from leadflow_shared import topics
from leadflow_shared.metrics import DEAD_LETTER_REASONS

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "router", "notifier", "crm-api")
ACCOUNT = "acct-ops-logs"
# Prometheus's own series, not a service's.
PROMETHEUS_OWN = {"up"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "or", "and", "unless", "bool",
                "offset", "inf", "nan"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions, keywords,
    label names (in braces and grouping clauses) or durations."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    found = re.findall(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?", expr)
    return {name for name, call in found if not call and name.lower() not in PROMQL_WORDS}


def test_metric_names_are_read_from_promql() -> None:
    expr = ('sum by (channel) (rate(notifier_notifications_failed_total{reason=~"a|b"}[5m])) / '
            "histogram_quantile(0.95, sum by (le) (rate(intake_request_seconds_bucket[5m]))) > 0.1 "
            "or label_replace(absent(up{x=\"y\"}), \"a\", \"b\", \"\", \"\")")  # fmt: skip
    assert metric_names(expr) == {"notifier_notifications_failed_total", "intake_request_seconds_bucket", "up"}


def queried_names() -> dict[str, set[str]]:
    """Metric name -> where it is read (alert names, dashboard panel titles)."""
    readers: dict[str, set[str]] = {}
    for group in yaml.safe_load((ROOT / "deploy/prometheus/alerts.yaml").read_text())["groups"]:
        for rule in group["rules"]:
            for name in metric_names(rule["expr"]):
                readers.setdefault(name, set()).add(rule.get("alert") or rule.get("record", "?"))
    for panel in json.loads((ROOT / "deploy/grafana/leadflow.json").read_text())["panels"]:
        for target in panel.get("targets", []):
            for name in metric_names(target["expr"]):
                readers.setdefault(name, set()).add(f"dashboard: {panel['title']}")
    return readers


async def scrape(stack: Stack) -> dict[str, list[Any]]:
    families: dict[str, list[Any]] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for service in SERVICES:
            response = await client.get(f"{stack.url(service)}/metrics")
            assert response.status_code == 200
            families[service] = list(text_string_to_metric_families(response.text))
    return families


def exported_names(families: list[Any]) -> set[str]:
    """Every series name a family can have, including labelled ones with no child yet."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count"),
                "gauge": ("",), "unknown": ("",)}  # fmt: skip
    names: set[str] = set()
    for family in families:
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


@pytest.mark.asyncio
async def test_every_metric_an_alert_or_the_dashboard_reads_is_exported(stack: Stack) -> None:
    families = await scrape(stack)
    exported = set().union(*(exported_names(f) for f in families.values()))
    missing = {name: sorted(where) for name, where in queried_names().items()
               if name not in exported and name not in PROMETHEUS_OWN}  # fmt: skip
    assert missing == {}, "alerts or dashboard panels read metrics no service exports"


@pytest.mark.asyncio
async def test_the_counters_alerts_read_exist_at_zero_from_the_start(stack: Stack) -> None:
    families = await scrape(stack)

    def labels(service: str, sample_name: str) -> set[tuple[tuple[str, str], ...]]:
        return {tuple(sorted(s.labels.items())) for f in families[service] for s in f.samples if s.name == sample_name}

    router_dead = labels("router", "router_dead_lettered_messages_total")
    for reason in DEAD_LETTER_REASONS:
        assert (("reason", reason), ("topic", topics.LEADS_INTAKE)) in router_dead
    intake_dead = labels("intake", "intake_dead_lettered_messages_total")
    assert (("reason", "failed"), ("topic", topics.LEADS_INBOUND)) in intake_dead
    failed = labels("notifier", "notifier_notifications_failed_total")
    for channel in ("email", "sms", "push"):
        assert (("channel", channel), ("reason", "unavailable")) in failed
    assert labels("crm-api", "leadflow_ready") == {(("service", "crm-api"),)}
    assert (("type", "LeadOffered"),) in labels("crm-api", "crm_api_events_projected_total")

    async def router_reports_lag() -> bool:  # every 10 s, once its consumers fetched
        families.update(await scrape(stack))
        lag = labels("router", "leadflow_consumer_lag_messages")
        return any(dict(series).get("group") == f"leadflow-router.{topics.LEADS_INTAKE}" for series in lag)

    await eventually(router_reports_lag, what="the router's consumer lag")


async def projected_offers(stack: Stack) -> float:
    families = await scrape(stack)
    samples = [sample for family in families["crm-api"] for sample in family.samples]
    wanted = ("crm_api_events_projected_total", "LeadOffered")
    return float(sum(s.value for s in samples if (s.name, s.labels.get("type")) == wanted))


@pytest.mark.asyncio
async def test_logs_are_json_and_hold_no_personal_data_of_a_lead(stack: Stack, tmp_path: Path) -> None:
    config = {"accounts": [{
        "account_id": ACCOUNT, "name": "Quiet Logs Realty", "round_robin": True, "time_zone": "America/Denver",
        "agents": [{"agent_id": "lou-ops", "name": "Lou", "email": "lou@quiet-logs.example",
                    "time_zone": "America/Denver"}],
        "roster": ["lou-ops"],
        "sources": [{"name": "Website", "race_count": 1, "claim_window_seconds": 600}],
    }]}  # fmt: skip
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps(config))
    stack.seed(path)
    offers_before = await projected_offers(stack)
    marker = uuid.uuid4().hex[:10]
    first, last, email, local = "Quenby", f"Zyx{marker}", f"quenby.{marker}@mail.example", "(720) 555-0199"
    lead = {"account_id": ACCOUNT, "first_name": first, "last_name": last, "email": email, "phone": local,
            "message": f"Call me about the loft, {marker}"}  # fmt: skip
    async with httpx.AsyncClient(timeout=10) as client:
        accepted = await client.post(f"{stack.url('intake')}/v1/leads", json=lead)
        assert accepted.status_code == 202, accepted.text
        lead_id = accepted.json()["event_id"]
        again = await client.post(f"{stack.url('intake')}/v1/leads", json=lead)  # a duplicate contact (R1)
        assert again.status_code == 202
        refused = await client.post(f"{stack.url('intake')}/v1/leads", json={**lead, "email": f"{marker}@@nowhere"})
        assert refused.status_code == 422

    assert stack.mail is not None
    mail = stack.mail

    def offered() -> bool:
        return any(m["X-Leadflow-Lead-Id"] == lead_id for m in mail.received())

    await eventually(offered, what="the offer email")

    async def projected() -> bool:
        headers = stack.auth("ops-broker", "broker", ACCOUNT)
        async with httpx.AsyncClient(base_url=stack.url("crm-api"), headers=headers, timeout=30) as crm:
            return (await crm.get(f"/v1/accounts/{ACCOUNT}/leads/{lead_id}")).status_code == 200

    await eventually(projected, what="crm-api's view of the lead")
    after = await projected_offers(stack)
    assert after > offers_before, "crm-api counts the events it projects"

    secrets = {first, last, last.lower(), email, email.split("@")[0], marker, "7205550199", "555-0199"}
    service_logs = [p for p in stack.log_dir.glob("*.log") if p.stem.split("-")[0] in {"intake", "router",
                    "notifier", "crm"}]  # fmt: skip
    assert {p.stem for p in service_logs} >= {"intake", "router", "notifier", "crm-api"}
    lines = 0
    for log in service_logs:
        for number, line in enumerate(log.read_text(errors="replace").splitlines(), 1):
            found = {s for s in secrets if s in line}
            assert not found, f"{log.name}:{number} holds personal data of the lead"
            record = json.loads(line)  # every line is one JSON object
            assert {"service", "level", "message", "time"} <= record.keys()
            lines += 1
    assert lines > 0
