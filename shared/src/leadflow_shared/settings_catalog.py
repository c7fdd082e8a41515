"""Every environment variable a settings class reads, and the ones it would silently ignore (decision 0084).

`sections(settings_class)` walks a service's settings, nested models expanded on "__", into one `Variable`
per setting: its full name (NOTIFIER_DELIVERY__KEEP_DAYS), type, default, allowed values, whether it is a
secret, and its `description`. `leadflow-ops settings-reference` renders them as docs/settings.md.

pydantic-settings reads a variable that carries the class's prefix (in any case) into the field it names, a
nested model's field after "__", a whole nested model or dict as JSON, and keys below a dict (the intake's
webhook providers by name). Anything else with the prefix is ignored without a word (`extra="ignore"`), so a
misspelt ROUTER_SWEEP_BACTH=100 leaves the default in force: `unknown_variables` finds those names and
`load_settings`, which each service's entrypoint calls, logs a warning naming each and the nearest setting.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import logging
import math
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import annotated_types
from pydantic import AwareDatetime, BaseModel, NaiveDatetime, SecretBytes, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsError

from leadflow_shared.logs import configure_logging
from leadflow_shared.settings import ServiceSettings

DELIMITER = "__"  # every leadflow settings class nests with it (env_nested_delimiter)
SECRET_TYPES = (SecretStr, SecretBytes)

logger = logging.getLogger(__name__)

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


@dataclass(frozen=True)
class Variable:
    """One environment variable a settings class reads."""

    name: str  # the full name, e.g. NOTIFIER_DELIVERY__KEEP_DAYS
    kind: str  # integer, number, boolean, string, path, date-time, JSON object, JSON array
    default: str | None  # as written in the environment; None for a secret (never shown)
    allowed: str  # the bounds or choices ("1 to 365", "one of `json`, `text`"), or ""
    secret: bool
    description: str


@dataclass(frozen=True)
class Section:
    """The variables of one model: the settings class itself, or one nested model (NOTIFIER_DELIVERY__*)."""

    prefix: str  # the variables' common prefix, e.g. NOTIFIER_ or NOTIFIER_DELIVERY__
    doc: str  # the model's docstring, one paragraph
    variables: tuple[Variable, ...]


def env_prefix(settings_class: type[BaseSettings]) -> str:
    return str(settings_class.model_config.get("env_prefix", "")).upper()


def sections(settings_class: type[BaseSettings]) -> list[Section]:
    """The class's variables, its own first, then each nested model's (in field order)."""
    return list(_sections(settings_class, env_prefix(settings_class), None))


def variables(settings_class: type[BaseSettings]) -> list[Variable]:
    return [variable for section in sections(settings_class) for variable in section.variables]


def _sections(model: type[BaseModel], prefix: str, instance: BaseModel | None) -> Iterator[Section]:
    own: list[Variable] = []
    nested: list[tuple[str, type[BaseModel], BaseModel | None]] = []
    for name, field in model.model_fields.items():
        default = getattr(instance, name) if instance is not None else field.get_default(call_default_factory=True)
        full = f"{prefix}{name.upper()}"
        inner = _nested_model(field.annotation)
        if inner is None:
            own.append(_variable(full, field, default))
        else:
            nested.append((full + DELIMITER, inner, default if isinstance(default, BaseModel) else None))
    if own:
        yield Section(prefix, _paragraph(model.__doc__), tuple(own))
    for inner_prefix, inner, inner_default in nested:
        yield from _sections(inner, inner_prefix, inner_default)


def _paragraph(doc: str | None) -> str:
    return " ".join((doc or "").split("\n\n")[0].split())


def _variable(name: str, field: FieldInfo, default: object) -> Variable:
    base = _strip(field.annotation)
    secret = _holds_secret(field.annotation)
    return Variable(
        name=name,
        kind=_kind(base),
        default=None if secret else _env_value(default),
        allowed=_allowed(base, field),
        secret=secret,
        description=" ".join((field.description or "").split()),
    )


def _strip(annotation: Any) -> Any:
    """`annotation` without Annotated[...] and without `| None`."""
    if typing.get_origin(annotation) is Annotated:
        return _strip(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _strip(rest[0]) if len(rest) == 1 else annotation
    return annotation


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    base = _strip(annotation)
    return base if isinstance(base, type) and issubclass(base, BaseModel) else None


def _holds_secret(annotation: Any) -> bool:
    """A secret type, or a container or model with one inside (a dict of webhook providers and their secrets)."""
    if isinstance(annotation, type) and issubclass(annotation, SECRET_TYPES):
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return any(_holds_secret(field.annotation) for field in annotation.model_fields.values())
    return any(_holds_secret(arg) for arg in typing.get_args(annotation))


KINDS: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),  # before int: a bool is an int
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (SecretStr, "string"),
    (Path, "path"),
    (dt.datetime, "date-time (ISO 8601)"),
    (AwareDatetime, "date-time (ISO 8601, with its offset)"),
    (NaiveDatetime, "date-time (ISO 8601)"),
    (Mapping, "JSON object"),
    (BaseModel, "JSON object"),
    (list, "JSON array"),
)


def _kind(base: Any) -> str:
    if typing.get_origin(base) is Literal:
        return "integer" if all(isinstance(v, int) for v in typing.get_args(base)) else "string"
    cls = typing.get_origin(base) or base
    for python, kind in KINDS:
        if isinstance(cls, type) and issubclass(cls, python):
            return kind
    return "string"


BOUNDS: tuple[tuple[type, str, str], ...] = (
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "≤"),
    (annotated_types.Lt, "lt", "<"),
)


def _allowed(base: Any, field: FieldInfo) -> str:
    if typing.get_origin(base) is Literal:
        return "one of " + ", ".join(f"`{_env_value(choice)}`" for choice in typing.get_args(base))
    bounds = {attr: (sign, getattr(item, attr)) for item in field.metadata for cls, attr, sign in BOUNDS
              if isinstance(item, cls)}  # fmt: skip
    lengths = [item for item in field.metadata if isinstance(item, annotated_types.MinLen | annotated_types.MaxLen)]
    if {"ge", "le"} <= set(bounds) and len(bounds) == 2:
        return f"{bounds['ge'][1]} to {bounds['le'][1]}"
    if bounds:
        return ", ".join(f"{sign} {value}" for sign, value in bounds.values())
    if lengths:
        least = next((i.min_length for i in lengths if isinstance(i, annotated_types.MinLen)), None)
        most = next((i.max_length for i in lengths if isinstance(i, annotated_types.MaxLen)), None)
        if least == most:
            return f"{least} characters"
        if most is None:
            return "not empty" if least == 1 else f"at least {least} characters"
        return f"{least or 0} to {most} characters"
    return ""


def _env_value(value: object) -> str:
    """`value` as one would write it in the environment."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value)
    return str(value)


# --- variables no setting reads --------------------------------------------------------------------


def unknown_variables(settings_class: type[BaseSettings], environ: Mapping[str, str]) -> list[str]:
    """The names in `environ` that carry the class's prefix but that pydantic-settings reads into no setting."""
    case_sensitive = bool(settings_class.model_config.get("case_sensitive", False))
    prefix = str(settings_class.model_config.get("env_prefix", ""))

    def carries_prefix(name: str) -> bool:
        return name.startswith(prefix) if case_sensitive else name.upper().startswith(prefix.upper())

    def is_read(name: str) -> bool:
        path = name[len(prefix) :]
        return _reads(settings_class, (path if case_sensitive else path.lower()).split(DELIMITER))

    return sorted(name for name in environ if carries_prefix(name) and not is_read(name))


def _reads(model: type[BaseModel], parts: list[str]) -> bool:
    head, *rest = parts
    field = model.model_fields.get(head)
    if field is None:
        return False
    if not rest:
        return True  # a setting, or a whole nested model (or dict) given as JSON
    inner = _nested_model(field.annotation)
    if inner is not None:
        return _reads(inner, rest)
    # Below a dict come its keys (the intake's webhook providers by name), whatever they are: what they hold
    # is validated, and the providers' model forbids unknown fields.
    origin = typing.get_origin(_strip(field.annotation))
    return isinstance(origin, type) and issubclass(origin, Mapping)


def nearest_setting(settings_class: type[BaseSettings], name: str) -> str | None:
    """The setting `name` most likely meant, if one is close."""
    names = [variable.name for variable in variables(settings_class)]
    found = difflib.get_close_matches(name.upper(), names, n=1, cutoff=0.6)
    return found[0] if found else None


def warn_of_unknown_variables(settings_class: type[BaseSettings], environ: Mapping[str, str]) -> list[str]:
    """Log one warning per variable with the class's prefix that no setting reads: its name and the nearest
    setting's, never its value. Returns the names."""
    unknown = unknown_variables(settings_class, environ)
    for name in unknown:
        nearest = nearest_setting(settings_class, name)
        fields = {"variable": name, "nearest_setting": nearest}
        if nearest is None:
            logger.warning("environment variable %s is not a setting: ignored", name, extra=fields)
        else:
            logger.warning("environment variable %s is not a setting: ignored (did you mean %s?)", name, nearest,
                           extra=fields)  # fmt: skip
    return unknown


@dataclass(frozen=True)
class Refusal:
    """One reason a settings class refused its environment: the setting (its variable) and why, never a value."""

    setting: str  # OPS_KAFKA, ROUTER_SWEEP_BATCH, INTAKE_WEBHOOKS__PROVIDERS ...
    reason: str


class SettingsRefusedError(Exception):
    """The settings class refused its environment; `refusals` say where and why, without the values."""

    def __init__(self, refusals: list[Refusal]) -> None:
        super().__init__("; ".join(f"{r.setting}: {r.reason}" for r in refusals))
        self.refusals = refusals


def read_settings(settings_class: type[SettingsT]) -> SettingsT:
    """`settings_class()` from the environment, or `SettingsRefusedError`, whatever the reason (decision 0091).

    pydantic refuses a value with a `ValidationError`, whose message repeats the input (secrets included):
    only its location and reason are kept. pydantic-settings refuses a JSON setting (a nested model, a dict, a
    list) whose value is not JSON with a `SettingsError` before validating anything: the variable is found
    again here (`_not_json`), and its reason is the JSON parser's, which names a position, never a value."""
    try:
        settings = settings_class()
    except ValidationError as exc:
        raise SettingsRefusedError(_invalid(settings_class, exc)) from None
    except SettingsError as exc:
        found = _not_json(settings_class, os.environ)
        raise SettingsRefusedError(found or [_unreadable(settings_class, exc)]) from None
    if infinite := list(_infinite(settings, env_prefix(settings_class))):
        raise SettingsRefusedError(infinite)
    return settings


def _infinite(model: BaseModel, where: str) -> Iterator[Refusal]:
    """The number settings given as infinity (pydantic's floats take `inf`, and a bound below only keeps NaN out):
    a duration no one means, a sweeper that never wakes, a cache never read again (helper 181's review)."""
    for name, value in model:
        variable = where + name.upper()
        if isinstance(value, BaseModel):
            yield from _infinite(value, variable + DELIMITER)
        elif isinstance(value, float) and not math.isfinite(value):
            yield Refusal(variable, "Input should be a finite number")


def _invalid(settings_class: type[BaseSettings], exc: ValidationError) -> list[Refusal]:
    refusals = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = [str(part).upper() for part in error["loc"]]
        where = env_prefix(settings_class) + DELIMITER.join(loc) if loc else settings_class.__name__
        refusals.append(Refusal(where, error["msg"]))
    return refusals


def _not_json(settings_class: type[BaseSettings], environ: Mapping[str, str]) -> list[Refusal]:
    """The variables `settings_class` reads as JSON whose value is not JSON, each with the parser's reason."""
    case_sensitive = bool(settings_class.model_config.get("case_sensitive", False))
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    refusals = []
    for name in sorted(environ):
        carries = name.startswith(prefix) if case_sensitive else name.upper().startswith(prefix.upper())
        path = name[len(prefix) :] if carries else ""
        target = _target(settings_class, (path if case_sensitive else path.lower()).split(DELIMITER)) if path else None
        if target is None or not _takes_json(target):
            continue
        try:
            json.loads(environ[name])
        except ValueError as exc:
            why = f"{exc.msg} at character {exc.pos}" if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
            refusals.append(Refusal(name if case_sensitive else name.upper(), f"not valid JSON ({why})"))
    return refusals


def _target(annotation: Any, parts: list[str]) -> Any | None:
    """The type the variable named by `parts` (below `annotation`) sets, or None if it sets nothing."""
    if not parts:
        return annotation
    head, *rest = parts
    inner = _nested_model(annotation)
    if inner is not None:
        field = inner.model_fields.get(head)
        return None if field is None else _target(field.annotation, rest)
    base = _strip(annotation)
    origin = typing.get_origin(base)
    if isinstance(origin, type) and issubclass(origin, Mapping):  # below a dict come its keys
        args = typing.get_args(base)
        return _target(args[1] if len(args) == 2 else Any, rest)
    return None


def _takes_json(annotation: Any) -> bool:
    """Whether pydantic-settings reads a variable of this type as JSON (and refuses one that is not)."""
    base = _strip(annotation)
    cls = typing.get_origin(base) or base
    return isinstance(cls, type) and issubclass(cls, BaseModel | Mapping | list | tuple | set | frozenset)


def _unreadable(settings_class: type[BaseSettings], exc: SettingsError) -> Refusal:
    """A `SettingsError` whose variable `_not_json` did not find: the field its message names, and the type of
    its cause (whose message may hold the value)."""
    field = re.search(r'field "([^"]+)"', str(exc))
    where = env_prefix(settings_class) + field.group(1).upper() if field else settings_class.__name__
    cause = type(exc.__cause__ or exc).__name__
    return Refusal(where, f"could not be read ({cause})")


def load_settings(settings_class: type[SettingsT], service: str) -> SettingsT:
    """A service's settings from its environment, with logging configured as they say, after a warning for
    every variable of its prefix no setting reads.

    Settings the class refuses stop the process (exit status 2) after the warnings (a misspelt name is often
    why a required one is missing) and one CRITICAL line per reason, naming the setting: never the values,
    which pydantic's own message would print, secrets included (`read_settings`)."""
    environ = dict(os.environ)
    try:
        settings = read_settings(settings_class)
    except SettingsRefusedError as refused:
        configure_logging(service, "INFO", "json")
        warn_of_unknown_variables(settings_class, environ)
        for refusal in refused.refusals:
            logger.critical("settings refused: %s: %s", refusal.setting, refusal.reason,
                            extra={"setting": refusal.setting})  # fmt: skip
        raise SystemExit(2) from None
    configure_logging(service, settings.log_level, settings.log_format)
    warn_of_unknown_variables(settings_class, environ)
    return settings
