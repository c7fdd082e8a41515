"""What crm-api accepts as people's names and as visible text (leadflow_crm_api.domain.text), and where.

Issue 10: names made only of emoji or zero-width characters, or holding bidirectional overrides,
were accepted by the invitation (realtor) name and shown to brokers, realtors and in emails.
"""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow_crm_api.domain.sharing import MAX_REALTOR_LABEL, realtor_label
from leadflow_crm_api.domain.text import MAX_PERSON_NAME, email_address, person_name, visible_text
from leadflow_crm_api.use_cases.offices import LeadProfile
from leadflow_crm_api.use_cases.sharing import InvitationCreate

pytestmark = pytest.mark.unit

PROPERTY = settings(database=None, deadline=None, max_examples=300)

REAL_NAMES = [
    "Riley Park",
    "José María O'Neil-Smith",
    "Dr. Jane Doe, Jr.",
    "Łukasz Żółć",
    "Nguyễn Văn A",
    "李小龙",
    "山田・太郎",
    "محمد\u200cرضا",  # ZWNJ between letters: Persian spelling
    "देवनागरी",
    "Zoë d’Arc",
    "Anne-Marie (Annie) Dupont",
    "John Smith 3",
    "ג׳ורג׳",
]

HIDDEN = [
    "\u202e",  # RIGHT-TO-LEFT OVERRIDE (issue 10)
    "\u202a",
    "\u202b",
    "\u202c",
    "\u202d",  # embeddings and overrides
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069",  # isolates
    "\u200e",
    "\u200f",
    "\u061c",  # direction marks
    "\u200b",
    "\u2060",
    "\ufeff",
    "\u00ad",
    "\u180e",  # zero-width space, word joiner, BOM, soft hyphen
    "\u0000",
    "\u0007",
    "\u007f",  # controls
    "\ue000",  # private use
    "\U000e0041",  # tag character
    "\u3164",
    "\u115f",
    "\u2800",  # Hangul filler, choseong filler, blank Braille: letters that draw nothing
]


@pytest.mark.parametrize("name", REAL_NAMES)
def test_real_names_of_many_scripts_are_accepted_as_given(name: str) -> None:
    assert person_name(name) == unicodedata.normalize("NFC", name)


@pytest.mark.parametrize(
    "name",
    ["😀", "😀😀 🎉", "\u200b\u200b", "\u200d", "\u200c\u200c", "123", "...", "  ", "\u3164\u3164", "✓"],
)
def test_names_without_letters_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"letters|invisible|visible|joiner"):
        person_name(name)


@pytest.mark.parametrize("hidden", HIDDEN)
def test_invisible_and_direction_changing_characters_are_refused_anywhere(hidden: str) -> None:
    for text in (f"Ann{hidden}Lee", f"{hidden}Ann", f"Ann{hidden}", f"Ann {hidden}gnirts"):
        with pytest.raises(ValueError, match="invisible or control"):
            person_name(text)
        with pytest.raises(ValueError, match="invisible or control"):
            visible_text(text)


@pytest.mark.parametrize("name", ["Ann 😀", "Ann <b>", "ann@example.com", "Ann & Bob", "Ann#1", "Ⅲ Ann"])
def test_names_hold_no_symbols(name: str) -> None:
    with pytest.raises(ValueError, match="a name holds letters"):
        person_name(name)


def test_joiners_must_join_visible_characters() -> None:
    assert visible_text("👨\u200d👩\u200d👧") == "👨\u200d👩\u200d👧"  # an emoji family is one visible label
    for text in ("\u200dAnn", "Ann\u200d", "Ann \u200d Lee", "Ann\u200d\u200dLee"):
        with pytest.raises(ValueError, match="joiner"):
            visible_text(text)


def test_visible_text_collapses_spaces_and_bounds_the_normalized_length() -> None:
    assert visible_text("  Hot \t\n lead  ") == "Hot lead"
    assert visible_text("🔥") == "🔥", "labels may be emoji: they show something"
    with pytest.raises(ValueError, match="at most 3"):
        visible_text("abcd", max_length=3)
    assert person_name("A" * MAX_PERSON_NAME) == "A" * MAX_PERSON_NAME
    with pytest.raises(ValueError, match="at most 100"):
        person_name("A" * (MAX_PERSON_NAME + 1))


_letters = st.characters(categories=["Lu", "Ll", "Lo"], exclude_characters="\u115f\u1160\u3164\uffa0")
_name_parts = st.text(_letters, min_size=1, max_size=12)


@PROPERTY
@given(st.lists(_name_parts, min_size=1, max_size=4), st.sampled_from([" ", "-", " ' ", ". "]))
def test_any_letters_joined_by_name_punctuation_make_a_name_and_normalizing_is_idempotent(
    parts: list[str], glue: str
) -> None:
    raw = glue.join(parts)
    name = person_name(raw)
    assert person_name(name) == name
    assert len(name) <= len(unicodedata.normalize("NFC", raw))


@PROPERTY
@given(st.text(max_size=40), st.sampled_from(HIDDEN), st.text(max_size=40))
def test_nothing_with_a_hidden_character_is_accepted(before: str, hidden: str, after: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (whichever rule refuses it first)
        person_name(before + hidden + after)


@PROPERTY
@given(st.text(st.characters(categories=["So", "Sk", "Sm", "Nd", "Zs", "Mn", "Cf", "Cc"]), max_size=30))
def test_text_without_a_letter_is_never_a_name(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        person_name(text)


def test_the_invitation_name_is_a_person_name_and_its_error_quotes_nothing() -> None:
    ok = InvitationCreate.model_validate({"realtor_id": "riley", "email": "riley@example.com", "name": " Riley  Park "})
    assert ok.name == "Riley Park"
    for bad in ("😀", "\u200b\u200b", "Riley \u202ekraP", "Riley \u2066Park"):
        with pytest.raises(ValidationError) as refused:
            InvitationCreate.model_validate({"realtor_id": "riley", "email": "riley@example.com", "name": bad})
        errors = refused.value.errors(include_input=False, include_url=False)
        assert [e["loc"] for e in errors] == [("name",)]
        assert bad not in str(errors)


def test_invitation_emails_are_refused_without_quoting_the_address() -> None:
    assert email_address(" Riley.Park@Example.COM ") == "Riley.Park@example.com"
    for bad in ("jane.secret<@example.com", "jane.secret@@example.com", "jane@exa mple.com", "no-at-sign"):
        with pytest.raises(ValueError, match=r"^not a valid email address$"):
            email_address(bad)


def test_profile_labels_and_lines_must_be_visible_text() -> None:
    profile = LeadProfile.model_validate({"labels": ["🔥 Hot", "  Relocating "], "company": "Harbor  Lofts"})
    assert (profile.labels, profile.company) == (["🔥 Hot", "Relocating"], "Harbor Lofts")
    for field, value in (("labels", ["Hot\u202e"]), ("campaigns", ["\u200b"]), ("company", "A\u0000B")):
        with pytest.raises(ValidationError):
            LeadProfile.model_validate({field: value})


def test_the_realtor_label_fits_the_events_limit_even_for_names_stored_before_the_limit() -> None:
    assert realtor_label("Riley Park", "riley") == "Riley Park (riley)"
    assert realtor_label(None, "riley") == "riley"
    label = realtor_label("R" * 200, "r" * 64)
    assert len(label) <= MAX_REALTOR_LABEL
    assert label.endswith(f"… ({'r' * 64})")
