"""docs/settings.md: every variable each service reads, generated from its settings class and in step with it;
nested models under their full names, a service's own defaults, no secret's default (decision 0084)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings

from leadflow_intake.settings import DEVELOPMENT_SECRET
from leadflow_ops import cli, settings_reference
from leadflow_ops.settings_reference import PROGRAMS
from leadflow_shared.settings_catalog import Variable, env_prefix, unknown_variables, variables

pytestmark = pytest.mark.unit

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
REGENERATE = f"regenerate with: .venv/bin/{settings_reference.REGENERATE}"
SERVICES = [program.settings for program in PROGRAMS if program.only is None]


@pytest.fixture(scope="module")
def page() -> str:
    return settings_reference.document()


def documented(settings: type[BaseSettings]) -> dict[str, Variable]:
    return {variable.name: variable for variable in variables(settings)}


def test_the_committed_page_is_the_generated_one(page: str) -> None:
    assert COMMITTED.read_text(encoding="utf-8") == page, REGENERATE


def test_the_command_writes_the_page(page: str, tmp_path: Path) -> None:
    out = tmp_path / "settings.md"
    assert cli.run(cli.parser().parse_args(["settings-reference", "--out", str(out)])) == 0
    assert out.read_text(encoding="utf-8") == page


def test_nested_models_are_named_in_full_with_the_service_s_own_defaults(page: str) -> None:
    notifier = documented(PROGRAMS[2].settings)
    keep = notifier["NOTIFIER_DELIVERY__KEEP_DAYS"]
    assert (keep.kind, keep.default, keep.allowed) == ("integer", "30", "3 to 365")
    assert "| `NOTIFIER_DELIVERY__KEEP_DAYS` | integer | `30` | 3 to 365 |" in page
    # Each service overrides the shared HTTP model's default port: the page shows the service's.
    ports = {documented(s)[f"{env_prefix(s)}HTTP__PORT"].default for s in SERVICES}
    assert ports == {"8001", "8002", "8003", "8004"}


def test_secrets_show_no_default(page: str) -> None:
    secrets = {name for settings in SERVICES for name, v in documented(settings).items() if v.secret}
    expected = {"INTAKE_MONGO__URL", "INTAKE_KAFKA__SASL_PASSWORD", "INTAKE_WEBHOOKS__PROVIDERS",
                "INTAKE_PARTNERS__PRODUCERS", "NOTIFIER_SMS__AUTH_TOKEN", "NOTIFIER_PUSH__ACCESS_TOKEN",
                "NOTIFIER_SMTP__PASSWORD", "NOTIFIER_OFFER_LINK_KEY", "CRM_API_AUTH__KEY",
                "CRM_API_WEB__SESSION_KEY"}  # fmt: skip
    assert expected <= secrets
    for settings in SERVICES:
        assert all(v.default is None for v in documented(settings).values() if v.secret)
    for value in ("development-only", "mongodb://127.0.0.1:27017/?directConnection=true", DEVELOPMENT_SECRET):
        assert f"`{value}`" not in page  # the secrets' defaults, as the page would show a default
    assert "| `CRM_API_AUTH__KEY` | string | — |  | yes |" in page


def test_only_the_settings_leadflow_ops_uses_are_on_its_part(page: str) -> None:
    ops = page[page.index("## leadflow-ops") :]
    assert "`OPS_KAFKA__BOOTSTRAP_SERVERS`" in ops
    assert "`OPS_MONGO__URL`" in ops
    assert "OPS_HTTP__" not in ops


def test_every_setting_says_what_it_does() -> None:
    missing = {name for s in SERVICES for name, v in documented(s).items() if not v.description}
    assert not missing, f"settings without a description: {sorted(missing)}"


def sample(variable: Variable) -> str | None:
    """A valid value other than the default for a plain number or boolean, or None."""
    if variable.kind == "boolean":
        return "false" if variable.default == "true" else "true"
    if variable.kind in {"integer", "number"} and " to " in variable.allowed:
        low, high = variable.allowed.split(" to ")
        return high if high != variable.default else low
    return None


def value_at(settings: BaseModel, path: list[str]) -> object:
    found: object = settings
    for part in path:
        found = getattr(found, part)
    return found


@pytest.mark.parametrize("settings", SERVICES, ids=lambda s: s.__name__)
def test_pydantic_settings_reads_every_documented_name(
    settings: type[BaseSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The names are the ones pydantic-settings reads: each number or boolean set through its documented name
    comes out of the settings, and every name is one the start-up check knows."""
    prefix = env_prefix(settings)
    names = documented(settings)
    assert not unknown_variables(settings, dict.fromkeys(names, ""))
    tried = 0
    for name, variable in names.items():
        value = sample(variable)
        if value is None:
            continue
        for key in [k for k in os.environ if k.upper().startswith(prefix)]:
            monkeypatch.delenv(key)
        monkeypatch.setenv(name, value)
        try:
            read = value_at(settings(), name.removeprefix(prefix).lower().split("__"))
        except ValidationError as exc:
            pytest.fail(f"{name}={value} refused: {exc}")
        assert str(read).lower() == value or float(str(read)) == float(value), name
        monkeypatch.delenv(name)
        tried += 1
    assert tried >= 10
