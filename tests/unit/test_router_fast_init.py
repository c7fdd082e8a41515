"""`fast_init` (the decision core's frozen dataclasses, issue 15 item 9): an object built its way (by the class or
by its `builder`) is the object the dataclass's own `__init__` builds, frozen, with the same defaults, errors, copies
and pickles."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import pickle
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadflow_router.domain.frozen import builder, fast_init

pytestmark = pytest.mark.unit


@dataclass(frozen=True, slots=True)
class Plain:
    name: str
    count: int = 0
    tags: tuple[str, ...] = ()
    extra: dict[str, int] = field(default_factory=dict)
    note: str | None = None

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("count below zero")


@fast_init
@dataclass(frozen=True, slots=True)
class Fast:
    name: str
    count: int = 0
    tags: tuple[str, ...] = ()
    extra: dict[str, int] = field(default_factory=dict)
    note: str | None = None

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("count below zero")


@fast_init
@dataclass(frozen=True, slots=True)
class Hashable:
    name: str
    count: int = 0


class SameLayout(Hashable):
    __slots__ = ()


def as_built(value: Any) -> tuple[str, dict[str, Any]]:
    """What an object holds, its class's name aside."""
    return repr(value).split("(", 1)[1], {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


arguments = st.fixed_dictionaries(
    {"name": st.text(max_size=5)},
    optional={
        "count": st.integers(min_value=0, max_value=9),
        "tags": st.lists(st.text(max_size=3), max_size=3).map(tuple),
        "extra": st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        "note": st.none() | st.text(max_size=3),
    },
)


@given(arguments, st.integers(min_value=0, max_value=5))
def test_built_as_the_dataclass_builds_it(kwargs: dict[str, Any], positional: int) -> None:
    # The first `positional` fields given (up to the first left out) by position, the others by keyword.
    order = [f.name for f in dataclasses.fields(Fast)]
    given_first = list(itertools.takewhile(kwargs.__contains__, order))[:positional]
    args = [kwargs[name] for name in given_first]
    rest = {k: v for k, v in kwargs.items() if k not in given_first}

    fast, plain, built = Fast(*args, **rest), Plain(*args, **rest), builder(Fast)(*args, **rest)

    assert type(fast) is Fast
    assert type(built) is Fast
    assert as_built(fast) == as_built(plain) == as_built(built)
    assert fast == Fast(**kwargs) == built
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.name = "other"  # type: ignore[misc]


def test_defaults_factories_and_post_init_are_the_dataclass_ones() -> None:
    first, second = Fast("a"), Fast("b")
    assert (first.count, first.tags, first.note) == (0, (), None)
    assert first.extra == {}
    assert first.extra is not second.extra
    with pytest.raises(ValueError, match="count below zero"):
        Fast("a", -1)
    with pytest.raises(TypeError):
        Fast()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Fast("a", colour="red")  # type: ignore[call-arg]
    build = builder(Fast)
    assert build("a").extra == {}
    assert build("a").extra is not build("b").extra
    with pytest.raises(ValueError, match="count below zero"):
        build("a", -1)
    with pytest.raises(TypeError):
        build()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        build("a", colour="red")  # type: ignore[call-arg]


def test_equality_hash_copies_and_pickles() -> None:
    value = Hashable("a", 2)
    assert value == Hashable(name="a", count=2)
    assert hash(value) == hash(Hashable("a", 2))
    assert value != Hashable("a", 3)
    built = Fast("a", 1, ("x",), {"k": 1}, "n")
    for again in (copy.copy(built), copy.deepcopy(built), pickle.loads(pickle.dumps(built))):  # noqa: S301
        assert type(again) is Fast
        assert again == built
    assert dataclasses.replace(built, count=5) == Fast("a", 5, ("x",), {"k": 1}, "n")


def test_a_subclass_of_the_same_layout_stays_one() -> None:
    built = SameLayout("a")
    assert type(built) is SameLayout
    assert built.name == "a"


def test_refused_where_the_built_object_could_differ() -> None:
    @dataclass(frozen=True)
    class NoSlots:
        name: str

    @dataclass(slots=True)
    class NotFrozen:
        name: str

    @dataclass(frozen=True, slots=True)
    class NotInInit:
        name: str
        size: int = field(init=False, default=0)

    @dataclass(frozen=True, slots=True)
    class InitOnly:
        name: str
        seed: dataclasses.InitVar[int] = 0

    @dataclass(frozen=True, slots=True)
    class KeywordOnly:
        name: str = field(kw_only=True)

    @dataclass(frozen=True, slots=True)
    class Reserved:
        self: str

    for cls in (NoSlots, NotFrozen, NotInInit, InitOnly, KeywordOnly, Reserved):
        with pytest.raises(TypeError):
            fast_init(cls)
