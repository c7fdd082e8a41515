"""A variable with a service's prefix that no setting reads is named at start, with the nearest setting and
never its value (decision 0084); the repo's own dev stack gives each service only variables it reads."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic_settings import BaseSettings

from leadflow_crm_api.settings import CrmApiSettings
from leadflow_devstack.servers import MailSink
from leadflow_devstack.stack import SERVICES as STACK_SERVICES
from leadflow_devstack.stack import Stack
from leadflow_intake.settings import IntakeSettings
from leadflow_notifier.settings import NotifierSettings
from leadflow_ops import cli
from leadflow_ops.settings import OpsSettings
from leadflow_router.settings import RouterSettings
from leadflow_shared.settings_catalog import (
    load_settings,
    nearest_setting,
    unknown_variables,
    variables,
    warn_of_unknown_variables,
)

pytestmark = pytest.mark.unit

CLASSES: dict[str, type[BaseSettings]] = {
    "intake": IntakeSettings,
    "router": RouterSettings,
    "notifier": NotifierSettings,
    "crm-api": CrmApiSettings,
}
NAMES = sorted({(cls, v.name) for cls in CLASSES.values() for v in variables(cls)}, key=lambda p: p[1])
SECRET_VALUE = "do-not-log-this-value-7f3a"


def test_the_variables_pydantic_settings_reads_are_known_and_the_others_are_not() -> None:
    environ = {
        "ROUTER_SWEEP_BATCH": "",  # a setting
        "router_sweep_batch": "",  # names are read in any case
        "ROUTER_KAFKA": "",  # a whole nested model, as JSON
        "ROUTER_KAFKA__BOOTSTRAP_SERVERS": "",
        "ROUTER_SWEEP_BACTH": "",  # misspelt
        "ROUTER_KAFKA__BOOTSTRAP_SERVER": "",  # misspelt below a nested model
        "ROUTER_SWEEP_BATCH__LIMIT": "",  # below a setting that is not a model
        "ROUTER_KAFKA__": "",
        "ROUTER_": "",
        "NOTIFIER_SMTP__HOST": "",  # another service's prefix: not the router's business
        "OTEL_EXPORTER_OTLP_ENDPOINT": "",
    }
    assert unknown_variables(RouterSettings, environ) == [
        "ROUTER_",
        "ROUTER_KAFKA__",
        "ROUTER_KAFKA__BOOTSTRAP_SERVER",
        "ROUTER_SWEEP_BACTH",
        "ROUTER_SWEEP_BATCH__LIMIT",
    ]


def test_keys_below_a_dict_setting_are_read_as_its_keys() -> None:
    environ = {"INTAKE_WEBHOOKS__PROVIDERS__HOMEFINDER__FORMAT": "", "INTAKE_WEBHOOKS__PROVIDER": ""}
    assert unknown_variables(IntakeSettings, environ) == ["INTAKE_WEBHOOKS__PROVIDER"]


@given(st.sampled_from(NAMES), st.data())
def test_a_setting_is_known_in_any_case(pair: tuple[type[BaseSettings], str], data: st.DataObject) -> None:
    cls, name = pair
    flips = data.draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    cased = "".join(c.lower() if flip else c for c, flip in zip(name, flips, strict=True))
    assert unknown_variables(cls, {cased: "1"}) == []


@given(st.sampled_from(NAMES), st.data())
def test_a_misspelt_setting_is_named_with_the_nearest_one(
    pair: tuple[type[BaseSettings], str], data: st.DataObject
) -> None:
    cls, name = pair
    prefix = str(cls.model_config.get("env_prefix", ""))
    at = data.draw(st.integers(min_value=len(prefix), max_value=len(name) - 1))
    letter = data.draw(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    misspelt = name[:at] + letter + name[at + 1 :]
    known = {v.name for v in variables(cls)}
    if misspelt in known:
        return  # one letter away from another setting: a real name
    assert unknown_variables(cls, {misspelt: "1"}) == [misspelt]
    assert nearest_setting(cls, misspelt) in known


def test_the_warning_names_the_variable_and_the_nearest_setting_but_not_the_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    environ = {
        "ROUTER_SWEEP_BACTH": SECRET_VALUE,
        "ROUTER_QQQQQQQQQQQQQQQQQQQQQQQQ": SECRET_VALUE,
        "ROUTER_SWEEP_BATCH": "5",
    }
    with caplog.at_level(logging.WARNING, logger="leadflow_shared.settings_catalog"):
        named = warn_of_unknown_variables(RouterSettings, environ)
    assert named == ["ROUTER_QQQQQQQQQQQQQQQQQQQQQQQQ", "ROUTER_SWEEP_BACTH"]
    records = {getattr(r, "variable", None): r for r in caplog.records}
    assert set(records) == set(named)
    typo = records["ROUTER_SWEEP_BACTH"]
    assert typo.levelno == logging.WARNING
    assert getattr(typo, "nearest_setting", None) == "ROUTER_SWEEP_BATCH"
    assert "ROUTER_SWEEP_BATCH?" in typo.getMessage()
    assert getattr(records["ROUTER_QQQQQQQQQQQQQQQQQQQQQQQQ"], "nearest_setting", "?") is None
    assert SECRET_VALUE not in caplog.text


@contextlib.contextmanager
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """The lines logged inside the block, parsed, with logging as a service configures it (restored after)."""
    stream, lines = io.StringIO(), list[dict[str, Any]]()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    before = root.handlers[:], root.level
    try:
        yield lines
    finally:
        root.handlers[:], level = before
        root.setLevel(level)
        lines += [json.loads(line) for line in stream.getvalue().splitlines()]


def only_env(monkeypatch: pytest.MonkeyPatch, prefix: str, env: dict[str, str]) -> None:
    for key in [k for k in os.environ if k.upper().startswith(prefix)]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_a_service_starts_with_a_json_warning_per_unknown_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    only_env(monkeypatch, "ROUTER_", {"ROUTER_SWEEP_BACTH": SECRET_VALUE, "ROUTER_SWEEP_BATCH": "7"})
    with json_logs(monkeypatch) as lines:
        settings = load_settings(RouterSettings, "router")
    assert settings.sweep_batch == 7
    (line,) = lines
    assert line["level"] == "WARNING"
    assert (line["service"], line["variable"], line["nearest_setting"]) == (
        "router",
        "ROUTER_SWEEP_BACTH",
        "ROUTER_SWEEP_BATCH",
    )
    assert SECRET_VALUE not in json.dumps(line)


def test_settings_refused_at_start_name_the_misspelt_variable_and_the_reason_without_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The misspelling is why the key is missing: the warning comes before the refusal.
    env = {"CRM_API_ENVIRONMENT": "production", "CRM_API_AUTH__KYE": SECRET_VALUE}
    only_env(monkeypatch, "CRM_API_", env)
    with json_logs(monkeypatch) as lines, pytest.raises(SystemExit) as stopped:
        load_settings(CrmApiSettings, "crm-api")
    assert stopped.value.code == 2
    warning, *refusals = lines
    assert (warning["variable"], warning["nearest_setting"]) == ("CRM_API_AUTH__KYE", "CRM_API_AUTH__KEY")
    assert refusals, "the reason the settings were refused"
    assert all(line["level"] == "CRITICAL" for line in refusals)
    assert "CRM_API_KAFKA__BOOTSTRAP_SERVERS must be set in production" in refusals[0]["message"]
    # pydantic's own message would show every value given, the secret ones included.
    assert SECRET_VALUE not in json.dumps(lines)


def test_leadflow_ops_names_an_unknown_ops_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPS_MONGO__URI", f"mongodb://ops:{SECRET_VALUE}@mongo/")
    status = cli.run(cli.parser().parse_args(["settings-reference", "--out", str(tmp_path / "s.md")]))
    assert status == 0  # a warning, not a refusal
    err = capsys.readouterr().err
    assert "OPS_MONGO__URI is not a setting" in err
    assert "did you mean OPS_MONGO__URL?" in err
    assert SECRET_VALUE not in err


@pytest.mark.parametrize(("service", "prefix"), [(s, p) for s, p, _ in STACK_SERVICES])
def test_the_dev_stack_gives_each_service_only_variables_it_reads(service: str, prefix: str, tmp_path: Path) -> None:
    stack = Stack(tmp_path, mail=MailSink(tmp_path / "mail"), bootstrap="127.0.0.1:9092", mongo_url="mongodb://x")
    stack.ports = {name: 8001 + i for i, (name, _, _) in enumerate(STACK_SERVICES)}
    env = stack.service_env(service)
    ours = {name for name in env if not name.startswith("OTEL_")}
    assert all(name.startswith(prefix) for name in ours), sorted(ours)
    assert unknown_variables(CLASSES[service], env) == []


ROOT = Path(__file__).resolve().parents[2]
# Where the repo sets or names a service's variables for the people who deploy it. The decisions are history
# (0032 names a variable since renamed) and stay as written.
NAMING_FILES = ("compose.yaml", "deploy/Dockerfile", "deploy/k8s/*.yaml", "deploy/k8s/README.md", "README.md",
                "docs/operations.md", "docs/limits.md", "ops/README.md")  # fmt: skip
PROGRAMS: dict[str, type[BaseSettings]] = {
    **{str(cls.model_config.get("env_prefix")): cls for cls in CLASSES.values()},
    "OPS_": OpsSettings,
}
# A prefixed name, or `NAME_*` for a group of them; never the end of a longer name (CRM_API_ROUTER_URL).
NAMED = re.compile(r"(?<![A-Za-z0-9_$])((?:INTAKE|ROUTER|NOTIFIER|CRM_API|OPS)_[A-Za-z0-9_]*)(\*?)")
# Names with a prefix that are not settings, and why.
NOT_SETTINGS = {"ROUTER_SWEEP_BACTH": "docs/operations.md: the example of a misspelt name and its warning"}


def named_but_not_read(text: str) -> set[str]:
    """The prefixed variables `text` names that no setting of their program reads."""
    wrong = set()
    for match in NAMED.finditer(text):
        name, group = match.groups()
        prefix = next(p for p in sorted(PROGRAMS, key=len, reverse=True) if name.startswith(p))
        settings = PROGRAMS[prefix]
        if group or name.endswith("_"):
            known = name == prefix or any(v.name.startswith(name) for v in variables(settings))
        else:
            known = not unknown_variables(settings, {name: ""})
        if not known and name not in NOT_SETTINGS:
            wrong.add(name)
    return wrong


def test_the_naming_check_can_fail() -> None:
    text = "ROUTER_SWEEP_BATHC=1, `NOTIFIER_SMTP__*`, ROUTER_KAFKA__SASL_*, CRM_API_ROUTER_URL, NOTIFIER_SMS__X*"
    assert named_but_not_read(text) == {"ROUTER_SWEEP_BATHC", "NOTIFIER_SMS__X"}


def test_every_variable_the_deploy_files_and_guides_name_is_a_setting() -> None:
    files = sorted({path for pattern in NAMING_FILES for path in ROOT.glob(pattern)})
    assert len(files) >= len(NAMING_FILES)
    wrong = {str(path.relative_to(ROOT)): bad for path in files if (bad := named_but_not_read(path.read_text()))}
    assert not wrong, f"names no setting reads (a service would ignore them): {wrong}"


def test_a_refused_value_is_named_by_its_variable_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    only_env(monkeypatch, "ROUTER_", {"ROUTER_SWEEP_BATCH": SECRET_VALUE, "ROUTER_KAFKA__FETCH_WAIT_IDLE_MS": "0"})
    with json_logs(monkeypatch) as lines, pytest.raises(SystemExit):
        load_settings(RouterSettings, "router")
    assert {line["setting"] for line in lines} == {"ROUTER_SWEEP_BATCH", "ROUTER_KAFKA__FETCH_WAIT_IDLE_MS"}
    assert SECRET_VALUE not in json.dumps(lines)


CUT_SHORT = [
    # The webhook providers' JSON, its closing brace lost when the Secret was edited.
    (IntakeSettings, "intake", "INTAKE_", "INTAKE_WEBHOOKS__PROVIDERS",
     '{"acme": {"format": "generic", "secrets": ["' + SECRET_VALUE + '"]}'),
    # A whole nested model given as one variable, not JSON.
    (RouterSettings, "router", "ROUTER_", "ROUTER_KAFKA", "bootstrap_servers=kafka:9092"),
]  # fmt: skip


@pytest.mark.parametrize(("cls", "service", "prefix", "variable", "value"), CUT_SHORT, ids=["intake", "router"])
def test_a_json_setting_that_is_not_json_is_refused_by_name_with_status_2(
    monkeypatch: pytest.MonkeyPatch, cls: type[BaseSettings], service: str, prefix: str, variable: str, value: str
) -> None:
    # pydantic-settings refuses it with a SettingsError before validating anything (decision 0091).
    only_env(monkeypatch, prefix, {variable: value})
    with json_logs(monkeypatch) as lines, pytest.raises(SystemExit) as stopped:
        load_settings(cls, service)  # type: ignore[type-var]
    assert stopped.value.code == 2
    (refusal,) = lines
    assert (refusal["level"], refusal["setting"]) == ("CRITICAL", variable)
    assert refusal["message"].startswith(f"settings refused: {variable}: not valid JSON (")
    assert SECRET_VALUE not in json.dumps(lines)


def test_leadflow_ops_refuses_settings_as_the_services_do_never_showing_a_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # SASL_SSL without a mechanism nor a user: refused, rightly; pydantic's own message would show the password.
    only_env(
        monkeypatch, "OPS_", {"OPS_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "OPS_KAFKA__SASL_PASSWORD": SECRET_VALUE}
    )
    status = cli.run(cli.parser().parse_args(["dlq", "list", "leads.events.v1.dlq"]))
    assert status == 2
    err = capsys.readouterr().err
    assert "OPS_KAFKA: Value error, SASL_SSL needs sasl_mechanism" in err
    shown = [SECRET_VALUE[i : i + 6] for i in range(len(SECRET_VALUE) - 5) if SECRET_VALUE[i : i + 6] in err]
    assert not shown, f"the refusal shows the SASL password (parts {shown}): {err}"
