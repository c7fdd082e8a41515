"""What intake accepts over HTTP, validated and normalized by the model itself."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from leadflow_intake.domain.normalize import normalize_email, normalize_name
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceivedPayload, LeadSource


class WebsiteLeadIn(BaseModel):
    """A registration or contact-us form from the brokerage site or an agent's subdomain."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    account_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", examples=["acme-realty"])
    first_name: str = Field(min_length=1, max_length=100, examples=["Jane"])
    last_name: str = Field(default="", max_length=100, examples=["Doe"])
    email: str | None = Field(default=None, max_length=254, examples=["Jane.Doe@Example.com"])
    phone: str | None = Field(default=None, max_length=40, examples=["(415) 555-0123"])
    message: str = Field(default="", max_length=5000)
    site_host: str | None = Field(default=None, max_length=253, examples=["www.acme-realty.com"])
    source_name: str = Field(default="Website", min_length=1, max_length=100)
    utm: dict[str, str] = Field(default_factory=dict, max_length=10)

    @field_validator("first_name", "last_name")
    @classmethod
    def _name(cls, value: str) -> str:
        return normalize_name(value)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return normalize_email(value) if value else None

    @field_validator("utm")
    @classmethod
    def _utm(cls, value: dict[str, str]) -> dict[str, str]:
        if any(len(k) > 50 or len(v) > 200 for k, v in value.items()):
            raise ValueError("utm keys are at most 50 characters and values at most 200")
        return value

    @model_validator(mode="after")
    def _reachable(self) -> Self:
        if not self.email and not self.phone:
            raise ValueError("give an email or a phone number")
        return self

    def to_payload(self, phone_e164: str | None) -> LeadReceivedPayload:
        return LeadReceivedPayload(
            contact=Contact(
                first_name=self.first_name, last_name=self.last_name, email=self.email, phone=phone_e164
            ),
            source=LeadSource(
                channel=LeadChannel.BROKERAGE_SITE, name=self.source_name, site_host=self.site_host, utm=self.utm
            ),
            message=self.message,
        )
