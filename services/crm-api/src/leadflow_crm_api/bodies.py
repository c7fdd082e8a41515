"""Request bodies before any route sees them: bounded in size, and strict JSON (decision 0023).

The guard is every service's (`leadflow_shared.http_bodies.BodyGuard`, decision 0083): it reads the body
once, up to `BodyLimits.max_bytes` whether it is announced by Content-Length or streamed in chunks, answers
413 beyond that, and refuses a JSON body (the content types FastAPI parses as JSON) that is not strict JSON
within `BodyLimits.json` (leadflow_shared.json_bodies): no NaN or Infinity, numbers that fit 64 bits and a
double, UTF-8 text without lone surrogates ("\\ud800") or NUL in member names, bounded nesting, list lengths
and object sizes. crm-api's bounds are below, and its answers are problem details: a refusal is a 422 naming
the place (`body.sources.0.referral_fee_percent`), never the value. The route then parses the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from starlette.responses import Response

from leadflow_crm_api.problems import invalid_fields, problem
from leadflow_shared import http_bodies
from leadflow_shared.http_bodies import parsed_as_json
from leadflow_shared.json_bodies import JsonBounds, JsonViolation

__all__ = ["JSON_BOUNDS", "BodyGuard", "BodyLimits", "parsed_as_json"]

JSON_BOUNDS = JsonBounds(
    max_depth=16,  # the deepest body crm-api takes has 4 levels (lead sources' `offices`)
    max_items=10_000,  # the longest list crm-api takes (a roster, a lead group)
    max_members=100,  # crm-api's largest body object has 9 fields
    int_bits=64,  # what BSON stores
    max_errors=1,  # the first, in document order
)


@dataclass(frozen=True, slots=True)
class BodyLimits(http_bodies.BodyLimits):
    json: JsonBounds = JSON_BOUNDS


class BodyGuard(http_bodies.BodyGuard):
    """ASGI middleware: 413 beyond `limits.max_bytes`, 422 for JSON bodies not strict JSON within `limits.json`,
    both as problem details."""

    def too_large(self) -> Response:
        return problem(413, "content-too-large", f"The request body is larger than {self.limits.max_bytes} bytes.")

    def refused(self, violations: Sequence[JsonViolation]) -> Response:
        return invalid_fields([(("body", *v.loc), v.reason) for v in violations])
