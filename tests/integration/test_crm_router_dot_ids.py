"""A routing rule saved with the id "." or ".." (both fit the id pattern `^[A-Za-z0-9_.-]+$`) has its "who is next"
(helper 175's review). crm-api put ids into the router's URL as they were, and httpx removes dot segments from a
path (RFC 3986): it asked `/internal/v1/accounts/oak/routing/next` or `.../routing/rules/next` instead, the router
answered 404, the JSON route said "No such routing rule." and the Settings page left the rule out without a word.
Now every id is one escaped segment, a dot segment spelled %2E (`router_api.segment`), which the router reads back
as the id."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from routing_world import ACCOUNT, BROKER, World, config, world_on

from leadflow_crm_api.use_cases import next_up as next_up_uc

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

RULES = {
    "rules": [
        {"id": ".", "name": "Dot", "criteria": {"price_min": 5}, "action": {"kind": "agent", "agent_id": "villa1"}},
        {"id": "..", "name": "Dots", "criteria": {"price_min": 5}, "action": {"kind": "agent", "agent_id": "villa2"}},
        {"id": "plain", "name": "Plain", "criteria": {"price_min": 5}, "action": {"kind": "agent", "agent_id": "let1"}},
    ]
}


@pytest_asyncio.fixture(loop_scope="session")
async def world(mongo_url: str) -> AsyncIterator[World]:
    async with world_on(mongo_url, config(rules=RULES)) as world:
        yield world


@pytest.mark.parametrize("rule_id", [".", ".."])
async def test_who_is_next_for_a_saved_rule_whose_id_is_dots_is_answered(world: World, rule_id: str) -> None:
    got = await next_up_uc.who_is_next_by_rule(ACCOUNT, rule_id, BROKER, world.db, world.api, None)
    assert got.rule_id == rule_id


async def test_the_settings_page_s_who_is_next_leaves_no_saved_rule_out(world: World) -> None:
    found, failed = await next_up_uc.next_per_rule(world.api, world.db, ACCOUNT, [".", "..", "plain"], None)
    assert failed is None
    assert sorted(found) == [".", "..", "plain"]
