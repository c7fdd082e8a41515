"""Frozen dataclasses built without `object.__setattr__` per field (issue 15 item 9). Pure.

A frozen dataclass's `__init__` stores each field through `object.__setattr__`, since its own
`__setattr__` refuses: about 130 ns a field on CPython 3.11. A new lead's decision builds a dozen such
objects (its states, offers, rule choice, `Why`, outcome), some 80 fields: a fifth of the decision.
`fast_init` builds them another way, with the same parameters, defaults and `__post_init__`: `__new__`
makes an object of a plain class with the same slots, stores the fields as ordinary attributes, and
makes it an instance of the dataclass (CPython lets `__class__` change between classes of one layout).
Two to five times as fast; what is built is what the dataclass's own `__init__` builds (same class,
fields, equality, hash, repr, and frozen). `__getnewargs__` gives `copy` and `pickle` the values to
build a copy with.

`builder(cls)` is the same construction as a plain function (the class fixed): called from Python code, the
interpreter runs it inline, without `type.__call__`, the `__new__` slot and a new evaluation loop that calling
the class goes through (about a third of the cost of each object on the decision's hot path).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

_FACTORY = object()  # a parameter left out whose field has a default factory
_RESERVED = frozenset({"self", "_fi_cls", "_fi_plain", "_fi_factory", "_fi_target"})  # names the source uses
_BUILDERS: dict[type[Any], Callable[..., Any]] = {}  # each `fast_init` class's `builder`


def fast_init(cls: type[T]) -> type[T]:
    """`cls`, a frozen dataclass with slots whose fields all go to `__init__`, built the faster way.
    Apply it above `@dataclass(frozen=True, slots=True)`."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__ or cls.__bases__ != (object,):
        raise TypeError(f"{cls.__name__}: fast_init takes a frozen dataclass with slots and no base class")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]  # a dataclass: checked above
    # Its `__init__` takes exactly its fields, in order (no `init=False` field, no `InitVar`), by position.
    parameters = [*inspect.signature(cls.__init__).parameters][1:]
    if parameters != [f.name for f in fields] or any(f.kw_only or f.name in _RESERVED for f in fields):
        raise TypeError(f"{cls.__name__}: fast_init takes fields that are all positional __init__ parameters")
    plain = type(f"_Filling{cls.__name__}", (), {"__slots__": cls.__slots__})  # type: ignore[attr-defined]
    probe: Any = object.__new__(plain)
    probe.__class__ = cls  # raises TypeError here, at import, if the layouts differ
    scope: dict[str, Any] = {"_fi_plain": plain, "_fi_factory": _FACTORY, "_fi_target": cls}
    exec(_source(fields, scope, hasattr(cls, "__post_init__")), scope)  # noqa: S102 (as dataclasses does)
    for name in ("__new__", "__getnewargs__", "_fi_build"):
        scope[name].__qualname__ = f"{cls.__qualname__}.{name}"
    _BUILDERS[cls] = scope["_fi_build"]
    cls.__new__ = staticmethod(scope["__new__"])  # type: ignore[method-assign]  # as a class body does
    cls.__getnewargs__ = scope["__getnewargs__"]  # type: ignore[attr-defined]
    # What `type.__call__` calls after `__new__`: `object.__init__` ignores the arguments when `__new__` is
    # overridden.
    cls.__init__ = object.__init__  # type: ignore[method-assign]  # the point of it
    return cls


def builder(cls: Callable[P, T]) -> Callable[P, T]:
    """A function that builds `cls` (a `fast_init` class) from `cls`'s own parameters, as `cls(...)` does."""
    return _BUILDERS[cls]  # type: ignore[index]  # a class: the key `fast_init` stored it under


def _source(fields: tuple[dataclasses.Field[Any], ...], scope: dict[str, Any], post_init: bool) -> str:
    """`__new__`, the builder (`__new__` for the class `fast_init` was given) and `__getnewargs__`, built from
    the field names only; `scope` gets the defaults."""
    params, lines = [], []
    for f in fields:
        if f.default is not dataclasses.MISSING:
            scope[f"_fi_default_{f.name}"] = f.default
            params.append(f"{f.name}=_fi_default_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            scope[f"_fi_make_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_fi_factory")
            lines.append(f"    if {f.name} is _fi_factory: {f.name} = _fi_make_{f.name}()")
        else:
            params.append(f.name)
    lines.append("    self = _fi_plain()")  # a class without `__init__`: faster than `object.__new__(_fi_plain)`
    lines += [f"    self.{f.name} = {f.name}" for f in fields]
    lines.append("    self.__class__ = _fi_cls")  # the class called: a subclass of the same layout stays one
    lines += ["    self.__post_init__()"] if post_init else []
    body = "\n".join(lines) + "\n    return self\n"
    values = "".join(f"self.{f.name}, " for f in fields)
    return (
        f"def __new__(_fi_cls, {', '.join(params)}):\n{body}"
        f"def _fi_build({', '.join(params)}):\n    _fi_cls = _fi_target\n{body}"
        f"def __getnewargs__(self):\n    return ({values})\n"
    )
