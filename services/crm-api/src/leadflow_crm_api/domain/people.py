"""The people of an account beyond its agents: admins and staff (issue 11.4, 11.10).

Agents live in `agents` (routing reads them); admins and staff who are not agents live in
`staff`, with what the notifier needs to reach them: name, email, phone, time zone. The team
list shows both, searchable by name or email, filterable by role and status (Brokerkit's
people side: the Onboarding queue is `status=onboarding`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import phonenumbers
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from leadflow_crm_api.domain.settings import TimeZone
from leadflow_crm_api.domain.text import Email, PersonName
from leadflow_shared.account_config import time_zone_of


class StaffRole(StrEnum):
    ADMIN = "admin"
    STAFF = "staff"


class MemberRole(StrEnum):
    AGENT = "agent"
    ADMIN = "admin"
    STAFF = "staff"


def _e164(raw: str) -> str:
    """A phone number in international form (SMS needs it), normalized to E.164."""
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("not a phone number in international form (+ and country code)") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


Phone = Annotated[str, Field(min_length=4, max_length=40, examples=["+12125550143"]), AfterValidator(_e164)]


class StaffMember(BaseModel):
    """An admin or staff member who is not an agent: reached by the digest and team updates."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Sam Ortiz",
                    "email": "sam@acme.example",
                    "phone": "+12125550143",
                    "time_zone": "America/New_York",
                    "role": "staff",
                }
            ]
        },
    )

    name: PersonName
    email: Email
    phone: Phone | None = None
    time_zone: TimeZone = "UTC"
    role: StaffRole = StaffRole.STAFF


class TeamMember(BaseModel):
    user_id: str
    name: str
    email: str | None
    phone: str | None = None
    role: MemberRole
    status: str = Field(description="Agents: active, onboarding or inactive; admins and staff: active.")
    time_zone: str = "UTC"


class TeamList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "user_id": "blair-chen",
                            "name": "Blair Chen",
                            "email": "blair@acme.example",
                            "phone": None,
                            "role": "agent",
                            "status": "onboarding",
                            "time_zone": "UTC",
                        }
                    ]
                }
            ]
        }
    )

    items: list[TeamMember]


def member_of_agent(doc: dict[str, Any]) -> TeamMember:
    return TeamMember(
        user_id=doc["_id"],
        name=doc.get("name", doc["_id"]),
        email=doc.get("email"),
        phone=doc.get("phone"),
        role=MemberRole.AGENT,
        status=doc.get("status") or ("active" if doc.get("active", True) else "inactive"),
        time_zone=time_zone_of(doc),  # as the notifier reads it
    )


def member_of_staff(doc: dict[str, Any]) -> TeamMember:
    return TeamMember(
        user_id=doc["_id"],
        name=doc["name"],
        email=doc.get("email"),
        phone=doc.get("phone"),
        role=MemberRole(doc.get("role", StaffRole.STAFF.value)),
        status="active",
        time_zone=time_zone_of(doc),
    )


def team(
    members: list[TeamMember], *, q: str | None = None, role: MemberRole | None = None, status: str | None = None
) -> list[TeamMember]:
    """The members matching the search (name or email, any case) and filters, by name."""
    needle = q.casefold().strip() if q else ""
    found = [
        m for m in members
        if (role is None or m.role is role) and (status is None or m.status == status)
        and (not needle or needle in m.name.casefold() or needle in (m.email or "").casefold())
    ]  # fmt: skip
    return sorted(found, key=lambda m: (m.name.casefold(), m.user_id))


MAX_DEVICES = 10  # per user: one notice pushes to each of them


class Platform(StrEnum):
    IOS = "ios"
    ANDROID = "android"
    WEB = "web"


class DeviceRegistration(BaseModel):
    """A device's push token (FCM registration token) for the caller's notifications."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"token": "fcm-registration-token", "platform": "android"}]}
    )

    token: str = Field(min_length=1, max_length=4096, pattern=r"^[\x21-\x7e]+$", description="Printable ASCII.")
    platform: Platform


class Device(BaseModel):
    """A registered device; its token is never shown again."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"device_id": "pixel-8", "platform": "android", "registered_at": "2026-11-24T14:02:11Z"}]
        }
    )

    device_id: str
    platform: Platform
    registered_at: datetime


class DeviceList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"items": [{"device_id": "pixel-8", "platform": "android", "registered_at": "2026-11-24T14:02:11Z"}]}
            ]
        }
    )

    items: list[Device]
