"""A lead as every input path hands it to intake, and its normalization into LeadReceived's payload."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from leadflow_intake.domain.errors import FieldError, InvalidLead
from leadflow_intake.domain.normalize import (
    check_name,
    normalize_email,
    normalize_free_text,
    normalize_host,
    normalize_phone,
    normalize_utm,
)
from leadflow_shared.events.criteria import LeadCriteria
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceivedPayload, LeadSource

MESSAGE_LIMIT = 5000  # LeadReceivedPayload.message's max_length


@dataclass(frozen=True, slots=True)
class Submission:
    """Raw lead fields from a form, a webhook or a partner message, before normalization."""

    account_id: str
    channel: LeadChannel
    source_name: str
    first_name: str = ""
    last_name: str = ""
    email: str | None = None
    phone: str | None = None
    message: str = ""
    site_host: str | None = None
    listing_id: str | None = None
    listing_agent_id: str | None = None
    assigned_agent_id: str | None = None
    provider: str | None = None
    utm: dict[str, str] = field(default_factory=dict)
    criteria: LeadCriteria | None = None  # validated already (a contract model)
    # Fields the input model normalized already (its field types run the same normalizers): every
    # normalizer is idempotent, so normalizing them again would change nothing, and is not done.
    normalized: frozenset[str] = frozenset()


def submission_hash(sub: Submission) -> str:
    """The hash of the lead as it was handed to intake, before normalization: how a retry is recognized
    whatever normalization or the account's settings say by then (decision 0081).

    Canonical JSON: the fields not at their default, by name, keys sorted, ASCII only (a lone surrogate is
    escaped, never an error), the criteria as their JSON dump. Equal submissions hash alike in every process
    and version, and a field added with a default changes no stored hash.
    """
    fields = {f.name: value for f in _FIELDS if (value := getattr(sub, f.name)) != _default(f)}
    if sub.criteria is not None:
        fields["criteria"] = sub.criteria.model_dump(mode="json")
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(b"submission/1\n" + text.encode()).hexdigest()


# What was sent: `normalized` says how intake read it, so it is not hashed.
_FIELDS = tuple(f for f in dataclasses.fields(Submission) if f.name != "normalized")
_NO_DEFAULT = object()


def _default(f: dataclasses.Field[object]) -> object:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else _NO_DEFAULT


def normalize_submission(
    sub: Submission, *, default_region: str, paths: Mapping[str, str] | None = None
) -> LeadReceivedPayload:
    """The normalized payload, or InvalidLead naming every bad field (as `paths` maps the names, if given)."""
    errors: list[FieldError] = []
    paths = paths or {}

    def check(name: str, normalize: Callable[[str], str], value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if name in sub.normalized:
            return value
        try:
            return normalize(value)
        except ValueError as exc:
            errors.append(FieldError(paths.get(name, name), str(exc)))
            return None

    first_name = check("first_name", check_name, sub.first_name) or ""
    last_name = check("last_name", check_name, sub.last_name) or ""
    email = check("email", normalize_email, sub.email)
    phone = check("phone", lambda raw: normalize_phone(raw, default_region), sub.phone)
    site_host = check("site_host", normalize_host, sub.site_host)
    if not errors and email is None and phone is None:
        errors.append(FieldError(paths.get("<lead>", "<lead>"), "give an email or a phone number"))
    if errors:
        raise InvalidLead(errors)
    return LeadReceivedPayload(
        contact=Contact(first_name=first_name, last_name=last_name, email=email, phone=phone),
        source=LeadSource(
            channel=sub.channel,
            name=sub.source_name.strip(),
            site_host=site_host,
            listing_id=sub.listing_id or None,
            listing_agent_id=sub.listing_agent_id or None,
            assigned_agent_id=sub.assigned_agent_id or None,
            provider=sub.provider,
            utm=normalize_utm(sub.utm),
        ),
        message=normalize_free_text(sub.message, MESSAGE_LIMIT),
        criteria=sub.criteria.normalized() if sub.criteria is not None else None,
    )
