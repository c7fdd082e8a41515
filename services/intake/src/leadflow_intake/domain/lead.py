"""A lead as every input path hands it to intake, and its normalization into LeadReceived's payload."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from leadflow_intake.domain.errors import FieldError, InvalidLead
from leadflow_intake.domain.normalize import (
    check_name,
    check_source_name,
    normalize_email,
    normalize_free_text,
    normalize_host,
    normalize_phone,
    normalize_utm,
    strip,
)
from leadflow_shared.events.criteria import LeadCriteria
from leadflow_shared.events.intake import LeadChannel, LeadReceivedPayload

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
        if value is None or not strip(value):
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
    try:  # never blank: a blank one the input models refuse, one of only U+001C-U+001F they keep (helper 139)
        source_name = check_source_name(sub.source_name)
    except ValueError as exc:
        errors.append(FieldError(paths.get("source_name", "source_name"), str(exc)))
    if errors:
        raise InvalidLead(errors)
    contact = {"first_name": first_name, "last_name": last_name, "email": email, "phone": phone}
    return _payload(sub, contact, {"name": source_name, "site_host": site_host}, paths)


def _payload(
    sub: Submission, contact: dict[str, str | None], named: dict[str, str | None], paths: Mapping[str, str]
) -> LeadReceivedPayload:
    """The payload of normalized fields. The normalizers keep to LeadReceived's rules; a value that breaks one all
    the same is refused naming its field (InvalidLead), never a 500. `from None`: a ValidationError's text holds the
    values (personal data), and what is refused is logged and dead-lettered without them."""
    try:
        criteria = sub.criteria.normalized() if sub.criteria is not None else None
    except ValidationError as exc:
        raise InvalidLead(refusals(exc, paths, under=("criteria",))) from None
    source = {
        "channel": sub.channel, **named,
        "listing_id": sub.listing_id or None, "listing_agent_id": sub.listing_agent_id or None,
        "assigned_agent_id": sub.assigned_agent_id or None, "provider": sub.provider, "utm": normalize_utm(sub.utm),
    }  # fmt: skip
    message = normalize_free_text(sub.message, MESSAGE_LIMIT)
    try:  # one model_validate: every error's place is the payload's
        return LeadReceivedPayload.model_validate(
            {"contact": contact, "source": source, "message": message, "criteria": criteria}
        )
    except ValidationError as exc:
        raise InvalidLead(refusals(exc, paths)) from None


def refusals(exc: ValidationError, paths: Mapping[str, str], *, under: tuple[str, ...] = ()) -> list[FieldError]:
    """Each error of building LeadReceived or its payload as a FieldError: the field's path as the sender wrote it
    (as `paths` maps a Submission's names, by their first part for a nested one) and pydantic's rule, never the
    value. `under`: where the model that raised sits in the payload."""
    errors = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        name = _submitted_name((*under, *(str(part) for part in error["loc"])))
        head, _, rest = name.partition(".")
        path = paths.get(name) or (f"{paths[head]}.{rest}" if rest and head in paths else name)
        errors.append(FieldError(path, error["msg"]))
    return errors


def _submitted_name(loc: tuple[str, ...]) -> str:
    """The Submission's name of a place in LeadReceived: contact.phone is phone, source.name source_name."""
    loc = loc[1:] if loc[:1] == ("payload",) else loc
    if len(loc) < 2 and loc[:1] in {(), ("contact",), ("source",)}:
        return "<lead>"
    if loc[:2] == ("source", "name"):
        return "source_name"
    return ".".join(loc[1:] if loc[0] in {"contact", "source"} else loc)
