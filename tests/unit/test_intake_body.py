"""Request bodies as bounded JSON (issue 10, item 6): refusals name the place and the reason, never the value.

The strict-JSON rule itself is tested in test_shared_json_bodies.py; here, intake's bounds and its 422 shape."""

from __future__ import annotations

import email.message
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from leadflow_intake.domain.body import MAX_ERRORS, MAX_JSON_DEPTH, parse_json, parse_model
from leadflow_intake.domain.errors import InvalidBody
from leadflow_intake.domain.forms import WebsiteLeadIn
from leadflow_intake.entrypoints.http import USUAL_JSON_TYPES, is_json

pytestmark = pytest.mark.unit

PROPERTY = settings(database=None, deadline=None, max_examples=300)


def refusal(body: bytes) -> list[dict[str, Any]]:
    with pytest.raises(InvalidBody) as info:
        parse_json(body)
    return info.value.errors


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
@pytest.mark.parametrize(
    ("template", "loc"),
    [
        ('{"message": %s}', ["message"]),
        ('{"utm": {"utm_source": %s}}', ["utm", "utm_source"]),
        ('{"people": [{"a": 1}, {"phone_1": [0, %s]}]}', ["people", 1, "phone_1", 1]),
        ("%s", []),
    ],
)
def test_non_finite_numbers_are_refused_naming_their_place(constant: str, template: str, loc: list[Any]) -> None:
    errors = refusal((template % constant).encode())
    why = "beyond the range of 64-bit doubles" if "e" in constant else "NaN and Infinity are not JSON"
    assert errors == [{"type": "finite_number", "loc": loc, "msg": f"must be a finite number: {why}"}]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (rb'{"message": "A\ud800b"}', ["message"]),
        (rb'{"people": [{"first_name": "ok"}, {"first_name": "\ud800"}]}', ["people", 1, "first_name"]),
        (rb'{"utm": {"k\ud800": "v"}}', ["utm"]),  # in an object key: the object is named
    ],
)
def test_lone_surrogates_are_refused_naming_their_place(body: bytes, loc: list[Any]) -> None:
    errors = refusal(body)
    assert [(e["type"], e["loc"]) for e in errors] == [("unicode", loc)]
    assert "lone surrogate" in errors[0]["msg"]


def test_integers_and_lists_are_bounded_only_by_the_body_size() -> None:
    body = b'{"a": 1e308, "b": -0.0, "c": 12345678901234567890, "d": [' + b"0," * 20_000 + b"0]}"
    assert parse_json(body) == {"a": 1e308, "b": -0.0, "c": 12345678901234567890, "d": [0] * 20_001}


def test_every_refused_place_is_named_up_to_max_errors() -> None:
    body = json.dumps({f"k{i}": "POISON" for i in range(MAX_ERRORS + 5)}).replace('"POISON"', "NaN").encode()
    errors = refusal(body)
    assert [e["loc"] for e in errors] == [[f"k{i}"] for i in range(MAX_ERRORS)]


def nested(depth: int) -> bytes:
    return b'{"a": ' + b"[" * (depth - 1) + b"1" + b"]" * (depth - 1) + b"}"


def test_nesting_is_bounded() -> None:
    assert parse_json(nested(MAX_JSON_DEPTH))
    errors = refusal(nested(MAX_JSON_DEPTH + 1))
    assert errors == [{"type": "json_too_deep", "loc": ["a", *[0] * (MAX_JSON_DEPTH - 1)],
                       "msg": f"nested deeper than {MAX_JSON_DEPTH} levels"}]  # fmt: skip
    # The message: 20,000 levels, far past the parser's own limit.
    assert refusal(b'{"event_id": ' + b"[" * 20000 + b"]" * 20000 + b"}")[0]["type"] == "json_too_deep"


@pytest.mark.parametrize(
    "body",
    [b"", b'{"a": 1} x', b'{"a": "\xff"}', b"\xef\xbb\xbf{}", b'{"event_id": "5f0c3f4e-'],
)  # fmt: skip
def test_what_is_not_json_text_is_refused(body: bytes) -> None:
    [error] = refusal(body)
    assert (error["type"], error["loc"]) == ("json_invalid", [])


def test_model_errors_carry_no_input() -> None:
    secret = "jane.doe.secret@example.com"
    with pytest.raises(InvalidBody) as info:
        parse_model(WebsiteLeadIn, json.dumps({"account_id": "acme realty", "first_name": secret, "email": 5,
                                               "phone": [secret], "utm": {"k": secret * 10}}).encode())  # fmt: skip
    assert secret not in json.dumps(info.value.errors)
    assert {tuple(e["loc"]) for e in info.value.errors} >= {("account_id",), ("email",), ("phone",)}
    assert all(set(e) == {"type", "loc", "msg"} for e in info.value.errors)


class Anything(BaseModel):
    pass


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)


@PROPERTY
@given(st.binary(max_size=300) | _json.map(lambda v: json.dumps(v).encode()))
def test_any_bytes_are_parsed_or_refused_with_an_encodable_answer(body: bytes) -> None:
    try:
        parse_model(Anything, body)
    except InvalidBody as exc:
        text = json.dumps(exc.errors, ensure_ascii=False).encode("utf-8")  # what a 422 sends: never fails
        assert text


_mark = st.text(st.characters(codec="utf-8"), min_size=1, max_size=8).map(lambda t: f"PII{t}")


@PROPERTY
@given(st.lists(_mark, min_size=1, max_size=4), st.sampled_from(["NaN", "Infinity", '"\\ud800"', "-Infinity"]))
def test_refusals_never_repeat_the_values_sent(values: list[str], poison: str) -> None:
    body = json.dumps({"account_id": values[0], "first_name": values, "message": "POISON"}).replace('"POISON"', poison)
    with pytest.raises(InvalidBody) as info:
        parse_model(WebsiteLeadIn, body.encode())
    answer = json.dumps(info.value.errors, ensure_ascii=False)
    assert not any(value in answer for value in values)


# -- which Content-Type is JSON (the forms' 415) -------------------------------------------------


def json_when_parsed(content_type: str) -> bool:
    """The rule as email.message reads the header: what `is_json` answers, whatever its shortcuts."""
    parsed = email.message.Message()
    parsed["content-type"] = content_type
    subtype = parsed.get_content_subtype()
    return parsed.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


_header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)
_near_json = st.builds(
    "{}/{}{}".format,
    st.sampled_from(["application", "Application", "APPLICATION", " application", "text", ""]),
    st.sampled_from(["json", "JSON", "Json ", "vnd.lead+json", "json+x", "jsonp", "x-json", ""]),
    st.sampled_from(["", ";charset=utf-8", "; charset=utf-8", "; charset=UTF-8", "; charset=latin-1", ";", '; x="1"']),
)
_usual = st.sampled_from(sorted(USUAL_JSON_TYPES))


@PROPERTY
@given(st.one_of(_usual, _near_json, _header_text))
def test_is_json_answers_as_the_parsed_content_type(content_type: str) -> None:
    assert is_json(content_type) == json_when_parsed(content_type)


@pytest.mark.parametrize("content_type", sorted(USUAL_JSON_TYPES))
def test_the_content_types_answered_without_parsing_are_json_when_parsed(content_type: str) -> None:
    assert json_when_parsed(content_type)


def test_the_usual_json_content_types_are_answered_without_parsing() -> None:
    assert {"application/json", "application/json; charset=utf-8"} <= USUAL_JSON_TYPES
