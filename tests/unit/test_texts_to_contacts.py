"""An agent's text to a contact is refused when the SMS provider would refuse it: accepted (202), a text over
Twilio's 1,600 characters was dead-lettered by the notifier and never sent, the agent told nothing (an open point
of session 37). The limit counts UTF-16 units, as the provider does, and leaves room for the agent's signature; the
notifier shortens a long name (or leaves it off) so the signed text fits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow_crm_api.api import TEXT_MAX, ActivityCreate
from leadflow_notifier.domain.messages import TEXT_LIMIT, Recipient, SmsContent, contact_message
from leadflow_shared.events.routing import ContactMessaged, ContactMessagedPayload

pytestmark = pytest.mark.unit


def _text(body: str) -> ActivityCreate:
    return ActivityCreate.model_validate({"action": "sms", "message": {"body": body}})


def test_a_text_within_the_provider_s_limit_is_taken() -> None:
    assert _text("x" * TEXT_MAX).message is not None
    assert _text("\N{GRINNING FACE}" * (TEXT_MAX // 2)).message is not None


def test_a_text_over_the_limit_is_refused_naming_the_field() -> None:
    for body in ("x" * (TEXT_MAX + 1), "\N{GRINNING FACE}" * (TEXT_MAX // 2 + 1)):
        with pytest.raises(ValidationError, match=r"message\.body: a text is at most 1400 characters"):
            _text(body)


def test_an_email_keeps_its_longer_limit() -> None:
    email = ActivityCreate.model_validate({"action": "email", "message": {"body": "x" * 5000}})
    assert email.message is not None


@given(st.text(st.characters(codec="utf-8"), min_size=1, max_size=1700).filter(str.strip))
def test_every_text_taken_fits_the_provider_with_a_signature(body: str) -> None:
    try:
        taken = _text(body)
    except ValidationError:
        return
    assert taken.message is not None
    assert _units(_sent(taken.message.body, "N" * 200)[1].body) <= TEXT_LIMIT


def _units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _sent(body: str, name: str) -> tuple[str, SmsContent]:
    """(the body as the event keeps it, the text sent)."""
    try:
        payload = ContactMessagedPayload(
            lead_id=uuid.uuid4(), agent_id="ana", channel="sms", to="+13125550199", body=body
        )
    except ValidationError:
        assume(False)  # not a body the event takes
        raise
    event = ContactMessaged.create(account_id="north", occurred_at=datetime(2026, 12, 2, tzinfo=UTC), payload=payload)
    sent = contact_message(event, Recipient(agent_id="ana", name=name, email="ana@example.com"))
    assert isinstance(sent, SmsContent)
    return payload.body, sent


@given(body=st.text(min_size=1, max_size=1600), name=st.text(max_size=400))
def test_the_notifier_signs_a_text_within_the_provider_s_limit(body: str, name: str) -> None:
    kept, sent = _sent(body, name)
    assert sent.body.startswith(kept), "the agent's words are never cut"
    assert _units(sent.body) <= max(TEXT_LIMIT, _units(kept))
    assert _sent("Hi", "Ana")[1].body == "Hi\n- Ana"
