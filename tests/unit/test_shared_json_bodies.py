"""Strict JSON within bounds (leadflow_shared.json_bodies), the rule intake and crm-api both apply to request
bodies: what RFC 8259 does not have is refused at its place, with a reason that never holds the value."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow_shared.json_bodies import JsonBounds, JsonViolation, NotStrictJson, parse_strict_json

pytestmark = pytest.mark.unit

PROPERTY = settings(database=None, deadline=None, max_examples=300)
BOUNDS = JsonBounds(max_depth=16, max_items=10_000, max_members=100, int_bits=64)  # crm-api's
UNBOUNDED = JsonBounds(max_depth=32, max_errors=20)  # intake's: depth only


def refusal(body: bytes | str, bounds: JsonBounds = BOUNDS) -> list[JsonViolation]:
    with pytest.raises(NotStrictJson) as info:
        parse_strict_json(body.encode() if isinstance(body, str) else body, bounds)
    assert info.value.violations
    return info.value.violations


def first(body: bytes | str, bounds: JsonBounds = BOUNDS) -> tuple[tuple[str | int, ...], str]:
    violation = refusal(body, bounds)[0]
    return violation.loc, violation.kind


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
@pytest.mark.parametrize(
    ("template", "loc"),
    [
        ('{"message": %s}', ("message",)),
        ('{"sources": [{"a": 1}, {"referral_fee_percent": [0, %s]}]}', ("sources", 1, "referral_fee_percent", 1)),
        ("%s", ()),
    ],
)
def test_numbers_json_does_not_have_are_refused_where_they_are(constant: str, template: str, loc: tuple[Any]) -> None:
    for bounds in (BOUNDS, UNBOUNDED):
        [violation] = refusal(template % constant, bounds)
        assert (violation.loc, violation.kind) == (loc, "finite_number")
        assert violation.reason.startswith("must be a finite number")


def test_integers_are_bounded_by_int_bits_and_by_what_int_reads() -> None:
    edges = '{"a": 9223372036854775807, "b": -9223372036854775808, "c": 1.7976931348623157e308, "d": -0.0}'
    assert parse_strict_json(edges.encode(), BOUNDS) == json.loads(edges)
    for beyond in (2**63, -(2**63) - 1, 10**30):
        assert refusal(f'{{"rating": {beyond}}}') == [
            JsonViolation(("rating",), "integer_range", "an integer beyond the 64-bit range")
        ]
        assert parse_strict_json(f'{{"rating": {beyond}}}'.encode(), UNBOUNDED) == {"rating": beyond}
    assert first('{"rating": ' + "9" * 5000 + "}", UNBOUNDED) == (("rating",), "integer_range")  # int()'s limit


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (r'{"name": "A\ud800b"}', ("name",)),  # issue 10's example
        (r'{"labels": ["ok", "\udfff"]}', ("labels", 1)),
        (r'{"message": "\ud800\ud800\udc00"}', ("message",)),  # a high surrogate, then a pair
        (r'{"person": {"firstName": "x\uDBFF"}}', ("person", "firstName")),
        (r'"\ud800"', ()),
        (r'{"\ud800": 1}', ()),  # a member name cannot be named by itself: its object is
        (r'{"a": {"b\udc00": 1}}', ("a",)),
    ],
)
def test_lone_surrogates_are_refused_in_values_and_member_names(body: str, loc: tuple[Any]) -> None:
    [violation] = refusal(body)
    assert (violation.loc, violation.kind) == (loc, "unicode")
    assert "lone surrogate" in violation.reason


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (r'{"utm": {"utm_source": "x", "a\u0000b": "y"}}', ("utm",)),  # the object is named, not the name
        (r'{"\u0000": 1}', ()),
        (r'{"people": [{"first_name": "ok"}, {"\u0000first_name": "x"}]}', ("people", 1)),
    ],
)
def test_a_nul_in_a_member_name_is_refused_naming_its_object(body: str, loc: tuple[Any]) -> None:
    for bounds in (BOUNDS, UNBOUNDED):
        [violation] = refusal(body, bounds)
        assert (violation.loc, violation.kind) == (loc, "unicode")
        assert violation.reason == "a member name holds a NUL character (\\u0000), which no stored document can hold"
    # In a value it is text: BSON strings hold it.
    assert parse_strict_json(rb'{"message": "a\u0000b"}', BOUNDS) == {"message": "a\x00b"}


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (rb'{"a": "\ud83d\ude00"}', {"a": "😀"}),  # a pair is one character
        (rb'{"a": "\\ud800"}', {"a": "\\ud800"}),  # an escaped backslash, then text
        (rb'{"a": "\\\ud83d\ude00"}', {"a": "\\😀"}),
        ('{"a": "é😀"}'.encode(), {"a": "é😀"}),
        (b'{"a": 1e308, "b": -0.0, "c": 5e-324, "a": 2}', {"a": 2, "b": -0.0, "c": 5e-324}),
    ],
)
def test_json_is_parsed_as_it_is(body: bytes, value: Any) -> None:
    assert parse_strict_json(body, BOUNDS) == value


def nested(depth: int) -> str:
    return '{"a": ' + "[" * (depth - 1) + "1" + "]" * (depth - 1) + "}"


@pytest.mark.parametrize("bounds", [BOUNDS, UNBOUNDED])
def test_nesting_is_bounded(bounds: JsonBounds) -> None:
    depth = bounds.max_depth
    assert parse_strict_json(nested(depth).encode(), bounds)
    [violation] = refusal(nested(depth + 1), bounds)
    assert violation == JsonViolation(("a", *[0] * (depth - 1)), "json_too_deep", f"nested deeper than {depth} levels")
    # Far past the parser's own limit (issue 10: 20,000 levels): the body is named.
    assert refusal(b"[" * 20_000 + b"]" * 20_000, bounds) == [JsonViolation((), "json_too_deep", violation.reason)]


def test_list_lengths_and_object_sizes_are_bounded() -> None:
    assert parse_strict_json(json.dumps({"roster": ["a"] * 10_000}).encode(), BOUNDS)
    assert refusal(json.dumps({"roster": ["a"] * 10_001})) == [
        JsonViolation(("roster",), "too_many", "more than 10000 items")
    ]
    assert parse_strict_json(json.dumps({f"k{i}": i for i in range(100)}).encode(), BOUNDS)
    assert refusal(json.dumps({f"k{i}": i for i in range(101)})) == [
        JsonViolation((), "too_many", "more than 100 members")
    ]
    # Unbounded: more members and a longer list than BOUNDS allows (4 million items here took 12 s under the suite).
    assert parse_strict_json(json.dumps({**{f"k{i}": i for i in range(200)}, "long": [0] * 20_000}).encode(), UNBOUNDED)


@pytest.mark.parametrize(
    "body",
    [b"", b"   ", b'{"a": 1} x', b'{"a": "\xff"}', b'"\xed\xa0\x80"', b"\xef\xbb\xbf{}", b'{"event_id": "5f0c3f4e-',
     b"{'a': 1}", b'{"a": 1,}', b"[1,]", b"\x00", b"01", b'"\x01"', '{"a": 1}'.encode("utf-16"),
     '{"a": 1}'.encode("utf-32")],
)  # fmt: skip
def test_what_is_not_json_text_in_utf_8_is_refused_at_the_root(body: bytes) -> None:
    [violation] = refusal(body, UNBOUNDED)
    assert (violation.loc, violation.kind) == ((), "json_invalid")
    assert violation.reason.startswith("not valid JSON")


def test_violations_are_listed_in_document_order_up_to_max_errors() -> None:
    body = r'{"a": NaN, "b": ["\ud800", 2e999], "\udc00": 1, "c": ' + "[" * 40 + "]" * 40 + "}"
    assert [(v.loc, v.kind) for v in refusal(body, UNBOUNDED)] == [
        (("a",), "finite_number"),
        (("b", 0), "unicode"),
        (("b", 1), "finite_number"),
        ((), "unicode"),
        (("c", *[0] * 31), "json_too_deep"),  # the 33rd level
    ]
    assert [v.loc for v in refusal(body, JsonBounds(max_depth=32, max_errors=2))] == [("a",), ("b", 0)]
    assert [v.loc for v in refusal(body)] == [("a",)]


# --- properties ----------------------------------------------------------------------------------------------

BAD = "@@bad-leaf@@"  # longer than any generated member name; kept out of generated strings
_strings = st.text().filter(lambda text: "@@" not in text)
_names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _strings,
    # Member names without NUL: no stored document can hold one (test_a_nul_in_a_member_name_is_refused...).
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_names, inner, max_size=5),
    max_leaves=30,
)
_bad_values = st.sampled_from(["NaN", "Infinity", "-Infinity", r'"\udbff"', r'"ok\ud800"', "1e999", str(2**64)])
_loose = JsonBounds(max_depth=64, max_items=5, max_members=5, int_bits=64)


def places(document: Any, loc: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every value's location in `document`, the document itself first."""
    if not isinstance(document, dict | list):
        return [loc]
    items = document.items() if isinstance(document, dict) else enumerate(document)
    return [loc, *(p for key, value in items for p in places(value, (*loc, key)))]


def replaced(document: Any, loc: tuple[str | int, ...], value: Any) -> Any:
    if not loc:
        return value
    copy = dict(document) if isinstance(document, dict) else list(document)
    copy[loc[0]] = replaced(copy[loc[0]], loc[1:], value)  # type: ignore[index] # the key fits its container
    return copy


@PROPERTY
@given(_json, st.booleans())
def test_any_finite_json_of_unicode_text_within_the_bounds_parses_to_the_same_value(
    document: Any, ascii_only: bool
) -> None:
    assert parse_strict_json(json.dumps(document, ensure_ascii=ascii_only).encode(), _loose) == document


@PROPERTY
@given(_json, st.data(), _bad_values, st.booleans())
def test_one_bad_value_anywhere_is_found_at_its_place(
    document: Any, data: st.DataObject, bad: str, ascii_only: bool
) -> None:
    loc = data.draw(st.sampled_from(places(document)))
    body = json.dumps(replaced(document, loc, BAD), ensure_ascii=ascii_only).replace(f'"{BAD}"', bad)
    assert [v.loc for v in refusal(body, _loose)] == [loc]


@PROPERTY
@given(st.lists(st.text(min_size=1, max_size=8).map(lambda t: f"PII{t}"), min_size=1, max_size=4), _bad_values)
def test_reasons_never_repeat_the_values_sent(values: list[str], bad: str) -> None:
    body = json.dumps({"name": values[0], "labels": values, "rating": "BAD"}).replace('"BAD"', bad)
    reasons = " ".join(v.reason for v in refusal(body, JsonBounds(max_depth=16, int_bits=64, max_errors=20)))
    assert not any(value in reasons for value in values)
