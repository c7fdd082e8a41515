"""Request bodies as bounded JSON: parsed once, refused with the field and the reason, never the value.

What JSON parsers let through and intake refuses (422 naming the place):
- NaN, Infinity, -Infinity and numbers too large for a float (not JSON; they cannot be echoed or stored);
- a lone UTF-16 surrogate escape ("\\ud800" without its pair): not Unicode text, and it cannot be
  encoded as UTF-8 on the way out;
- nesting deeper than MAX_JSON_DEPTH;
- bytes that are not UTF-8 JSON text.
The body's size is bounded before it is read (INTAKE_MAX_BODY_BYTES).
"""

from __future__ import annotations

import math
import re
import secrets
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import from_json

from leadflow_intake.domain.errors import InvalidBody

MAX_JSON_DEPTH = 32  # objects and arrays inside each other; the formats need 4, providers' extras get room
MAX_ERRORS = 20  # a 422 names at most this many places
MAX_LOC_TEXT = 64  # characters of an object key kept in a loc (keys are the sender's text)

Model = TypeVar("Model", bound=BaseModel)
Loc = tuple[str | int, ...]

# A JSON string escape: a surrogate pair, a lone surrogate (group 1), or any other escape. Escapes are
# matched left to right, so an escaped backslash followed by "ud800" is not taken for an escape.
_ESCAPE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"  # a pair: kept
    rb"|(\\u[dD][89a-fA-F][0-9a-fA-F]{2})"  # a lone surrogate
    rb"|\\."  # any other escape, an escaped backslash included
)
_SURROGATE_HINT = re.compile(rb"\\u[dD][89a-fA-F]")
_NOT_FINITE = "must be a finite number: NaN and Infinity are not JSON"
_LONE_SURROGATE = "not valid Unicode text: a lone surrogate escape (\\ud800-\\udfff without its pair)"
_TOO_DEEP = f"nested deeper than {MAX_JSON_DEPTH} levels"


def parse_json(body: bytes) -> Any:
    """The body's JSON value, or InvalidBody naming every place that is not plain, bounded JSON."""
    marker = None
    if _SURROGATE_HINT.search(body):
        # Each lone surrogate escape becomes an unguessable marker, found again below with its place.
        marker = "\x00" + secrets.token_hex(8)
        replacement = ("\\u0000" + marker[1:]).encode()
        body = _ESCAPE.sub(lambda m: replacement if m.group(1) else m.group(0), body)
    try:
        value = from_json(body, allow_inf_nan=True)  # NaN parsed, to be named with its place below
    except ValueError as exc:
        reason = str(exc)
        if reason.startswith("recursion limit exceeded"):  # the parser's own bound, far above ours
            raise InvalidBody([_error("json_too_deep", (), _TOO_DEEP)]) from None
        raise InvalidBody([_error("json_invalid", (), f"not valid JSON text (UTF-8): {reason}")]) from None
    if errors := _check(value, marker):
        raise InvalidBody(errors)
    return value


def parse_model(model: type[Model], body: bytes) -> Model:
    """The body validated as `model`; InvalidBody with pydantic's errors, without the input values."""
    value = parse_json(body)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise InvalidBody(validation_errors(exc)) from exc


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as type, loc and msg: no input, no context values."""
    return [
        _error(e["type"], tuple(e["loc"]), e["msg"]) for e in exc.errors(include_input=False, include_url=False)
    ][:MAX_ERRORS]


def safe_loc(loc: Loc) -> list[str | int]:
    """A loc fit for a response: the sender's object keys shortened, and always encodable as UTF-8."""
    parts: list[str | int] = []
    for part in loc:
        if isinstance(part, str):
            part = part.encode("utf-8", "replace").decode("utf-8")
            part = part if len(part) <= MAX_LOC_TEXT else part[: MAX_LOC_TEXT - 1] + "…"
        parts.append(part)
    return parts


def _error(kind: str, loc: Loc, msg: str) -> dict[str, Any]:
    return {"type": kind, "loc": safe_loc(loc), "msg": msg}


def _check(value: Any, marker: str | None) -> list[dict[str, Any]]:
    """Every non-finite number, lone surrogate and too-deep container, with its place (iterative: no recursion)."""
    errors: list[dict[str, Any]] = []
    stack: list[tuple[Any, Loc, int]] = [(value, (), 0)]
    while stack and len(errors) < MAX_ERRORS:
        item, loc, depth = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            errors.append(_error("finite_number", loc, _NOT_FINITE))
        elif isinstance(item, str) and marker is not None and marker in item:
            errors.append(_error("unicode", loc, _LONE_SURROGATE))
        elif isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                errors.append(_error("json_too_deep", loc, _TOO_DEEP))
                continue
            if isinstance(item, list):
                stack.extend((child, (*loc, i), depth + 1) for i, child in reversed(list(enumerate(item))))
                continue
            for key, child in reversed(item.items()):
                if marker is not None and marker in key:
                    errors.append(_error("unicode", loc, f"an object key is {_LONE_SURROGATE}"))
                    continue
                stack.append((child, (*loc, key), depth + 1))
    return errors
