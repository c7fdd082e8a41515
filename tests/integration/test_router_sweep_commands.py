"""The MongoDB commands one sweep pass costs for accounts without caps, on the real MongoDB-wire server (issue 14:
client CPU is per command): one take of every office's turns (helper 160's review of 6d8d5b3, session 32)."""

from __future__ import annotations

from collections import Counter

import pytest
from test_router_commands import counted_router, lead

from leadflow_router.adapters.mongo import AccountSnapshots
from leadflow_shared.events.routing import LeadOffered

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def test_a_sweep_pass_over_many_offices_takes_their_turns_in_one_command(mongo_url: str) -> None:
    """Ten offices, none with caps, each with one lead on offer; the offers run out together and one sweep pass
    re-offers all ten. Before 6d8d5b3 the pass took every turn in one `update` of router_rotations (and before
    37c05e9 advanced them in one); since, `_reserve_fired` calls `_reserve` once per account, each with its own
    `Rotations.take`: ten updates for ten offices, a command per account a pass holds (and a `_capped_accounts` read
    per account where snapshots are not cached). Expected: one update of router_rotations for the pass's turns (one
    more only where one was lost and given back)."""
    offices = [f"office-{n}" for n in range(10)]
    config = {
        "accounts": [
            {
                "account_id": office,
                "name": office.title(),
                "round_robin": True,
                "agents": [{"agent_id": f"{office}-{a}", "name": a.title(), "email": f"{a}@{office}.example"}
                           for a in ("ann", "bob")],
                "roster": [f"{office}-{a}" for a in ("ann", "bob")],
            }
            for office in offices
        ]
    }  # fmt: skip
    async with counted_router(mongo_url, config) as router:
        service = router.service
        service.accounts = AccountSnapshots(router.db, 60)  # cached, as in production
        assert not await service.on_leads_received([lead(account_id=office) for office in offices])
        service.clock.advance(16 * 60 * 1000)  # type: ignore[attr-defined]  # every offer (15 min) ran out
        router.published.clear()
        router.commands.sent.clear()
        assert await service.sweep_once() == 10
        offered = [e.payload for _, e in router.published.events() if isinstance(e, LeadOffered)]
        assert len(offered) == 10, "each office's lead re-offered in the pass"
        sent = Counter(c for c in router.commands.sent if c[1] not in {"accounts", "agents"})
        assert sent[("update", "router_rotations")] == 1, f"one pass's turns: {dict(sent)}"
