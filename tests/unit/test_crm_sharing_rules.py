"""Lead sharing (T1) and invitations (V4): the pure rules in leadflow_crm_api.domain.sharing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from leadflow_crm_api.domain.distribution import LeadFilter
from leadflow_crm_api.domain.sharing import (
    INVITATION_VALID,
    MAX_NAMED_IDS,
    InvitationStatus,
    InviteOutcome,
    answer_refusal,
    effective_status,
    invitation_id,
    invite_outcome,
    lead_row_transfer,
    leave_refusal,
    missing_leads,
    missing_refusal,
    same_transfer,
    transfer_entry,
    transfer_id,
    transfer_record,
    transfer_refusal,
    unique,
    withdraw_refusal,
)
from leadflow_crm_api.domain.views import LeadTab
from leadflow_crm_api.use_cases.sharing import TransferCreate

pytestmark = pytest.mark.unit

PENDING, ACCEPTED, DECLINED = InvitationStatus.PENDING, InvitationStatus.ACCEPTED, InvitationStatus.DECLINED
AT = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)


def _record(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "transfer_id": transfer_id("acme-realty", "key-1"),
        "account_id": "acme-realty",
        "realtor_id": "ria",
        "realtor_name": "Ria Lopez (ria)",
        "lead_ids": ["l1", "l2"],
        "assigned_by": "Acme Realty",
        "by": "bo-broker",
        "at": AT,
    }
    return transfer_record(**{**fields, **overrides})  # type: ignore[arg-type]


def test_only_a_realtor_who_accepted_can_receive_and_every_refusal_names_the_reason() -> None:
    assert transfer_refusal(ACCEPTED) is None
    reasons = {status: transfer_refusal(status) for status in (None, PENDING, DECLINED)}
    assert all(r and r.startswith("realtor_id: ") for r in reasons.values()), reasons
    assert "accepted" in str(reasons[PENDING])
    assert "pending" in str(reasons[PENDING])
    assert "declined" in str(reasons[DECLINED])
    assert "never invited" in str(reasons[None])


def test_invite_creates_reopens_after_decline_keeps_pending_and_refuses_accepted() -> None:
    assert invite_outcome(None) is InviteOutcome.CREATE
    assert invite_outcome(DECLINED) is InviteOutcome.REOPEN
    assert invite_outcome(PENDING) is InviteOutcome.UNCHANGED
    assert invite_outcome(ACCEPTED) is InviteOutcome.REFUSE
    for ended in (InvitationStatus.DISCONNECTED, InvitationStatus.WITHDRAWN, InvitationStatus.LEFT, EXPIRED):
        assert invite_outcome(ended) is InviteOutcome.REOPEN, ended


EXPIRED = InvitationStatus.EXPIRED
VALID_MS = int(INVITATION_VALID / timedelta(milliseconds=1))


def test_a_pending_invitation_expires_after_its_validity_and_nothing_else_does() -> None:
    invited = 1_700_000_000_000
    assert effective_status("pending", invited, invited + VALID_MS) is PENDING
    assert effective_status("pending", invited, invited + VALID_MS + 1) is EXPIRED
    for stored in ("accepted", "declined", "disconnected", "withdrawn", "left"):
        assert effective_status(stored, invited, invited + 10 * VALID_MS) is InvitationStatus(stored)


def test_an_expired_or_withdrawn_invitation_cannot_be_answered_and_says_why() -> None:
    assert "expired" in str(answer_refusal(EXPIRED, ACCEPTED))
    assert "withdrew" in str(answer_refusal(InvitationStatus.WITHDRAWN, ACCEPTED))
    assert "withdrew" in str(answer_refusal(InvitationStatus.WITHDRAWN, DECLINED))
    assert "left" in str(answer_refusal(InvitationStatus.LEFT, ACCEPTED))


def test_only_an_unanswered_invitation_is_withdrawn_and_only_a_joined_realtor_leaves() -> None:
    for status in (PENDING, EXPIRED, InvitationStatus.WITHDRAWN):
        assert withdraw_refusal(status) is None, status
    assert "disconnect" in str(withdraw_refusal(ACCEPTED))
    for status in (DECLINED, InvitationStatus.DISCONNECTED, InvitationStatus.LEFT):
        assert withdraw_refusal(status) is not None, status
    for status in (ACCEPTED, InvitationStatus.LEFT):
        assert leave_refusal(status) is None, status
    for status in (PENDING, EXPIRED, DECLINED, InvitationStatus.DISCONNECTED, InvitationStatus.WITHDRAWN):
        assert status.value in str(leave_refusal(status)), status


def test_no_transfer_to_a_realtor_who_left_was_withdrawn_or_whose_invitation_expired() -> None:
    assert "left" in str(transfer_refusal(InvitationStatus.LEFT))
    assert "withdrew" in str(transfer_refusal(InvitationStatus.WITHDRAWN))
    assert "expired" in str(transfer_refusal(EXPIRED))


def test_an_invitation_is_answered_once_and_the_same_answer_again_is_a_retry() -> None:
    assert answer_refusal(PENDING, ACCEPTED) is None
    assert answer_refusal(PENDING, DECLINED) is None
    assert answer_refusal(ACCEPTED, ACCEPTED) is None
    assert answer_refusal(DECLINED, DECLINED) is None
    assert answer_refusal(ACCEPTED, DECLINED) == "the invitation is already accepted"
    assert answer_refusal(DECLINED, ACCEPTED) == "the invitation is already declined"
    assert answer_refusal(PENDING, PENDING) is not None


def test_one_invitation_id_per_brokerage_and_realtor() -> None:
    assert invitation_id("acme-realty", "ria") == invitation_id("acme-realty", "ria")
    assert (
        len(
            {
                invitation_id("acme-realty", "ria"),
                invitation_id("acme-realty", "rob"),
                invitation_id("other-realty", "ria"),
            }
        )
        == 3
    )


def test_the_selection_is_deduplicated_in_order_and_missing_leads_are_named() -> None:
    assert unique(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]
    assert missing_leads(["a", "b", "c"], {"b"}) == ["a", "c"]
    assert missing_leads(["a"], {"a"}) == []
    refusal = missing_refusal(["x1", "x2"])
    assert refusal.startswith("lead_ids: 2 not found")
    assert "x1, x2" in refusal
    assert "nothing was transferred" in refusal
    many = [f"id{i}" for i in range(MAX_NAMED_IDS + 5)]
    assert missing_refusal(many).endswith("and 5 more")
    assert f"id{MAX_NAMED_IDS}" not in missing_refusal(many)


def test_an_idempotency_key_gives_the_same_transfer_id_per_account_and_none_a_new_one() -> None:
    assert transfer_id("acme-realty", "k") == transfer_id("acme-realty", "k")
    assert transfer_id("acme-realty", "k") != transfer_id("other-realty", "k")
    assert transfer_id("acme-realty", None) != transfer_id("acme-realty", None)


def test_a_reused_key_matches_only_the_same_realtor_and_selection() -> None:
    stored = _record()
    assert same_transfer(stored, realtor_id="ria", lead_ids=["l2", "l1"])
    assert not same_transfer(stored, realtor_id="rob", lead_ids=["l1", "l2"])
    assert not same_transfer(stored, realtor_id="ria", lead_ids=["l1"])


def test_a_filtered_transfer_is_known_again_by_its_filter_whichever_leads_it_matches_now() -> None:
    # Session 32 (helper 144): a retry of "every lead of My Leads" matches none once they are shared; the record
    # keeps the filter, and the leads its first attempt picked.
    mine = LeadFilter(tab=LeadTab.MINE).as_stored()
    stored = _record(lead_filter=mine)
    assert same_transfer(stored, realtor_id="ria", lead_ids=None, lead_filter=mine)
    assert same_transfer(stored, realtor_id="ria", lead_ids=None, lead_filter=LeadFilter.model_validate(
        {"q": None, "tab": "mine"}).as_stored()), "the same filter, written otherwise"  # fmt: skip
    assert not same_transfer(stored, realtor_id="rob", lead_ids=None, lead_filter=mine)
    assert not same_transfer(stored, realtor_id="ria", lead_ids=None, lead_filter=LeadFilter().as_stored())
    assert not same_transfer(stored, realtor_id="ria", lead_ids=["l1", "l2"]), "its leads named: another request"
    assert not same_transfer(_record(), realtor_id="ria", lead_ids=None, lead_filter=mine), "named, then a filter"
    assert LeadFilter().as_stored() == LeadFilter(tab=LeadTab.ALL).as_stored() == "{}"
    before = {k: v for k, v in _record().items() if k != "filter"}  # stored before records kept their filter
    assert same_transfer(before, realtor_id="ria", lead_ids=None, lead_filter=mine)
    assert same_transfer(before, realtor_id="ria", lead_ids=["l2", "l1"])
    assert not same_transfer(before, realtor_id="rob", lead_ids=None, lead_filter=mine)


def test_the_row_change_and_timeline_entry_come_from_the_record_so_a_retry_writes_the_same() -> None:
    record = _record(at=AT.replace(microsecond=123456))
    assert record["at"] == AT, "stored at MongoDB's millisecond precision, so a retry answers the same time"
    assert lead_row_transfer(record) == {
        "transferred_to": "ria",
        "transferred_to_name": "Ria Lopez (ria)",
        "transferred_at": AT,
        "transferred_ms": 1772366400123,
        "assigned_by": "Acme Realty",
        "transfer_id": record["_id"],
    }
    entry = transfer_entry(record, "l1")
    assert entry == transfer_entry(_record(), "l1"), "a retry of the same key must insert the same document"
    assert entry["_id"] != transfer_entry(record, "l2")["_id"]
    assert entry["_id"] != transfer_entry(_record(transfer_id=transfer_id("acme-realty", "key-2")), "l1")["_id"]
    assert (entry["type"], entry["lead_id"], entry["account_id"], entry["occurred_ms"]) == (
        "LeadShared",
        "l1",
        "acme-realty",
        1772366400123,
    )
    assert entry["summary"] == "Transferred to Ria Lopez (ria) by Acme Realty"


def test_a_transfer_request_holds_1_to_500_plain_ids() -> None:
    assert TransferCreate(lead_ids=["a"] * 500, realtor_id="ria").lead_ids == ["a"] * 500
    assert TransferCreate.model_validate({"filter": {"status": "assigned"}, "realtor_id": "ria"}).filter is not None
    for bad in (
        {"lead_ids": [], "realtor_id": "ria"},
        {"lead_ids": ["a"] * 501, "realtor_id": "ria"},
        {"realtor_id": "ria"},
        {"lead_ids": ["a"], "filter": {}, "realtor_id": "ria"},
        {"lead_ids": [{"$ne": None}], "realtor_id": "ria"},
        {"lead_ids": ["a"], "realtor_id": "$where"},
        {"lead_ids": ["a"], "realtor_id": "ria", "extra": 1},
    ):
        with pytest.raises(ValidationError):
            TransferCreate.model_validate(bad)
