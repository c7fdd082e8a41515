"""Normalizers for contact fields: pure functions, each raising ValueError with the reason."""

from __future__ import annotations

import re

import phonenumbers
from email_validator import EmailNotValidError, validate_email

_SPACES = re.compile(r"\s+")


def normalize_name(raw: str) -> str:
    """Trim and collapse spaces; fix ALL-CAPS or all-lower names, keep deliberate casing (McDonald)."""
    name = _SPACES.sub(" ", raw).strip()
    if name and (name.isupper() or name.islower()):
        name = " ".join(_capitalize(part) for part in name.split(" "))
    return name


def _capitalize(word: str) -> str:
    # Title-case each hyphen/apostrophe part: "o'neil-smith" -> "O'Neil-Smith".
    return re.sub(r"[^\W\d_]+", lambda m: m.group(0)[0].upper() + m.group(0)[1:].lower(), word)


def normalize_phone(raw: str, default_region: str) -> str:
    """E.164, reading numbers without a country code in `default_region`."""
    try:
        number = phonenumbers.parse(raw, default_region.upper())
    except phonenumbers.NumberParseException as exc:
        raise ValueError("not a phone number") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str) -> str:
    """Syntax-checked and normalized (no DNS lookup), lower-cased."""
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc
    return result.normalized.lower()
