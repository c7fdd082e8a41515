"""docs/settings.md: every environment variable of every service, generated from the settings classes.

Each service's settings class (and leadflow-ops' own) is walked by `leadflow_shared.settings_catalog`: one row
per variable, nested models under their full names, secrets without their default. A test fails when the
committed page drifts (regenerate with `leadflow-ops settings-reference --out docs/settings.md`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pydantic_settings import BaseSettings

from leadflow_crm_api.settings import CrmApiSettings
from leadflow_intake.settings import IntakeSettings
from leadflow_notifier.settings import NotifierSettings
from leadflow_ops.settings import OpsSettings
from leadflow_router.settings import RouterSettings
from leadflow_shared.settings_catalog import Section, Variable, env_prefix, sections

REGENERATE = "leadflow-ops settings-reference --out docs/settings.md"


@dataclass(frozen=True)
class Program:
    title: str
    command: str
    settings: type[BaseSettings]
    # The variables it documents, by name prefix; None: all. leadflow-ops reads the services' classes but uses
    # only their environment, Kafka and MongoDB settings.
    only: tuple[str, ...] | None = None


PROGRAMS = (
    Program("intake", "leadflow-intake", IntakeSettings),
    Program("router", "leadflow-router", RouterSettings),
    Program("notifier", "leadflow-notifier", NotifierSettings),
    Program("crm-api", "leadflow-crm-api", CrmApiSettings),
    Program("leadflow-ops", "leadflow-ops", OpsSettings, only=("OPS_ENVIRONMENT", "OPS_KAFKA__", "OPS_MONGO__")),
)

INTRODUCTION = f"""\
# Settings reference

<!-- Generated from the settings classes by `{REGENERATE}`: do not edit by hand. -->

Every environment variable each service reads, generated from its settings class
(`services/*/src/*/settings.py`, the shared ones in `shared/src/leadflow_shared/settings.py`): change a
setting's `description` there and regenerate (`{REGENERATE}`); `tests/unit/test_settings_reference.py`
fails while this page differs from the code. Running the services: [operations.md](operations.md).

- A name is the service's prefix and the setting's, a nested model's after `__`
  (`NOTIFIER_DELIVERY__KEEP_DAYS`). Names are read in any case.
- A variable that carries a service's prefix but names no setting is ignored: the service logs a warning
  at start that names it and the nearest setting, never its value
  ([decision 0084](decisions/0084-unknown-settings-are-named-at-start.md)).
- Allowed: the bounds or choices the service checks at start. A value outside them, or settings that do
  not fit together, stop the service with an error that names the setting; so does a number given as
  infinity (`inf`) or NaN.
- Secrets (secret: yes) show no default. Give them through the service's Secret
  ([deploy/k8s/README.md](../deploy/k8s/README.md)), never a ConfigMap.
- Booleans are `true` or `false`; a JSON object or array is one JSON value; unset: no value, the
  behaviour the description gives.

{" · ".join(f"[{program.title}](#{program.title})" for program in PROGRAMS)}
"""

HEADER = "| variable | type | default | allowed | secret | what it does |\n| --- | --- | --- | --- | --- | --- |"


def document() -> str:
    """The whole page, as Markdown."""
    return "\n".join([INTRODUCTION, *(_program(program) for program in PROGRAMS)])


def _program(program: Program) -> str:
    parts = [f"## {program.title}\n", f"`{program.command}`, prefix `{env_prefix(program.settings)}`.\n"]
    for section in _sections(program):
        if section.prefix != env_prefix(program.settings):
            parts.append(f"### `{section.prefix}*`\n")
            if section.doc:
                parts.append(f"{section.doc}\n")
        parts.append("\n".join([HEADER, *(_row(variable) for variable in section.variables)]) + "\n")
    return "\n".join(parts)


def _sections(program: Program) -> Iterator[Section]:
    for section in sections(program.settings):
        kept = tuple(v for v in section.variables if program.only is None or v.name.startswith(program.only))
        if kept:
            yield Section(section.prefix, section.doc, kept)


def _row(variable: Variable) -> str:
    default = "—" if variable.default is None else _code(variable.default) if variable.default != "unset" else "unset"
    cells = (f"`{variable.name}`", variable.kind, default, variable.allowed, "yes" if variable.secret else "",
             variable.description)  # fmt: skip
    return "| " + " | ".join(_escaped(cell) for cell in cells) + " |"


def _escaped(cell: str) -> str:
    """A table cell as its text: a pipe would end the cell, and <this> would be read as an HTML tag."""
    return cell.replace("|", "\\|").replace("<", "\\<")


def _code(value: str) -> str:
    return f"`{value}`" if value else '`""`'
