"""crm-api fuzzed with what its OpenAPI document does not describe (issue 10; decision 0023): arbitrary
JSON (deeply nested, huge, NaN/Infinity, lone surrogates, numbers beyond 64 bits, wrong types, valid
bodies with one bad leaf), arbitrary bytes, content types and chunked bodies, arbitrary query strings
and list cursors, to every operation of the running crm-api, as a broker, an admin, a realtor, another
tenant's broker, with a garbage token and without one.

Never a 5xx; every 4xx is problem+json; a JSON body JSON does not allow, or one beyond the byte limit,
is always refused (413/422) whoever sends it; and a 4xx never repeats a submitted value.
tests/e2e/test_crm_fuzz.py covers what the document does describe (schemathesis).
"""

from __future__ import annotations

import base64
import json
import math
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from crm_rows import assigned_row
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadflow_crm_api.adapters.leads import CRM_LEADS
from leadflow_crm_api.domain.sharing import invitation_id
from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import insert_rows
from leadflow_devstack.tokens import bearer
from leadflow_shared.events.intake import Contact

pytestmark = pytest.mark.e2e

ACCOUNT = "crm-body-fuzz-realty"  # its own account: what the fuzz changes changes no other test's data
AGENT = "bfuzz-ana"
MAX_BODY = 1024 * 1024  # CrmApiSettings.max_body_bytes' default
MAX_DEPTH = 16  # BodyLimits.json.max_depth
CANARY = "leak.canary@example.com"  # put into bodies; no 4xx may contain it (it fits no id pattern)
PROBLEM_JSON = "application/problem+json"
BODIES = settings(max_examples=1200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
QUERIES = settings(max_examples=600, deadline=None, database=None, suppress_health_check=list(HealthCheck))
JSON_TYPES = ("application/json", "application/json; charset=utf-8", "application/merge-patch+json")
OTHER_TYPES = (
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    "garbage;;=",
    "",
)


@pytest.fixture(scope="module")
def lead_ids(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    path = tmp_path_factory.mktemp("bfuzz") / "accounts.json"
    agents = [{"agent_id": a, "name": a, "email": f"{a}@bfuzz.example"} for a in (AGENT, "bfuzz-ben")]
    path.write_text(
        json.dumps(
            {
                "accounts": [
                    {
                        "account_id": ACCOUNT,
                        "name": "Body Fuzz Realty",
                        "round_robin": False,
                        "agents": agents,
                        "roster": [AGENT, "bfuzz-ben"],
                        "sources": [{"name": "Website"}],
                    },
                ]
            }
        )
    )
    stack.seed(path)
    rows = [
        assigned_row(ACCOUNT, AGENT, Contact(first_name="Body", last_name=f"Fuzz{n}", email=f"bf{n}@example.com"),
                     minutes_ago=n)
        for n in range(4)
    ]  # fmt: skip
    return insert_rows(stack.mongo_url, CRM_LEADS, rows)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    example: Any  # a valid request body (from the document), or None


def operations(spec: dict[str, Any]) -> list[Operation]:
    found = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            example = None
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                ref = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                example = spec["components"]["schemas"][ref]["examples"][0]
            found.append(Operation(method.upper(), path, example))
    return found


# --- what is sent --------------------------------------------------------------------------------

_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
_text = st.text(st.characters() | _surrogates, max_size=30)
_numbers = (
    st.integers()
    | st.integers(-(10**40), 10**40)
    | st.floats()  # NaN and +-Infinity included
    | st.sampled_from([2**63, -(2**63) - 1, 10**30, 1e308, 5e-324])
)
_leaf = st.none() | st.booleans() | _numbers | _text | st.just(CANARY)
_documents = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(_text | st.just(CANARY), inner, max_size=6),
    max_leaves=25,
)


def render(document: Any, *, ascii_only: bool) -> bytes:
    """JSON as Python writes it: NaN/Infinity allowed, lone surrogates escaped or as invalid UTF-8."""
    text = json.dumps(document, ensure_ascii=ascii_only, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


def has_bad_value(document: Any, depth: int = 0) -> bool:
    """Whether `document` holds what bodies.py refuses: not finite, beyond 64 bits, a surrogate, too deep."""
    if isinstance(document, bool) or document is None:
        return False
    if isinstance(document, int):
        return not -(2**63) <= document < 2**63
    if isinstance(document, float):
        return not math.isfinite(document)
    if isinstance(document, str):
        return re.search("[\ud800-\udfff]", document) is not None
    if depth >= MAX_DEPTH:
        return True
    items = list(document.items()) if isinstance(document, dict) else list(enumerate(document))
    return any(has_bad_value(k, depth) if isinstance(k, str) else False for k, _ in items) or any(
        has_bad_value(v, depth + 1) for _, v in items
    )


def with_leaf(example: Any, path: list[int], leaf: Any) -> Any:
    """`example` with one value (chosen by `path`) replaced by `leaf`: gets past the shape to the fields."""
    if not path or not isinstance(example, dict | list) or not example:
        return leaf
    keys = list(example) if isinstance(example, dict) else list(range(len(example)))
    key = keys[path[0] % len(keys)]
    copy = dict(example) if isinstance(example, dict) else list(example)
    copy[key] = with_leaf(copy[key], path[1:], leaf)
    return copy


@dataclass(frozen=True)
class Body:
    content: bytes | None
    bad: bool  # refused whatever the operation (when sent as JSON)
    why: str


@st.composite
def bodies(draw: st.DrawFn, example: Any) -> Body:
    kind = draw(st.sampled_from(["none", "document", "mutated", "bytes", "nested", "huge"]))
    ascii_only = draw(st.booleans())
    if kind == "document" or (kind == "mutated" and example is None):
        document = draw(_documents)
        return Body(render(document, ascii_only=ascii_only), has_bad_value(document), "document")
    if kind == "mutated":
        leaf = draw(_leaf | _documents)
        document = with_leaf(example, draw(st.lists(st.integers(0, 20), max_size=4)), leaf)
        return Body(render(document, ascii_only=ascii_only), has_bad_value(document), "mutated example")
    if kind == "bytes":
        return Body(draw(st.binary(max_size=300)), False, "bytes")
    if kind == "nested":
        depth = draw(st.integers(MAX_DEPTH + 1, 60_000))
        opening, closing = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        return Body(opening * depth + b"1" + closing * depth, True, f"nested {depth}")
    if kind == "huge":
        size = draw(st.integers(MAX_BODY - 64, MAX_BODY + 64 * 1024))
        padded = b"{}" + b" " * (size - 2)  # valid JSON: only its size decides
        return Body(padded, size > MAX_BODY, f"{size} bytes")
    return Body(None, False, "none")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_sorts = st.sampled_from(["created_desc", "created_asc", "last_activity_desc", "last_activity_asc"])
# Cursors shaped like the API's ([sort key, lead id, order]) with any values in the slots, and anything else.


@st.composite
def _shaped_cursors(draw: st.DrawFn) -> str:
    """[sort key, lead id] or [sort key, lead id, order], as the API makes them, with any values in the slots."""
    key = draw(st.sampled_from([st.integers(-(10**40), 10**40), st.sampled_from([2**63, 10**30]), _numbers, _leaf]))
    lead_id = draw(st.sampled_from([st.just(str(uuid.uuid4())), _text, _leaf]))
    fields = [draw(key), draw(lead_id)]
    if draw(st.booleans()):
        fields.append(draw(_sorts | _leaf))
    return _b64(render(fields, ascii_only=True))


_cursors = (
    _shaped_cursors()
    | _shaped_cursors()
    | st.builds(lambda fields: _b64(render(fields, ascii_only=True)), st.lists(_leaf, max_size=4))
    | st.builds(_b64, st.binary(max_size=120))
    | _text
)
_query_values = _text | st.integers().map(str) | _cursors | st.datetimes().map(lambda d: d.isoformat())
_query_names = (
    st.sampled_from(
        [
            "tab",
            "status",
            "owner",
            "assigned_to",
            "source",
            "label",
            "created_from",
            "created_to",
            "q",
            "sort",
            "limit",
            "cursor",
        ]
    )
    | _text
)


def encode(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    caller: str
    headers: dict[bytes, bytes]
    content_type: str | None
    body: Body
    chunked: bool

    def __repr__(self) -> str:  # hypothesis prints failing examples; a body can be a megabyte
        body = self.body.content or b""
        return (
            f"{self.method} {self.url[:300]} as {self.caller}, body {self.body.why} ({len(body)} bytes: "
            f"{body[:200]!r}), {self.content_type!r}, chunked={self.chunked}"
        )

    def _repr_pretty_(self, printer: Any, _cycle: bool) -> None:
        printer.text(repr(self))


# --- the properties ------------------------------------------------------------------------------


@dataclass
class Target:
    """The running crm-api, its operations, who calls, and the path values that name real things."""

    client: httpx.Client
    ops: list[Operation]
    callers: dict[str, dict[str, str]]
    aimed: dict[str, list[str]]
    seen: dict[int, int]

    def path(self, draw: st.DrawFn, op: Operation) -> str:
        path = op.path
        for name in re.findall(r"{(\w+)}", op.path):
            aimed = st.sampled_from(self.aimed.get(name, ["x"]))  # twice: most requests get past the path
            path = path.replace(f"{{{name}}}", draw(aimed | aimed | _text.map(encode) | st.just("")))
        return path

    def headers(self, draw: st.DrawFn, op: Operation, content_type: str | None) -> tuple[str, dict[bytes, bytes]]:
        # Half the requests come from a caller the operation serves, so they reach its work.
        served = "realtor" if op.path.startswith(("/v1/realtors/", "/v1/invitations/")) else "broker"
        caller = draw(st.sampled_from(sorted(self.callers)) | st.just(served))
        headers = {k.encode(): v.encode("latin-1") for k, v in self.callers[caller].items()}
        if content_type is not None:
            headers[b"content-type"] = content_type.encode()
        if (key := draw(st.none() | st.binary(min_size=1, max_size=80))) is not None:
            # Header values as HTTP lets them through (llhttp, as h11 did): visible ASCII and obs-text.
            headers[b"idempotency-key"] = bytes(b if 0x21 <= b <= 0x7E or b >= 0x80 else 0x41 for b in key)
        return caller, headers

    def check(self, request: Request) -> None:
        raw = request.body.content
        content: bytes | Iterator[bytes] | None = raw
        if request.chunked and raw is not None:  # no Content-Length: the size shows only while reading
            content = iter([raw[i : i + 65536] for i in range(0, len(raw), 65536)] or [b""])
        response = self.client.request(request.method, request.url, content=content, headers=request.headers)
        label = f"{request!r} -> {response.status_code}: {response.text[:300]}"
        assert response.status_code < 500, label
        self.seen[response.status_code] = self.seen.get(response.status_code, 0) + 1
        if response.status_code >= 400:
            assert response.headers.get("content-type") == PROBLEM_JSON, label
            problem = response.json()
            assert problem["status"] == response.status_code, label
            assert problem["type"].startswith("https://leadflow.dev/problems/"), label
            assert CANARY not in response.text, label
        if raw is not None and len(raw) > MAX_BODY:
            assert response.status_code == 413, label
        elif request.body.bad and request.content_type in JSON_TYPES:
            assert response.status_code == 422, label


@pytest.fixture
def target(stack: Stack, lead_ids: list[str]) -> Iterator[Target]:
    base = stack.url("crm-api")
    ops = operations(httpx.get(f"{base}/openapi.json").json())
    assert len(ops) >= 25
    callers = {
        "broker": bearer(stack.token("bfuzz-broker", "broker", ACCOUNT)),
        "admin": bearer(stack.token("bfuzz-admin", "admin", ACCOUNT)),
        "realtor": bearer(stack.token(AGENT, "realtor", ACCOUNT)),
        "another tenant": bearer(stack.token("bfuzz-broker", "broker", "crm-body-fuzz-other")),
        # As HTTP lets it through (obs-text); a control character (DEL) is refused by the parser before crm-api
        # (integration/test_request_deadlines.py).
        "garbage token": {"Authorization": "Bearer \x80.\xff.not-a-jwt"},
        "anonymous": {},
    }
    aimed = {
        "account_id": [ACCOUNT],
        "lead_id": lead_ids,
        "agent_id": [AGENT, "bfuzz-ben"],
        "user_id": [AGENT, "bfuzz-broker"],
        "invitation_id": [invitation_id(ACCOUNT, AGENT)],
        "transfer_id": [str(uuid.uuid4())],
    }
    with httpx.Client(base_url=base, timeout=30) as client:
        yield Target(client, ops, callers, aimed, seen={})


def query_string(pairs: list[tuple[str, str]]) -> str:
    return "?" + "&".join(f"{encode(k)}={encode(v)}" for k, v in pairs) if pairs else ""


def test_arbitrary_bodies_to_every_operation_get_no_server_error(target: Target) -> None:
    @st.composite
    def requests(draw: st.DrawFn) -> Request:
        op = draw(st.sampled_from(target.ops))
        content_type = draw(st.sampled_from(JSON_TYPES) | st.sampled_from(OTHER_TYPES) | st.none())
        caller, headers = target.headers(draw, op, content_type)
        query = draw(st.lists(st.tuples(_query_names, _query_values), max_size=2))
        return Request(
            op.method,
            target.path(draw, op) + query_string(query),
            caller,
            headers,
            content_type,
            body=draw(bodies(op.example)),
            chunked=draw(st.booleans()),
        )

    @BODIES
    @given(request=requests())
    def fuzz(request: Request) -> None:
        target.check(request)

    fuzz()
    # The fuzz reached the operations, not only the gate: refusals of every kind and successes.
    assert {200, 401, 403, 404, 413, 422} <= set(target.seen), target.seen


_list_values = {
    "tab": st.sampled_from(["all", "mine"]),
    "status": st.sampled_from(["offered", "assigned", "fell_back", "unassigned", "held"]),
    "sort": _sorts,
    "limit": st.integers(1, 200).map(str),
    "created_from": st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    "created_to": st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    "owner": st.just(AGENT),
    "q": st.sampled_from(["fuzz", "bf1@", "555"]),
}


def test_arbitrary_list_queries_and_cursors_get_no_server_error(target: Target) -> None:
    lists = [op for op in target.ops if op.path.endswith("/leads")]
    assert {op.path for op in lists} == {
        "/v1/accounts/{account_id}/leads",
        "/v1/realtors/me/leads",
        "/v1/accounts/{account_id}/ponds/{pond_id}/leads",
    }

    @st.composite
    def requests(draw: st.DrawFn) -> Request:
        op = draw(st.sampled_from(lists))
        caller, headers = target.headers(draw, op, None)
        # A cursor always; other parameters mostly well-formed, so the cursor is what decides.
        others = draw(st.lists(st.sampled_from(sorted(_list_values)), max_size=3, unique=True))
        query = [("cursor", draw(_cursors))]
        query += [(name, draw(_list_values[name] | _query_values)) for name in others]
        query += draw(st.lists(st.tuples(_query_names, _query_values), max_size=1))
        return Request(
            op.method,
            target.path(draw, op) + query_string(draw(st.permutations(query))),
            caller,
            headers,
            None,
            Body(None, bad=False, why="none"),
            chunked=False,
        )

    @QUERIES
    @given(request=requests())
    def fuzz(request: Request) -> None:
        target.check(request)

    fuzz()
    assert {200, 403, 422} <= set(target.seen), target.seen
