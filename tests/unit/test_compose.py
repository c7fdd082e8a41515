"""compose.yaml and deploy/ agree with the code: settings fields, ports, topics, commands.

No Docker needed: a misspelt environment variable is silently ignored by
pydantic-settings at run time, so it is caught here instead.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_spec import PyCompose
from pydantic import BaseModel, ValidationError

from leadflow_crm_api.settings import CrmApiSettings
from leadflow_intake.settings import IntakeSettings
from leadflow_notifier.settings import NotifierSettings
from leadflow_router.settings import RouterSettings
from leadflow_shared.http import serve
from leadflow_shared.settings import KafkaSettings, ServiceSettings
from leadflow_shared.topics import all_topics

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
DOCKERFILE = "deploy/Dockerfile"
K8S_DIR = ROOT / "deploy" / "k8s"


@dataclass(frozen=True)
class Expected:
    settings: type[ServiceSettings]
    prefix: str
    port: int
    command: str
    package_dir: str


SERVICES = {
    "intake": Expected(IntakeSettings, "INTAKE_", 8001, "leadflow-intake", "services/intake"),
    "router": Expected(RouterSettings, "ROUTER_", 8002, "leadflow-router", "services/router"),
    "notifier": Expected(NotifierSettings, "NOTIFIER_", 8003, "leadflow-notifier", "services/notifier"),
    "crm-api": Expected(CrmApiSettings, "CRM_API_", 8004, "leadflow-crm-api", "services/crm-api"),
}
# Containers built from our image, with the settings class they read.
IMAGE_CONTAINERS: dict[str, type[ServiceSettings]] = {
    **{name: e.settings for name, e in SERVICES.items()},
    "router-seed": RouterSettings,
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE_FILE.is_file(), f"{COMPOSE_FILE} is missing"
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict), "compose.yaml is not a mapping"
    assert isinstance(loaded.get("services"), dict), "compose.yaml has no services mapping"
    return loaded


def compose_spec_errors(document: dict[str, Any]) -> str | None:
    """What the Compose Specification refuses in `document` (the compose_spec crate's parser: every
    field, type, enum and duration), or None. YAML anchors and merge keys are resolved first, as
    Compose does; top-level `x-` extensions (the anchors' home) are left out."""
    plain = {key: value for key, value in document.items() if not key.startswith("x-")}
    try:
        PyCompose.from_json(json.dumps(plain))
    except ValueError as exc:
        return str(exc)
    return None


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    assert compose_spec_errors(compose) is None


def test_the_specification_check_catches_a_misspelt_field_a_bad_duration_and_an_unknown_condition(
    compose: dict[str, Any],
) -> None:
    intake = service(compose, "intake")
    for broken, why in (
        ({**intake, "stop_grace_periodd": "45s"}, "stop_grace_periodd"),
        ({**intake, "stop_grace_period": "45 parsecs"}, "duration"),
        ({**intake, "depends_on": {"kafka": {"condition": "service_sleepy"}}}, "service_sleepy"),
    ):
        errors = compose_spec_errors({**compose, "services": {**compose["services"], "intake": broken}})
        assert errors is not None, f"accepted: {why}"
        assert why in errors


def service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    found = compose["services"].get(name)
    assert isinstance(found, dict), f"compose.yaml has no service {name!r}"
    return found


# What compose.yaml takes from the shell that runs it: secrets it must not hold, given as a run would give them.
SHELL = {"LEADFLOW_ROUTER_API_TOKEN": secrets.token_urlsafe(32)}
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[?-][^}]*)?\}")


def raw_environment(svc: dict[str, Any]) -> dict[str, str]:
    """A service's environment as written, whether as a mapping or as KEY=VALUE items."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def environment(svc: dict[str, Any]) -> dict[str, str]:
    """A service's environment as compose gives it: `${NAME...}` replaced by the shell's (SHELL) value."""
    return {key: INTERPOLATION.sub(lambda m: SHELL[m[1]], value) for key, value in raw_environment(svc).items()}


def unknown_setting(settings: type[BaseModel], env_name: str, prefix: str) -> str | None:
    """Why `env_name` names no field of `settings` (walking nested models on "__"), or None."""
    if not env_name.startswith(prefix):
        return f"lacks the prefix {prefix}, so {settings.__name__} never reads it"
    model: type[BaseModel] | None = settings
    for part in env_name.removeprefix(prefix).lower().split("__"):
        if model is None:
            return f"goes below a field that is not a nested model (at {part!r})"
        field = model.model_fields.get(part)
        if field is None:
            return f"{model.__name__} has no field {part!r} (fields: {sorted(model.model_fields)})"
        annotation = field.annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    if model is not None:
        return f"names the whole nested model {model.__name__}, not one of its fields"
    return None


def published_ports(svc: dict[str, Any]) -> set[tuple[int, int]]:
    """(host port, container port) pairs, from short ("[ip:]host:container") or long syntax."""
    pairs = set()
    for entry in svc.get("ports", []):
        if isinstance(entry, dict):
            pairs.add((int(entry["published"]), int(entry["target"])))
        else:
            *_, host, container = str(entry).split(":")
            pairs.add((int(host), int(container.split("/")[0])))
    return pairs


def duration_seconds(value: str) -> float:
    """A compose duration ("45s", "1m30s", "1500ms") in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    assert parts, f"not a duration: {value!r}"
    assert "".join(n + u for n, u in parts) == value, f"not a duration: {value!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def test_unknown_setting_catches_typos() -> None:
    # The checker itself must be able to fail, or every test below passes vacuously.
    assert unknown_setting(NotifierSettings, "NOTIFIER_SMTP__HOST", "NOTIFIER_") is None
    assert unknown_setting(NotifierSettings, "NOTIFIER_SMTP__HOTS", "NOTIFIER_") is not None
    assert unknown_setting(NotifierSettings, "NOTIFIER_SMTP", "NOTIFIER_") is not None
    assert unknown_setting(NotifierSettings, "NOTIFIER_CRM_BASE_URL__X", "NOTIFIER_") is not None
    assert unknown_setting(RouterSettings, "NOTIFIER_SMTP__HOST", "ROUTER_") is not None


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_is_built_checked_and_ordered(compose: dict[str, Any], name: str) -> None:
    svc = service(compose, name)
    build = svc.get("build")
    assert isinstance(build, dict), f"{name}: no build section"
    assert build.get("dockerfile") == DOCKERFILE, f"{name}: build must use {DOCKERFILE} (got {build!r})"
    assert (ROOT / build.get("context", ".") / DOCKERFILE).is_file(), (
        f"{name}: {DOCKERFILE} not found from its build context"
    )
    assert svc.get("command", [None])[0] == SERVICES[name].command, (
        f"{name}: command must start with {SERVICES[name].command}"
    )

    test = " ".join(svc.get("healthcheck", {}).get("test", []))
    ready_url = f"http://127.0.0.1:{SERVICES[name].port}/health/ready"
    assert ready_url in test, f"{name}: healthcheck must request {ready_url} (test is {test!r})"

    depends_on = svc.get("depends_on")
    assert isinstance(depends_on, dict), f"{name}: depends_on must be a mapping with conditions, got {depends_on!r}"
    conditions = {dep: (spec or {}).get("condition") for dep, spec in depends_on.items()}
    assert conditions.get("kafka-init") == "service_completed_successfully", (
        f"{name}: must wait for kafka-init to finish: {conditions}"
    )
    assert conditions.get("mongodb") == "service_healthy", f"{name}: must wait for a healthy mongodb: {conditions}"
    for dep, condition in conditions.items():
        assert dep in compose["services"], f"{name}: depends on unknown service {dep!r}"
        assert condition in {"service_healthy", "service_completed_successfully"}, (
            f"{name}: {dep} has condition {condition!r}"
        )
        if condition == "service_healthy":
            assert "healthcheck" in service(compose, dep), (
                f"{name}: waits for {dep} to be healthy, but {dep} has no healthcheck"
            )


@pytest.mark.parametrize("name", sorted(IMAGE_CONTAINERS))
def test_environment_matches_settings(compose: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings_class = IMAGE_CONTAINERS[name]
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    env = environment(service(compose, name))
    assert env, f"{name}: no environment"
    problems = {key: why for key in env if (why := unknown_setting(settings_class, key, prefix))}
    assert not problems, f"{name}: environment variables that {settings_class.__name__} ignores: {problems}"

    # Only the compose environment: drop whatever this shell or other tests set.
    for key in [k for k in os.environ if k.upper().startswith(prefix)]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        settings = settings_class()
    except ValidationError as exc:
        pytest.fail(f"{name}: {settings_class.__name__} refuses compose's environment: {exc}")

    port = SERVICES["router" if name == "router-seed" else name].port
    assert settings.http.port == port, f"{name}: HTTP port is {settings.http.port}, expected {port}"
    assert settings.kafka.bootstrap_servers == "kafka:9092", f"{name}: Kafka is {settings.kafka.bootstrap_servers!r}"
    assert settings.kafka.producer_idempotence, f"{name}: real Kafka supports idempotent producers; keep them on"
    assert "replicaSet=rs0" in settings.mongo.url.get_secret_value(), (
        f"{name}: MongoDB URL must name the replica set rs0"
    )
    all_interfaces = "0.0.0.0"  # noqa: S104 (inside a container, by design)
    assert settings.http.host == all_interfaces, f"{name}: must listen on 0.0.0.0 to be reachable from outside"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_published_port_is_http_port(compose: dict[str, Any], name: str) -> None:
    svc = service(compose, name)
    http_port = int(environment(svc).get(f"{SERVICES[name].prefix}HTTP__PORT", -1))
    assert http_port == SERVICES[name].port, f"{name}: HTTP__PORT is {http_port}, expected {SERVICES[name].port}"
    assert published_ports(svc) == {(http_port, http_port)}, (
        f"{name}: must publish {http_port}:{http_port}, publishes {sorted(published_ports(svc))}"
    )


def test_notifier_sends_mail_to_mailpit(compose: dict[str, Any]) -> None:
    env = environment(service(compose, "notifier"))
    smtp = (env.get("NOTIFIER_SMTP__HOST"), env.get("NOTIFIER_SMTP__PORT"))
    assert smtp == ("mailpit", "1025"), f"notifier: SMTP must be mailpit:1025, is {smtp}"
    assert "healthcheck" in service(compose, "mailpit"), "mailpit: no healthcheck"
    assert env.get("NOTIFIER_CRM_BASE_URL"), "notifier: NOTIFIER_CRM_BASE_URL is not set"


def test_the_router_s_service_token_comes_from_the_shell_to_both_router_and_crm_api(compose: dict[str, Any]) -> None:
    """Decision 0082: compose.yaml holds no token; the router and crm-api get the same one, required (`:?`, no
    default), from LEADFLOW_ROUTER_API_TOKEN; the seeding job, which serves nothing, gets none."""
    router = raw_environment(service(compose, "router")).get("ROUTER_API_TOKEN", "")
    crm_api = raw_environment(service(compose, "crm-api")).get("CRM_API_ROUTER_TOKEN", "")
    for name, value in {"router": router, "crm-api": crm_api}.items():
        assert re.fullmatch(r"\$\{LEADFLOW_ROUTER_API_TOKEN:\?[^}]+\}", value), f"{name}: its token is {value!r}"
    assert "ROUTER_API_TOKEN" not in raw_environment(service(compose, "router-seed"))
    assert environment(service(compose, "router"))["ROUTER_API_TOKEN"] == SHELL["LEADFLOW_ROUTER_API_TOKEN"]
    words = [w for svc in compose["services"].values() for v in raw_environment(svc).values() for w in v.split()]
    assert not [w for w in words if re.fullmatch(r"[A-Za-z0-9_\-]{32,}", w)], "a secret-like value in compose.yaml"


def test_kafka_init_creates_exactly_the_shared_topics(compose: dict[str, Any]) -> None:
    init = service(compose, "kafka-init")
    condition = init.get("depends_on", {}).get("kafka", {}).get("condition")
    assert condition == "service_healthy", f"kafka-init: must wait for a healthy kafka, waits for {condition!r}"
    command = init.get("command")
    script = " ".join(command) if isinstance(command, list) else str(command)
    created = sorted((m[1], int(m[2])) for m in re.finditer(r"--topic\s+(\S+)\s+--partitions\s+(\d+)", script))
    expected = sorted((t.name, t.partitions) for t in all_topics())
    assert created == expected, f"kafka-init creates {created}, but all_topics() is {expected}"


def test_router_seed_loads_the_sample_accounts(compose: dict[str, Any]) -> None:
    seed = service(compose, "router-seed")
    assert seed.get("command") == ["leadflow-router", "seed", "/seed/accounts.json"], (
        f"router-seed: command is {seed.get('command')}"
    )
    mounts = {v["target"]: v["source"] for v in seed.get("volumes", []) if isinstance(v, dict)}
    source = mounts.get("/seed/accounts.json")
    assert source, f"router-seed: nothing mounted at /seed/accounts.json (long volume syntax expected): {mounts}"
    assert (ROOT / source).is_file(), f"router-seed: mounts {source}, which does not exist"
    router_needs = service(compose, "router").get("depends_on", {}).get("router-seed", {}).get("condition")
    assert router_needs == "service_completed_successfully", "router: must start after router-seed has finished"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_command_is_the_package_console_script(name: str) -> None:
    pyproject = tomllib.loads((ROOT / SERVICES[name].package_dir / "pyproject.toml").read_text())
    scripts = pyproject.get("project", {}).get("scripts", {})
    assert SERVICES[name].command in scripts, f"{name}: {SERVICES[name].command} is not a console script ({scripts})"


def test_dockerfile_installs_from_the_lock() -> None:
    dockerfile = ROOT / DOCKERFILE
    assert dockerfile.is_file(), f"{DOCKERFILE} is missing"
    text = dockerfile.read_text()
    assert "uv.lock" in text, f"{DOCKERFILE} must copy uv.lock"
    assert "--locked" in text, f"{DOCKERFILE} must install with --locked, so a stale lock fails the build"
    assert re.search(r"^USER\s+(?!0\b|root\b)\S+", text, re.MULTILINE), f"{DOCKERFILE} must run as a non-root USER"


def k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    """deploy/k8s's objects by (kind, name)."""
    objects = {}
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and "metadata" in doc:
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def test_k8s_commits_no_secret_values() -> None:
    secrets = [name for kind, name in k8s_objects() if kind == "Secret"]
    assert not secrets, f"deploy/k8s commits Secret objects {secrets}; create them out of band instead"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_k8s_deployment_matches_settings(name: str) -> None:
    expected, objects = SERVICES[name], k8s_objects()
    config = objects.get(("ConfigMap", f"{name}-config"), {}).get("data")
    assert config, f"deploy/k8s: no ConfigMap {name}-config with data"
    problems = {key: why for key in config if (why := unknown_setting(expected.settings, key, expected.prefix))}
    assert not problems, f"deploy/k8s {name}-config: keys that {expected.settings.__name__} ignores: {problems}"
    assert config.get(f"{expected.prefix}HTTP__PORT") == str(expected.port), f"{name}-config: wrong HTTP__PORT"

    deployment = objects.get(("Deployment", name))
    assert deployment, f"deploy/k8s: no Deployment {name}"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container.get("command") == [expected.command], f"{name}: container command is {container.get('command')}"
    ports = [p["containerPort"] for p in container.get("ports", [])]
    assert ports == [expected.port], f"{name}: container ports {ports}, expected [{expected.port}]"
    probes = {
        kind: container.get(kind, {}).get("httpGet", {}).get("path") for kind in ("livenessProbe", "readinessProbe")
    }
    assert probes == {"livenessProbe": "/health/live", "readinessProbe": "/health/ready"}, f"{name}: probes {probes}"
    sources = [next(iter(ref.items())) for ref in container.get("envFrom", [])]
    refs = {kind: ref["name"] for kind, ref in sources}
    assert refs == {"configMapRef": f"{name}-config", "secretRef": f"{name}-secrets"}, f"{name}: envFrom is {refs}"
    assert container.get("resources", {}).get("requests"), f"{name}: no resource requests (the HPA needs them)"
    assert ("Service", name) in objects, f"deploy/k8s: no Service {name}"


def test_duration_parsing() -> None:
    assert duration_seconds("45s") == 45
    assert duration_seconds("1m30s") == 90
    assert duration_seconds("1500ms") == 1.5
    with pytest.raises(AssertionError):
        duration_seconds("45")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_stop_grace_period_outlasts_the_drain(compose: dict[str, Any], name: str) -> None:
    # SIGTERM starts uvicorn's HTTP drain, then the Kafka handlers' (decision 0043); compose
    # SIGKILLs after stop_grace_period (10 s unless set), in the middle of it.
    svc = service(compose, name)
    grace = svc.get("stop_grace_period")
    assert grace, f"{name}: no stop_grace_period, so compose kills it 10 s after SIGTERM, mid-drain"
    http = float(inspect.signature(serve).parameters["graceful_seconds"].default)
    default = KafkaSettings.model_fields["graceful_timeout_seconds"].default
    kafka = float(environment(svc).get(f"{SERVICES[name].prefix}KAFKA__GRACEFUL_TIMEOUT_SECONDS", default))
    assert duration_seconds(str(grace)) > http + kafka, (
        f"{name}: stop_grace_period {grace} <= HTTP drain {http} s + Kafka drain {kafka} s"
    )
