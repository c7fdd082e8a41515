"""Normalizers for lead fields: pure functions, each raising ValueError with the reason.

Every normalizer is idempotent (normalizing twice changes nothing) and never makes its
input longer, so a value that passed a length limit still passes it once normalized.
Forms rely on the first: what their field types normalized is not normalized again (decision 0075).
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

import phonenumbers
from email_validator import EmailNotValidError, validate_email

# What the models' `str_strip_whitespace` / `strip_whitespace` trim (pydantic-core: Unicode's White_Space, Rust's
# `str::trim`): intake's one definition of whitespace, so that what intake finds blank or short is what the models
# find. Python's `str.strip()` also trims the information separators U+001C-U+001F, which the models keep: a tag
# "a"*50 + "\x1c" was 50 characters to intake and 51 to `LeadCriteria`. Checked against pydantic for every code
# point by tests/unit/test_intake_normalize.py.
WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
# LeadReceived's Contact.phone pattern: what the published event can carry (checked equal by the same tests).
E164_PATTERN = r"^\+[1-9]\d{6,14}$"
_E164 = re.compile(E164_PATTERN)
_SPACES = re.compile(r"\s+")
_LINE_BREAKS = re.compile("[\t\n\v\f\r\x85\u2028\u2029]")  # what splits a line (U+001C-U+001E are controls)
_LETTERS = re.compile(r"[^\W\d_]+")
# A DNS host name: dot-separated labels of letters, digits and hyphens (IDN as punycode or Unicode).
_HOST = re.compile(r"^(?=.{1,253}$)(?!-)[\w-]{1,63}(?<!-)(\.(?!-)[\w-]{1,63}(?<!-))*$")
_BLANK_LINES = re.compile(r"\n{3,}")
_ELLIPSIS = "…"
# Unicode's Bidi_Control characters: they reorder how the text around them is shown (U+202E shows
# "Jane\u202eeoD" as "JaneDoe" reversed), so a name holding one is refused, not shown.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Zero-width joiner and non-joiner shape letters in Persian, Indic and other scripts: kept in names.
_JOINERS = "\u200c\u200d"
# Hangul fillers: letters by category that draw nothing, so they do not count as a name's letters.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")


def strip(text: str) -> str:
    """`text` without leading and trailing whitespace as the models trim it (WHITESPACE)."""
    return text.strip(WHITESPACE)


def _without_controls(text: str, keep: str = "") -> str:
    return "".join(c for c in text if c in keep or unicodedata.category(c) != "Cc")


def _visible(text: str) -> str:
    """`text` without invisible format characters (zero-width space, soft hyphen, BOM, tags), joiners kept."""
    return "".join(c for c in text if c in _JOINERS or unicodedata.category(c) != "Cf")


def check_name(raw: str) -> str:
    """The normalized name; ValueError if it holds a bidirectional control or, not blank, holds no letter.

    Blank is blank to the models (`strip`): a name of only U+001C, which they keep as one character (so a
    required name has its one character), holds no letter and is refused like any other name without letters."""
    if any(c in _BIDI_CONTROLS for c in raw):
        raise ValueError("must not contain bidirectional control characters (U+202A-U+202E, U+2066-U+2069)")
    name = normalize_name(raw)
    if strip(raw) and not any(unicodedata.category(c)[0] == "L" and c not in _BLANK_LETTERS for c in name):
        raise ValueError("must contain letters, not only spaces, symbols, emoji or invisible characters")
    return name


def normalize_name(raw: str) -> str:
    """Trim, drop control and invisible format characters, collapse spaces; fix ALL-CAPS or all-lower names,
    keep deliberate casing."""
    name = strip(_SPACES.sub(" ", _visible(_without_controls(raw, keep="\t\n\r\f\v"))))
    if name and (name.isupper() or name.islower()):
        name = " ".join(_capitalize(part) for part in name.split(" "))
    return name


def _capitalize(word: str) -> str:
    # Title-case each hyphen/apostrophe part: "o'neil-smith" -> "O'Neil-Smith".
    return _LETTERS.sub(lambda m: _case(m.group(0)[0], upper=True) + "".join(_case(c) for c in m.group(0)[1:]), word)


def _case(char: str, *, upper: bool = False) -> str:
    # Letters whose case mapping is several letters ("ß".upper() == "SS") stay as they are:
    # changing them would lengthen the name and make a second pass change it again.
    mapped = char.upper() if upper else char.lower()
    return mapped if len(mapped) == 1 else char


def normalize_phone(raw: str, default_region: str) -> str:
    """E.164 as LeadReceived carries it (7 to 15 digits), reading numbers without a country code in
    `default_region`."""
    try:
        number = phonenumbers.parse(raw, default_region.upper())
    except phonenumbers.NumberParseException as exc:
        raise ValueError("not a phone number") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    # phonenumbers calls some short numbers valid (DE "+49 1641": 6 digits) that LeadReceived cannot carry.
    if not _E164.match(e164):
        raise ValueError("not a phone number a lead can carry: E.164 has 7 to 15 digits")
    return e164


def normalize_email(raw: str) -> str:
    """Syntax-checked and normalized (no DNS lookup), lower-cased."""
    try:
        result = validate_email(strip(raw), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(_without_quoted_input(str(exc))) from exc
    return result.normalized.lower()


def _without_quoted_input(reason: str) -> str:
    # email-validator quotes parts of the address after ":" or in parentheses ("... invalid characters: '$'.",
    # "... not valid IDNA (Codepoint ... of 'x' ...)"); a reason goes back to the sender and into dead
    # letters, so only the sentence before them is kept.
    return reason.split(":", 1)[0].split(" (", 1)[0].rstrip(". ")


def normalize_host(raw: str) -> str:
    """The host name a form was sent from, lower-cased; a URL is reduced to its host, a port dropped."""
    text = strip(raw)
    if "://" in text:
        try:
            text = urlsplit(text).hostname or ""
        except ValueError as exc:
            raise ValueError("not a host name or URL") from exc
    else:
        text = text.split("/", 1)[0].rsplit(":", 1)[0] if text.count(":") == 1 else text.split("/", 1)[0]
    host = text.rstrip(".").lower()
    if not _HOST.match(host):
        raise ValueError("not a host name")
    return host


def normalize_free_text(raw: str, limit: int) -> str:
    """Trimmed text with Unix newlines, no control characters, at most two blank lines in a row, and at
    most `limit` characters (longer text is cut and ends with an ellipsis)."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    text = strip(_BLANK_LINES.sub("\n\n", _without_controls(text, keep="\n\t")))
    if len(text) > limit:
        text = text[: limit - 1].rstrip(WHITESPACE) + _ELLIPSIS
    return text


def normalize_label(raw: str) -> str:
    """A source name or campaign field: one line, without control characters and invisible format characters
    (`_visible`: a zero-width space, a CSV export's byte order mark), each line break or tab a space (it would break an
    SMS's line; runs of spaces are kept: the router finds a source by its name as configured), trimmed (`strip`).

    U+001C-U+001F are controls the models keep and Python's `str.strip()` trims: dropped here like every control,
    so a label of only them is blank, and what is left is trimmed as the models trim it."""
    return strip(_LINE_BREAKS.sub(" ", _visible(_without_controls(raw, keep=WHITESPACE))))


def check_source_name(raw: str) -> str:
    """The normalized source name (`normalize_label`); ValueError if blank: a blank one the models refuse, and one of
    only control characters would be published blank (helper 139)."""
    name = normalize_label(raw)
    if not name:
        raise ValueError("must not be blank or only control characters")
    return name


def normalize_utm(raw: dict[str, str]) -> dict[str, str]:
    """Campaign fields with labels for lower-cased keys and values (`normalize_label`); blank ones dropped."""
    labels = ((normalize_label(key).lower(), normalize_label(value)) for key, value in raw.items())
    return {key: value for key, value in labels if key and value}
