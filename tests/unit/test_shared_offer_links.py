"""Accept links: short, signed, and only ours (issue 11.6)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadflow_shared import offer_links
from leadflow_shared.offer_links import InvalidOfferLink, link_id_from, link_id_of, token_for

pytestmark = pytest.mark.unit

KEY = "an-offer-link-key-of-more-than-32-bytes!"


def test_a_token_carries_its_offers_link_and_fits_a_text_message() -> None:
    link = link_id_of(uuid.uuid4())
    token = token_for(link, KEY)
    assert len(token) == 43
    assert link_id_from(token, KEY) == link
    assert link_id_of(uuid.UUID(int=7)) == link_id_of(uuid.UUID(int=7)), "a redelivered offer has the same link"


def test_another_key_or_any_changed_character_is_refused() -> None:
    token = token_for(link_id_of(uuid.uuid4()), KEY)
    with pytest.raises(InvalidOfferLink):
        link_id_from(token, KEY.upper())
    for i in range(len(token)):
        for other in "AB_-":  # the last character's low bits are padding: changing only them is refused too
            if other != token[i]:
                with pytest.raises(InvalidOfferLink):
                    link_id_from(token[:i] + other + token[i + 1 :], KEY)


@given(st.text(max_size=80))
def test_anything_else_is_refused_never_crashes(token: str) -> None:
    with pytest.raises(InvalidOfferLink):
        link_id_from(token, KEY)


def test_the_key_is_required_outside_development_and_strong() -> None:
    assert offer_links.resolve_key(None, "development", "k") == offer_links.DEVELOPMENT_KEY
    with pytest.raises(ValueError, match="must be set"):
        offer_links.resolve_key(None, "production", "k")
    with pytest.raises(ValueError, match="refused in production"):
        offer_links.resolve_key(offer_links.DEVELOPMENT_KEY, "production", "k")
    with pytest.raises(ValueError, match="at least 32 bytes"):
        offer_links.resolve_key("short", "staging", "k")
    assert offer_links.resolve_key(KEY, "production", "k") == KEY
