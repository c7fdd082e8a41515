"""A number setting given as infinity stops the service at start (helper 181's review, session 38; `read_settings`).

Every number setting (`kind == "number"`, a float) takes the text `inf` (or `Infinity`) when its only bound is
`gt=0` / `ge=0`: pydantic's float accepts infinity unless `allow_inf_nan=False` or an upper bound is set.
settings.md promises "A value outside them, or settings that do not fit together, stop the service with an
error that names the setting"; infinity is no duration. What each one does once taken:

- `ROUTER_SWEEP_IDLE_SECONDS=inf`: the sweeper sleeps until the next deadline it has read and never looks
  again on its own; with no deadline known it sleeps for good, so the stale-outbox republish (the crash
  backstop) and other replicas' deadlines wait forever (`router/sweeper.py` `Alarm.sleep`, `asyncio.wait`
  with `timeout=inf` waits without error);
- `ROUTER_CONFIG_CACHE_SECONDS`, `INTAKE_ACCOUNT_CACHE_SECONDS`, `NOTIFIER_DIRECTORY_CACHE_SECONDS=inf`: an agent
  removed keeps receiving offers and notices (limits.md: "up to 5 s");
- `NOTIFIER_DIGEST__CHECK_SECONDS=inf`: no digest is ever sent;
- `NOTIFIER_SMTP__TIMEOUT_SECONDS=inf`: a relay that hangs holds its deliveries for good (the lease is renewed);
- `<PREFIX>KAFKA__RETRY_INITIAL_SECONDS=inf`: the first transient failure parks the partition for good;
- `<PREFIX>KAFKA__GRACEFUL_TIMEOUT_SECONDS=inf`: the drain waits for ever (SIGKILL at the pod's grace period).

A huge finite value (`1e300`) meant the same and passed (session 38's open point): every number and integer
setting has an upper bound of its own since session 39 (settings.md lists them).
"""

from __future__ import annotations

import os

import pytest

from leadflow_crm_api.settings import CrmApiSettings
from leadflow_intake.settings import IntakeSettings
from leadflow_notifier.settings import NotifierSettings
from leadflow_router.settings import RouterSettings
from leadflow_shared.settings import ServiceSettings
from leadflow_shared.settings_catalog import SettingsRefusedError, env_prefix, read_settings, variables

pytestmark = pytest.mark.unit

CLASSES: tuple[type[ServiceSettings], ...] = (IntakeSettings, RouterSettings, NotifierSettings, CrmApiSettings)

NUMBERS = [
    pytest.param(cls, variable.name, id=variable.name)
    for cls in CLASSES
    for variable in variables(cls)
    if variable.kind == "number" and not variable.name.endswith("CLOCK_RATE")  # bounded 1 to 10 by its own field
]


def _only(monkeypatch: pytest.MonkeyPatch, prefix: str, env: dict[str, str]) -> None:
    for key in list(os.environ):
        if key.upper().startswith(prefix):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("value", ["inf", "Infinity"])
@pytest.mark.parametrize(("settings_class", "name"), NUMBERS)
def test_a_number_setting_of_infinity_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, settings_class: type[ServiceSettings], name: str, value: str
) -> None:
    _only(monkeypatch, env_prefix(settings_class), {name: value})
    with pytest.raises(SettingsRefusedError) as refused:
        read_settings(settings_class)  # taken: the service starts with a duration no one means
    assert any(r.setting == name for r in refused.value.refusals), refused.value.refusals


BOUNDED = [
    pytest.param(cls, variable.name, variable.kind, id=variable.name)
    for cls in CLASSES
    for variable in variables(cls)
    if variable.kind in {"number", "integer"}
]


@pytest.mark.parametrize(("settings_class", "name", "kind"), BOUNDED)
def test_a_huge_finite_number_setting_is_refused_at_start_too(
    monkeypatch: pytest.MonkeyPatch, settings_class: type[ServiceSettings], name: str, kind: str
) -> None:
    # Session 38's open point: 1e300 seconds passed the infinity check and meant the same (a sweeper, a cache, a
    # retry pause that never ends); every number and integer setting now has an upper bound of its own.
    _only(monkeypatch, env_prefix(settings_class), {name: "1e300" if kind == "number" else str(10**30)})
    with pytest.raises(SettingsRefusedError) as refused:
        read_settings(settings_class)
    assert any(r.setting == name for r in refused.value.refusals), refused.value.refusals
