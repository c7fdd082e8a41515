"""In-memory fakes of intake's ports (accounts, idempotency store) for its unit tests; the
integration tests run the same use cases against nx-27017 (tests/integration/test_intake_*)."""

from __future__ import annotations

from leadflow_intake.handlers import AccountInfo, Claim


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
        old = self.claims[stored_key]
        self.claims[stored_key] = Claim(old.event_id, old.request_hash, old.event_json, published=True)
