"""One stack never seeds one agent id into two accounts (leadflow_devstack/stack.py): user ids are global
(decision 0076) and crm-api refuses a token whose agent is of another office (decision 0079), so a second
module's seed moving an agent would fail the first module's tests far from the cause."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadflow_devstack.stack import Stack

pytestmark = pytest.mark.unit


def accounts(*pairs: tuple[str, list[str]]) -> dict[str, object]:
    return {"accounts": [{"account_id": a, "agents": [{"agent_id": i} for i in ids]} for a, ids in pairs]}


def test_a_seed_that_would_move_an_agent_to_another_account_is_refused(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    stack._claim_agent_ids(accounts(("north", ["nia", "ned"]), ("south", ["sol"])))
    stack._claim_agent_ids(accounts(("north", ["nia", "ned", "new"])))  # the same office seeded again: fine
    with pytest.raises(ValueError, match="'ned' is seeded into 'elsewhere' but is of 'north' already"):
        stack._claim_agent_ids(accounts(("elsewhere", ["ned"])))
    assert stack.seeded_agents == {"nia": "north", "ned": "north", "sol": "south", "new": "north"}
