"""Unit tests build production settings: give them the addresses production must name."""

from __future__ import annotations

import pytest

PREFIXES = ("INTAKE_", "ROUTER_", "NOTIFIER_", "CRM_API_", "OPS_")


@pytest.fixture(autouse=True)
def production_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    for prefix in PREFIXES:
        monkeypatch.setenv(f"{prefix}KAFKA__BOOTSTRAP_SERVERS", "kafka.example.test:9093")
        monkeypatch.setenv(f"{prefix}MONGO__URL", "mongodb://mongo.example.test:27017/?replicaSet=rs0")
