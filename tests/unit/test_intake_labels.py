"""A source name is a label (decision 0100): one line, visible, never blank, on every way in (helper 142's review
of f691dab). Invisible format characters (Cf: zero-width space U+200B, word joiner U+2060, the byte order mark U+FEFF,
soft hyphen U+00AD) stayed in a label, as controls did before: a source name of only them was published, blank to
every reader, and one a partner's CSV export prefixed with a BOM ("\\ufeffWebsite") matched no configured source (the
router looks a source up by its exact name: `AccountSnapshot.source`). Labels drop them as names do
(`normalize._visible`), and a line break or tab is a space (a line break in a source name broke an SMS's line).
"""

from __future__ import annotations

import asyncio
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_intake_any_field import _outcome, _post_webhook

pytestmark = pytest.mark.unit

WAYS = ["form", "listing", "partner"]
_JOINERS = "\u200c\u200d"  # kept in names (they shape letters): not asked of a label either


def _invisible(text: str) -> list[str]:
    """The characters of `text` nobody sees: controls and format characters (joiners aside)."""
    return [c for c in text if unicodedata.category(c) in {"Cc", "Cf"} and c not in _JOINERS]


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("name", ["\u200b", "\ufeff", "\u2060\u200b ", "\u00ad"], ids=["zwsp", "bom", "wj-zwsp", "shy"])
def test_a_source_name_of_only_invisible_format_characters_is_refused_like_a_blank_one(way: str, name: str) -> None:
    """Published with source name "\\u200b" (and so on) before, blank to the eye, in a source nobody configured."""
    assert _outcome(way, {"source_name": name}) is None


@pytest.mark.parametrize("way", WAYS)
def test_a_source_name_a_byte_order_mark_starts_is_published_as_the_configured_name(way: str) -> None:
    """A partner's CSV export read without its BOM stripped: the first column's first value starts with U+FEFF. Once
    published "\\ufeffWebsite", which the router's `sources.get(name)` does not find (the default source routes it)."""
    leads = _outcome(way, {"source_name": "\ufeffWebsite"})
    assert leads is not None
    assert [lead.payload.source.name for lead in leads] == ["Website"]


def test_a_generic_webhooks_source_name_with_a_zero_width_space_is_published_without_it() -> None:
    status, leads = asyncio.run(
        _post_webhook(
            "idx", "generic", {"first_name": "Jane", "email": "jane@example.com", "source_name": "Zil\u200blow"}
        )
    )
    assert status == 202
    assert [lead.payload.source.name for lead in leads] == ["Zillow"]


_LABEL_CHARS = "Web site\u200b\ufeff\u2060\u00ad\u200c\x1c\x00\t\xa0\u2028"


@settings(database=None, deadline=None, max_examples=150, suppress_health_check=list(HealthCheck))
@given(way=st.sampled_from(WAYS), name=st.text(st.sampled_from(_LABEL_CHARS), min_size=1, max_size=30))
def test_a_published_source_name_holds_no_invisible_character_and_is_never_blank(way: str, name: str) -> None:
    """Whatever the source name, it is refused, or published visible: no control or format character (joiners
    aside), and something left once they are gone."""
    leads = _outcome(way, {"source_name": name})
    for lead in leads or []:
        published = lead.payload.source.name
        assert _invisible(published) == []
        assert published.strip()
