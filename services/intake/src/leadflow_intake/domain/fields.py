"""Field types of intake's input models: each bounded, and normalized where that needs no account data.

Phones are only length-checked here: turning them into E.164 needs the account's default region.
An Idempotency-Key is printable ASCII without surrounding spaces: it is part of a webhook's signed
text (domain/signature.py), where a newline or a byte HTTP would trim must not fit.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints

from leadflow_intake.domain.normalize import check_name, normalize_email, normalize_host, strip

ID_PATTERN = r"^[A-Za-z0-9_.-]+$"
LISTING_ID_PATTERN = r"^[A-Za-z0-9_.:#-]+$"
MAX_UTM_FIELDS = 10
IDEMPOTENCY_KEY_PATTERN = r"^[!-~](?:[ -~]*[!-~])?$"
MAX_IDEMPOTENCY_KEY = 200


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not strip(value) else value


def _utm(value: dict[str, str]) -> dict[str, str]:
    if any(len(k) > 50 or len(v) > 200 for k, v in value.items()):
        raise ValueError("utm keys are at most 50 characters and values at most 200")
    return value


AccountId = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN, examples=["acme-realty"])]
ACCOUNT_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # what AccountId accepts, for a body not read yet (fullmatch)
AgentId = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN, examples=["alex-rivera"])]
ListingId = Annotated[str, Field(min_length=1, max_length=64, pattern=LISTING_ID_PATTERN, examples=["MLS-4471"])]
FirstName = Annotated[str, Field(min_length=1, max_length=100, examples=["Jane"]), AfterValidator(check_name)]
LastName = Annotated[str, Field(max_length=100, examples=["Doe"]), AfterValidator(check_name)]
OptionalName = Annotated[str, Field(max_length=100), AfterValidator(check_name)]
Email = Annotated[
    Annotated[
        str,
        Field(max_length=254, examples=["Jane.Doe@Example.com"], json_schema_extra={"format": "email"}),
        AfterValidator(normalize_email),
    ]
    | None,
    BeforeValidator(_blank_to_none),
]
Phone = Annotated[
    Annotated[str, Field(max_length=40, examples=["(415) 555-0123"])] | None, BeforeValidator(_blank_to_none)
]
Host = Annotated[
    Annotated[str, Field(max_length=253, examples=["alex.acme-realty.com"]), AfterValidator(normalize_host)] | None,
    BeforeValidator(_blank_to_none),
]
Message = Annotated[str, Field(max_length=5000, description="Free text the lead wrote.")]
SourceName = Annotated[str, Field(min_length=1, max_length=100, description="Lead source name as configured.")]
ShortText = Annotated[str, StringConstraints(max_length=200)]
Utm = Annotated[
    dict[str, str],
    Field(max_length=MAX_UTM_FIELDS, description="Campaign fields (utm_source, utm_medium, ...)."),
    AfterValidator(_utm),
]
