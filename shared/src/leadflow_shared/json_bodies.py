"""Request bodies as strict JSON (RFC 8259) within bounds: parsed, or refused naming every place and why.

What Python's json module reads and this refuses: NaN, Infinity and -Infinity; numbers that overflow a
double ("1e400" reads as inf); integers beyond `JsonBounds.int_bits` or beyond int()'s digit limit; lone
UTF-16 surrogates ("\\ud800" without its pair) in strings and member names; a NUL ("\\u0000") in a member
name (no BSON document can hold it: it ends a key); text that is not UTF-8 (a byte order mark included).
Nesting, list lengths and object sizes are bounded. A refusal names places and reasons, never the values
sent. Pure: no framework imports; the services map `NotStrictJson` to their own answers (intake's
InvalidBody, crm-api's and the router's 422s, the consumers' dead letters: `leadflow_shared.consumers`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Location = tuple[str | int, ...]
# What was refused, apart from the reason's wording, so a service can give it its own code (intake's 422 type).
Kind = Literal["json_invalid", "json_too_deep", "finite_number", "integer_range", "unicode", "too_many"]

_SURROGATE = re.compile(r"[\ud800-\udfff]")
_NOT_FINITE = "must be a finite number: NaN and Infinity are not JSON"
_BEYOND_DOUBLE = "must be a finite number: beyond the range of 64-bit doubles"
_LONE_SURROGATE = "not valid Unicode text: a lone surrogate (\\ud800-\\udfff without its pair)"
_NUL_IN_NAME = "a member name holds a NUL character (\\u0000), which no stored document can hold"


@dataclass(frozen=True, slots=True)
class JsonBounds:
    max_depth: int  # objects and arrays inside each other; the document itself is level 1
    max_items: int | None = None  # per array; None: only the body's size bounds it
    max_members: int | None = None  # per object
    int_bits: int | None = None  # integers within signed `int_bits` bits; None: any int() reads
    max_errors: int = 1  # violations reported; the walk stops at this many


@dataclass(frozen=True, slots=True)
class JsonViolation:
    loc: Location  # object member names and array indexes from the document's root; () is the root
    kind: Kind
    reason: str  # never holds a value from the body


class NotStrictJson(ValueError):  # noqa: N818 (reads as the condition it reports)
    """The body is not strict JSON within bounds; `violations` in document order, at least one."""

    def __init__(self, violations: list[JsonViolation]) -> None:
        # Member names are the sender's text: the message holds neither them nor values.
        super().__init__(f"not strict JSON within bounds: {', '.join(sorted({v.kind for v in violations}))}")
        self.violations = violations


def parse_strict_json(body: bytes, bounds: JsonBounds) -> Any:
    """The JSON value of `body` (UTF-8), or NotStrictJson listing up to `bounds.max_errors` places and reasons."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise NotStrictJson([JsonViolation((), "json_invalid", "not valid JSON: not UTF-8 text")]) from None
    hooks = _NumberHooks(bounds.int_bits)
    try:
        document = json.loads(
            text, parse_constant=hooks.parse_constant, parse_float=hooks.parse_float, parse_int=hooks.parse_int
        )
    except RecursionError:  # the parser's own bound, far above any of ours
        raise NotStrictJson([_too_deep((), bounds)]) from None
    except json.JSONDecodeError as exc:  # the message names the position, not the text
        reason = f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        raise NotStrictJson([JsonViolation((), "json_invalid", reason)]) from None
    if violations := _walk(document, bounds):
        raise NotStrictJson(violations)
    return document


class _Refused:
    """What the parser puts where a number cannot be taken, so the walk can say where it was."""

    def __init__(self, kind: Kind, reason: str) -> None:
        self.kind = kind
        self.reason = reason


class _NumberHooks:
    """json.loads' number hooks: a number JSON does not have, or beyond the bounds, becomes a `_Refused`."""

    def __init__(self, int_bits: int | None) -> None:
        self.ints = None if int_bits is None else range(-(2 ** (int_bits - 1)), 2 ** (int_bits - 1))
        beyond = "too long to read" if int_bits is None else f"beyond the {int_bits}-bit range"
        self.too_big = _Refused("integer_range", f"an integer {beyond}")

    @staticmethod
    def parse_constant(_name: str) -> _Refused:
        return _Refused("finite_number", _NOT_FINITE)

    @staticmethod
    def parse_float(text: str) -> float | _Refused:
        value = float(text)
        return value if math.isfinite(value) else _Refused("finite_number", _BEYOND_DOUBLE)

    def parse_int(self, text: str) -> int | _Refused:
        try:
            value = int(text)
        except ValueError:  # beyond sys.get_int_max_str_digits
            return self.too_big
        return value if self.ints is None or value in self.ints else self.too_big


def _too_deep(loc: Location, bounds: JsonBounds) -> JsonViolation:
    return JsonViolation(loc, "json_too_deep", f"nested deeper than {bounds.max_depth} levels")


_Pending = list[tuple[Any, Location, int]]  # (value, where, depth) still to check, the next one last


def _walk(document: Any, bounds: JsonBounds) -> list[JsonViolation]:
    """Violations in document order, up to `bounds.max_errors` (iterative: the depth is what is checked)."""
    found: list[JsonViolation] = []
    pending: _Pending = [(document, (), 0)]
    while pending and len(found) < bounds.max_errors:
        value, loc, depth = pending.pop()
        if (violation := _check(value, loc, depth, bounds, pending)) is not None:
            found.append(violation)
    return found


def _check(value: Any, loc: Location, depth: int, bounds: JsonBounds, pending: _Pending) -> JsonViolation | None:
    """What `value` itself breaks; an array or object within bounds puts its children on `pending`."""
    if isinstance(value, _Refused):
        return JsonViolation(loc, value.kind, value.reason)
    if isinstance(value, str):
        return JsonViolation(loc, "unicode", _LONE_SURROGATE) if _SURROGATE.search(value) else None
    if not isinstance(value, dict | list):
        return None
    if depth >= bounds.max_depth:
        return _too_deep(loc, bounds)
    if isinstance(value, list):
        if bounds.max_items is not None and len(value) > bounds.max_items:
            return JsonViolation(loc, "too_many", f"more than {bounds.max_items} items")
        pending += [(item, (*loc, i), depth + 1) for i, item in reversed(list(enumerate(value)))]
        return None
    if bounds.max_members is not None and len(value) > bounds.max_members:
        return JsonViolation(loc, "too_many", f"more than {bounds.max_members} members")
    pending += reversed([_member(key, item, loc, depth) for key, item in value.items()])
    return None


def _member(key: str, item: Any, loc: Location, depth: int) -> tuple[Any, Location, int]:
    if _SURROGATE.search(key):  # a member name cannot be named by itself: the object is
        return _Refused("unicode", f"a member name is {_LONE_SURROGATE}"), loc, depth
    if "\x00" in key:
        return _Refused("unicode", _NUL_IN_NAME), loc, depth
    return item, (*loc, key), depth + 1


MAX_LOC_TEXT = 64  # characters of a member name kept in a place named in an answer (names are the sender's text)


def safe_loc(loc: Sequence[str | int]) -> list[str | int]:
    """A place fit for an answer or a dead letter's reason: the sender's member names shortened, and always
    encodable as UTF-8 (a lone surrogate becomes "?")."""
    parts: list[str | int] = []
    for part in loc:
        if isinstance(part, str):
            part = part.encode("utf-8", "replace").decode("utf-8")
            part = part if len(part) <= MAX_LOC_TEXT else part[: MAX_LOC_TEXT - 1] + "…"
        parts.append(part)
    return parts
