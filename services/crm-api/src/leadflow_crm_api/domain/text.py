"""What free text crm-api accepts and shows: people's names, and one-line labels. Pure, no I/O.

Everything shown to other users must look like what it is: no control characters, no
invisible formatting (zero-width spaces, word joiners, soft hyphens) and no bidirectional
overrides or isolates (U+202A-U+202E, U+2066-U+2069), which make "Ann\u202egnirts" display as
something else. ZWNJ/ZWJ are the exception: Persian, Indic and emoji spellings need them, so
they are kept where they join two visible characters.

A person's name (a realtor's, a lead's, an agent's) must also contain a letter, and holds only
letters of any script, combining marks, digits, spaces and the punctuation of names
(apostrophes, hyphens, the period, the comma, parentheses, middle dots, the Hebrew geresh):
no emoji or other symbols.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, Field

MAX_EMAIL = 254  # RFC 5321's path limit
MAX_PERSON_NAME = 100  # as intake's first and last names; with an id of 64 it fits the events' 200
_JOINERS = frozenset("\u200c\u200d")  # ZWNJ, ZWJ
# Letters and symbols that draw nothing: Hangul fillers, the blank Braille pattern, Khmer inherent vowels,
# the combining grapheme joiner. They make a "name" that looks empty.
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800\u17b4\u17b5\u034f")
# Control, format (zero-width, bidirectional), surrogate, private-use, unassigned, line/paragraph separators.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_NAME_PUNCTUATION = frozenset("'’‘-‐.,()·・׳")
_SPACES = re.compile(r"\s+")


def visible_text(raw: str, *, max_length: int | None = None) -> str:
    """NFC, spaces collapsed and trimmed; ValueError when it hides or reorders text, or shows nothing."""
    text = _SPACES.sub(" ", unicodedata.normalize("NFC", raw)).strip()
    for i, char in enumerate(text):
        if char in _JOINERS:
            if not (0 < i < len(text) - 1 and _shows(text[i - 1]) and _shows(text[i + 1])):
                raise ValueError("a zero-width joiner must join two visible characters")
        elif char in _BLANK or unicodedata.category(char) in _HIDDEN_CATEGORIES:
            raise ValueError(f"must not contain invisible or control characters (U+{ord(char):04X})")
    if not any(_shows(char) for char in text):
        raise ValueError("must contain visible characters")
    if max_length is not None and len(text) > max_length:
        raise ValueError(f"at most {max_length} characters")
    return text


def person_name(raw: str) -> str:
    """A person's name as shown to others (see the module docstring); ValueError with the reason."""
    name = visible_text(raw, max_length=MAX_PERSON_NAME)
    if not any(unicodedata.category(char)[0] == "L" for char in name):
        raise ValueError("a name must contain letters")
    for char in name:
        category = unicodedata.category(char)
        if not (
            category[0] in "LM" or category == "Nd" or char in _NAME_PUNCTUATION or char in _JOINERS or char == " "
        ):
            raise ValueError("a name holds letters, marks, digits, spaces and ' - . , ( ) only")
    return name


def email_address(raw: str) -> str:
    """The address, normalized (no DNS lookup); ValueError without the library's reason, which quotes
    parts of the address back (problem details never echo submitted values)."""
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError("not a valid email address") from exc
    return result.normalized


def visible(max_length: int) -> Callable[[str], str]:
    """`visible_text` with a length limit on the normalized text, for AfterValidator."""
    return lambda raw: visible_text(raw, max_length=max_length)


def _shows(char: str) -> bool:
    """Whether `char` draws something on its own (not a space, a mark, a joiner or a blank letter)."""
    return unicodedata.category(char)[0] in "LNPS" and char not in _BLANK


Email = Annotated[
    str,
    Field(min_length=3, max_length=MAX_EMAIL, json_schema_extra={"format": "email"}),
    AfterValidator(email_address),
]
# The raw length is bounded first (it bounds the work); the normalized name then has at most 100.
PersonName = Annotated[
    str, Field(min_length=1, max_length=4 * MAX_PERSON_NAME, examples=["Riley Park"]), AfterValidator(person_name)
]
