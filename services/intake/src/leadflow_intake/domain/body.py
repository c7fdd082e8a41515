"""Request bodies as bounded JSON: parsed once, refused with the field and the reason, never the value.

The rule is leadflow_shared.json_bodies (strict RFC 8259 JSON, shared with crm-api): NaN, Infinity,
numbers beyond doubles, lone surrogates ("\\ud800"), text that is not UTF-8 and nesting deeper than
MAX_JSON_DEPTH are refused. Here: intake's bounds and its 422 shape (type, loc, msg), and model validation.
The body's size is bounded before it is read (INTAKE_MAX_BODY_BYTES).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from leadflow_intake.domain.errors import InvalidBody
from leadflow_shared.json_bodies import JsonBounds, NotStrictJson, parse_strict_json, safe_loc

MAX_JSON_DEPTH = 32  # objects and arrays inside each other; the formats need 4, providers' extras get room
MAX_ERRORS = 20  # a 422 names at most this many places
# Arrays, objects and integers are bounded only by the body's size (and int()'s digit limit).
BOUNDS = JsonBounds(max_depth=MAX_JSON_DEPTH, max_errors=MAX_ERRORS)

Model = TypeVar("Model", bound=BaseModel)
Loc = tuple[str | int, ...]


def parse_json(body: bytes) -> Any:
    """The body's JSON value, or InvalidBody naming every place that is not plain, bounded JSON."""
    try:
        return parse_strict_json(body, BOUNDS)
    except NotStrictJson as exc:
        raise InvalidBody([_error(v.kind, v.loc, v.reason) for v in exc.violations]) from None


def parse_model(model: type[Model], body: bytes) -> Model:
    """The body validated as `model`; InvalidBody with pydantic's errors, without the input values."""
    return validate_model(model, parse_json(body))


def validate_model(model: type[Model], value: Any) -> Model:
    """A body's JSON value (`parse_json`) validated as `model`, as `parse_model` does."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise InvalidBody(validation_errors(exc)) from exc


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as type, loc and msg: no input, no context values."""
    return [_error(e["type"], tuple(e["loc"]), e["msg"]) for e in exc.errors(include_input=False, include_url=False)][
        :MAX_ERRORS
    ]


def _error(kind: str, loc: Loc, msg: str) -> dict[str, Any]:
    return {"type": kind, "loc": safe_loc(loc), "msg": msg}
