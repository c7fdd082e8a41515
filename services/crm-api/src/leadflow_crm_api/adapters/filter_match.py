"""A scope's filter applied to a row already read by its id, with MongoDB's meaning, for the forms scopes use.

A realtor's scope is an `$or`, which nx-27017 runs in Python over the whole collection: a quarter of a second per
read at a few thousand leads, and every open lead page reads its lead four times a second (`web/live.py`). A row read
by its `_id` alone and matched here costs one indexed read. A form not listed here is "cannot tell" (None): the
caller then asks the database, so the two never disagree silently. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def matches(doc: Mapping[str, Any], condition: Mapping[str, Any]) -> bool | None:
    """Whether `doc` matches `condition` (fields equal to a string or None, `$or` and `$and` of such), as MongoDB
    would; None for any other form."""
    verdicts = [_clause(doc, key, value) for key, value in condition.items()]
    return None if None in verdicts else all(verdicts)


def _clause(doc: Mapping[str, Any], key: str, value: Any) -> bool | None:
    if key in ("$or", "$and"):
        if not isinstance(value, list) or not value or not all(isinstance(part, Mapping) for part in value):
            return None
        parts = [matches(doc, part) for part in value]
        if None in parts:
            return None
        return any(parts) if key == "$or" else all(parts)
    if key.startswith("$") or "." in key or not (value is None or isinstance(value, str)):
        return None  # an operator, a dotted path, a number (MongoDB compares 1 and 1.0 equal): the database's to say
    present = doc.get(key)
    if isinstance(present, list):  # an array matches a value it holds (null included)
        return value in present
    return present == value  # None: the field missing or null
