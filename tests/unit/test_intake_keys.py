"""Idempotency key spaces: one per way in, and no key of one can be another's (issue 10, item 4)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow_intake.domain import keys
from leadflow_intake.domain.keys import KeySpace, Way, stored_key

pytestmark = pytest.mark.unit

_spaces = st.sampled_from([keys.WEBSITE, keys.LISTING_INQUIRY, keys.PARTNER]) | st.builds(
    keys.webhook, st.from_regex(r"[a-z0-9][a-z0-9-]{0,10}", fullmatch=True)
)
_accounts = st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True)
# Keys as a caller would craft them to reach another space: made of the other ids and separators.
_keys = st.text(st.sampled_from("abk/:.-_") | st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)


@settings(database=None, deadline=None, max_examples=500)
@given(_spaces, _accounts, _keys, _spaces, _accounts, _keys)
def test_distinct_keys_are_stored_apart(
    space: KeySpace, account: str, key: str, other_space: KeySpace, other_account: str, other_key: str
) -> None:
    if (space, account, key) != (other_space, other_account, other_key):
        assert stored_key(space, account, key) != stored_key(other_space, other_account, other_key)


@pytest.mark.parametrize(
    ("crafted", "target"),
    [
        ("webhook:homefinder:k1", (keys.webhook("homefinder"), "k1")),
        ("inbound:5f0c3f4e-2b7a-4f3e-9a51-2d0c6f1b7a10", (keys.PARTNER, "5f0c3f4e-2b7a-4f3e-9a51-2d0c6f1b7a10")),
        ("../webhook.homefinder/acme-realty/k1", (keys.webhook("homefinder"), "k1")),
        ("/acme-realty/k1", (keys.LISTING_INQUIRY, "k1")),
    ],
)
def test_the_issues_crafted_form_keys_land_in_the_form_space(crafted: str, target: tuple[KeySpace, str]) -> None:
    space, key = target
    assert stored_key(keys.WEBSITE, "acme-realty", crafted) != stored_key(space, "acme-realty", key)


def test_spaces_name_a_provider_exactly_for_webhooks() -> None:
    with pytest.raises(ValueError, match="provider"):
        KeySpace(Way.WEBHOOK)
    with pytest.raises(ValueError, match="provider"):
        KeySpace(Way.WEBSITE, "homefinder")
    with pytest.raises(ValueError, match="provider"):
        keys.webhook("Home/Finder")
    with pytest.raises(ValueError, match="account"):
        stored_key(keys.WEBSITE, "acme/realty", "k")
