"""In-memory fakes of intake's ports (accounts, idempotency store, publisher, cache clock) for its tests;
the integration tests run the same use cases against nx-27017 (tests/integration/test_intake_*).

Imported by unit and integration tests alike (pyproject puts tests/unit on pytest's sys.path; it holds no tests).
"""

from __future__ import annotations

import dataclasses

from leadflow_intake.handlers import AccountInfo, Claim
from leadflow_shared.events.intake import LeadReceived


class FakeAccounts:
    def __init__(self, regions: dict[str, str], agents: dict[str, set[str]] | None = None) -> None:
        self.regions = regions
        self.agents = agents if agents is not None else {"acme-realty": {"blair-chen", "casey-okafor"}}

    async def find(self, account_id: str) -> AccountInfo | None:
        region = self.regions.get(account_id)
        return AccountInfo(region) if region else None

    async def has_agent(self, account_id: str, agent_id: str) -> bool:
        return agent_id in self.agents.get(account_id, set())


class FakeStore:
    def __init__(self) -> None:
        self.claims: dict[str, Claim] = {}

    async def find(self, stored_key: str) -> Claim | None:
        return self.claims.get(stored_key)

    async def claim(self, stored_key: str, claim: Claim) -> tuple[Claim, bool]:
        stored = self.claims.setdefault(stored_key, claim)
        return stored, stored is claim

    async def mark_published(self, stored_key: str) -> None:
        self.claims[stored_key] = dataclasses.replace(self.claims[stored_key], published=True)


class Published(list[LeadReceived]):
    """The publisher: keeps each LeadReceived it is given, after checking it is keyed by its account."""

    async def __call__(self, account_id: str, event_json: bytes) -> None:
        event = LeadReceived.model_validate_json(event_json)
        assert event.account_id == account_id
        self.append(event)


class FailingOnce:
    """A publisher whose first call fails as a crash between the claim and the publish would (Kafka down,
    or the process killed): the claim stays unpublished. Later calls go to `then`."""

    def __init__(self, then: Published) -> None:
        self.then = then
        self.calls = 0

    async def __call__(self, account_id: str, event_json: bytes) -> None:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("intake stopped before publishing")
        await self.then(account_id, event_json)


class MonotonicClock:
    """The seconds a cache reads (time.monotonic's stand-in); the test moves `now`."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
