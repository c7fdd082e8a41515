"""`filter_match.matches`: MongoDB's meaning of the filter forms crm-api's scopes use, and "cannot tell" (None) for
any other, which sends the read to the database (tests/integration/test_crm_scoped_reads.py compares the two on a
real server)."""

from __future__ import annotations

from typing import Any

import pytest

from leadflow_crm_api.adapters.filter_match import matches

pytestmark = [pytest.mark.unit]

ROW = {"_id": "l1", "account_id": "acme", "owner_agent_id": None, "offered_to": ["ana", None], "assigned_users": []}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"account_id": "acme"}, True),
        ({"account_id": "zeta"}, False),
        ({"offered_to": "ana"}, True),  # an array matches a value it holds
        ({"offered_to": "ben"}, False),
        ({"offered_to": None}, True),  # ... null included
        ({"assigned_users": "ana"}, False),
        ({"owner_agent_id": None}, True),  # null
        ({"transferred_to": None}, True),  # missing
        ({"transferred_to": "ana"}, False),
        ({"account_id": "acme", "$or": [{"owner_agent_id": "ana"}, {"offered_to": "ana"}]}, True),
        ({"account_id": "acme", "$or": [{"owner_agent_id": "ana"}, {"assigned_users": "ana"}]}, False),
        ({"$and": [{"account_id": "acme"}, {"offered_to": "ana"}]}, True),
        ({"$and": [{"account_id": "acme"}, {"offered_to": "ben"}]}, False),
    ],
)
def test_the_forms_scopes_use_match_as_mongodb_matches_them(condition: dict[str, Any], expected: bool) -> None:
    assert matches(ROW, condition) is expected


@pytest.mark.parametrize(
    "condition",
    [
        {"account_id": {"$eq": "acme"}},  # an operator
        {"account_id": "acme", "$nor": [{"offered_to": "ana"}]},
        {"$or": []},
        {"$or": [{"offered_to": "ana"}, {"round": 1}]},  # a number (1 and 1.0 are equal to MongoDB)
        {"contact.email": "a@b.c"},  # a dotted path
        {"$or": "not a list"},
    ],
)
def test_any_other_form_cannot_be_told_here(condition: dict[str, Any]) -> None:
    assert matches(ROW, condition) is None
