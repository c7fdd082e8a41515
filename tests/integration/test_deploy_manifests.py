"""deploy/k8s renders, is valid Kubernetes, and scales and stops the way the code needs.

`kubectl kustomize deploy/k8s` is rendered once for the module. Every built-in resource is
checked against the Kubernetes 1.31 schema in strict mode (kubernetes-validate: an unknown or
misspelt field fails). KEDA's ScaledObject and TriggerAuthentication are CRDs that schema does
not know, so they get structural checks here instead, against the code: each service's app is
built and the topics and consumer groups its broker really subscribes are read back, with the
partition counts of leadflow_shared.topics. Decision: docs/decisions/0043-scaling-on-kubernetes.md.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from faststream.kafka.subscriber.usecase import LogicSubscriber

import leadflow_crm_api.bootstrap
import leadflow_intake.bootstrap
import leadflow_notifier.bootstrap
import leadflow_router.bootstrap
from leadflow_crm_api.settings import CrmApiSettings
from leadflow_intake.settings import IntakeSettings
from leadflow_notifier.settings import NotifierSettings
from leadflow_router.settings import RouterSettings
from leadflow_shared.http import serve
from leadflow_shared.kafka import consumer_options
from leadflow_shared.service import ServiceRuntime
from leadflow_shared.settings import KafkaSettings, ServiceSettings
from leadflow_shared.settings_catalog import unknown_variables
from leadflow_shared.topics import all_topics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.31"  # the oldest release the manifests are written for (README.md)
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}  # CRDs: checked structurally below
NAME_LABEL = "app.kubernetes.io/name"
# Parameters KEDA's kafka scaler reads from a TriggerAuthentication.
KEDA_KAFKA_AUTH = {"sasl", "username", "password", "tls", "ca", "cert", "key", "keyPassword"}
PARTITIONS = {spec.name: spec.partitions for spec in all_topics()}


@dataclass(frozen=True)
class Service:
    settings: type[ServiceSettings]
    bootstrap: ModuleType  # has create_app(settings) and builds its ServiceRuntime by that name
    autoscaler: str  # which one owns the replica count (decision 0043)


SERVICES = {
    "intake": Service(IntakeSettings, leadflow_intake.bootstrap, "HorizontalPodAutoscaler"),
    "router": Service(RouterSettings, leadflow_router.bootstrap, "ScaledObject"),
    "notifier": Service(NotifierSettings, leadflow_notifier.bootstrap, "ScaledObject"),
    "crm-api": Service(CrmApiSettings, leadflow_crm_api.bootstrap, "HorizontalPodAutoscaler"),
}

Objects = dict[tuple[str, str], dict[str, Any]]


def kubectl() -> str:
    path = os.environ.get("LEADFLOW_KUBECTL") or shutil.which("kubectl")
    if not path or not os.access(path, os.X_OK):
        pytest.fail(
            "kubectl not found: install kubectl (1.27+, it renders deploy/k8s with its built-in kustomize) "
            "or set LEADFLOW_KUBECTL to its path",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(K8S_DIR)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize deploy/k8s failed: {result.stderr.strip()}"
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert docs, "kubectl kustomize deploy/k8s rendered nothing"
    return docs


@pytest.fixture(scope="module")
def objects(rendered: list[dict[str, Any]]) -> Objects:
    found: Objects = {}
    for doc in rendered:
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in found, f"rendered twice: {key}"
        found[key] = doc
    return found


@dataclass(frozen=True)
class Built:
    consumer_group: str  # the setting, as the Deployment's ConfigMap leaves it
    subscriptions: frozenset[tuple[str, str]]  # (topic, consumer group) the broker subscribes
    routes: frozenset[str]


def build(name: str, service: Service, config: dict[str, str]) -> Built:
    """Build the service's app as its Deployment would (consumer group from the ConfigMap), without starting it."""
    built: list[ServiceRuntime] = []

    class Recording(ServiceRuntime):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    prefix = str(service.settings.model_config.get("env_prefix", ""))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(service.bootstrap, "ServiceRuntime", Recording)
        for key in [k for k in os.environ if k.upper().startswith(prefix)]:
            patch.delenv(key)
        if group := config.get(f"{prefix}CONSUMER_GROUP"):
            patch.setenv(f"{prefix}CONSUMER_GROUP", group)
        settings = service.settings()
        create_app: Callable[[ServiceSettings], Any] = service.bootstrap.create_app
        app = create_app(settings)
    assert len(built) == 1, f"{name}: create_app built {len(built)} ServiceRuntimes"
    subscriptions = set()
    for subscriber in built[0].broker.subscribers:
        assert isinstance(subscriber, LogicSubscriber), f"{name}: not a Kafka subscriber: {subscriber!r}"
        subscriptions |= {(topic, str(subscriber.group_id)) for topic in subscriber.topic_names}
    return Built(
        consumer_group=str(settings.model_dump()["consumer_group"]),  # every service has one, the base class not
        subscriptions=frozenset(subscriptions),
        routes=frozenset(str(getattr(route, "path", "")) for route in app.routes),
    )


@pytest.fixture(scope="module")
def services(objects: Objects) -> dict[str, Built]:
    return {name: build(name, service, config_of(objects, name)) for name, service in SERVICES.items()}


def prefix_of(name: str) -> str:
    return str(SERVICES[name].settings.model_config.get("env_prefix", ""))


def config_of(objects: Objects, name: str) -> dict[str, str]:
    config = objects.get(("ConfigMap", f"{name}-config"), {}).get("data")
    assert isinstance(config, dict), f"no ConfigMap {name}-config with data"
    return config


def test_crm_api_shows_the_digest_hour_the_notifier_uses(objects: Objects) -> None:
    """An account without a digest_hour gets its digest at the notifier's default; crm-api's settings
    show its own copy of that default: the manifests set both alike."""
    shown = config_of(objects, "crm-api")["CRM_API_DIGEST_DEFAULT_HOUR"]
    assert shown == config_of(objects, "notifier")["NOTIFIER_DIGEST__DEFAULT_HOUR"]


# --- environment: every variable a container is given is a setting of its service (decision 0084) ------------

COMMANDS = {f"leadflow-{name}": name for name in SERVICES}  # the image's console commands
# Read by a library, not by leadflow's settings: the OpenTelemetry SDK's own variables.
LIBRARY_VARIABLES = re.compile(r"OTEL_[A-Z0-9_]+")


def pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod spec(s) a rendered workload runs."""
    spec = doc.get("spec") or {}
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    if doc["kind"] == "Pod":
        return [spec]
    return [spec["template"]["spec"]] if "template" in spec else []


def given_variables(spec: dict[str, Any], objects: Objects) -> dict[str, str]:
    """Each variable a container's manifest sets (`env`, and the ConfigMaps of `envFrom`), with where from.
    Its Secrets are created out of band: the names README.md has them created with are checked in
    tests/unit/test_unknown_settings.py."""
    given = {variable["name"]: "env" for variable in spec.get("env", [])}
    for source in spec.get("envFrom", []):
        if "configMapRef" in source:
            ref = source["configMapRef"]["name"]
            data = objects.get(("ConfigMap", ref), {}).get("data")
            assert isinstance(data, dict), f"envFrom names ConfigMap {ref}, which is not rendered (or has no data)"
            given |= {source.get("prefix", "") + key: f"ConfigMap {ref}" for key in data}
    return given


def ignored_by(name: str, variables: dict[str, str]) -> dict[str, str]:
    """The variables service `name` would not read, each with where it is set."""
    settings, prefix = SERVICES[name].settings, prefix_of(name)
    unread = set(unknown_variables(settings, variables))
    return {
        variable: where
        for variable, where in variables.items()
        if variable in unread or not (variable.upper().startswith(prefix) or LIBRARY_VARIABLES.fullmatch(variable))
    }


def test_every_variable_a_leadflow_container_is_given_is_a_setting_of_its_service(
    rendered: list[dict[str, Any]], objects: Objects
) -> None:
    checked: dict[str, int] = {}
    for doc in rendered:
        for pod in pod_specs(doc):
            for spec in pod.get("initContainers", []) + pod.get("containers", []):
                service = COMMANDS.get((spec.get("command") or [""])[0])
                if service is None:
                    continue
                variables = given_variables(spec, objects)
                where = f"{doc['kind']}/{doc['metadata']['name']} container {spec['name']}"
                assert not ignored_by(service, variables), (
                    f"{where}: {SERVICES[service].settings.__name__} reads none of {ignored_by(service, variables)}"
                )
                checked[service] = checked.get(service, 0) + len(variables)
    assert set(checked) == set(SERVICES), f"containers found per service: {checked}"
    assert all(checked.values()), checked


def test_the_variable_check_can_fail(objects: Objects) -> None:
    variables = given_variables(container(objects, "router"), objects)
    assert not ignored_by("router", variables)
    misspelt = {**variables, "ROUTER_SWEEP_BACTH": "env", "NOTIFIER_SMTP__HOST": "env", "OTEL_SERVICE_NAME": "env"}
    assert ignored_by("router", misspelt) == {"ROUTER_SWEEP_BACTH": "env", "NOTIFIER_SMTP__HOST": "env"}


def of_kind(objects: Objects, kind: str) -> list[dict[str, Any]]:
    return [obj for (k, _), obj in objects.items() if k == kind]


def deployment(objects: Objects, name: str) -> dict[str, Any]:
    found = objects.get(("Deployment", name))
    assert found, f"no Deployment {name}"
    return found


def container(objects: Objects, name: str) -> dict[str, Any]:
    containers = deployment(objects, name)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{name}: expected one container, got {len(containers)}"
    found: dict[str, Any] = containers[0]
    return found


def pod_labels(objects: Objects, name: str) -> dict[str, str]:
    labels: dict[str, str] = deployment(objects, name)["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels only, as ours are) selects pods with these labels."""
    assert set(selector) <= {"matchLabels"}, f"only matchLabels selectors are checked here: {selector}"
    match = selector.get("matchLabels") or {}
    return bool(match) and all(labels.get(key) == value for key, value in match.items())


def targets(objects: Objects, kind: str, name: str) -> list[dict[str, Any]]:
    """Autoscalers of `kind` whose scaleTargetRef names Deployment `name`."""
    return [
        obj
        for obj in of_kind(objects, kind)
        if obj["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        and obj["spec"]["scaleTargetRef"]["name"] == name
    ]


def drain_seconds(config: dict[str, str], prefix: str) -> float:
    """How long a SIGTERM'd process may take: uvicorn's HTTP drain, then the Kafka handlers'."""
    http = float(inspect.signature(serve).parameters["graceful_seconds"].default)
    default = KafkaSettings.model_fields["graceful_timeout_seconds"].default
    kafka = float(config.get(f"{prefix}KAFKA__GRACEFUL_TIMEOUT_SECONDS", default))
    return http + kafka


def pre_stop_seconds(spec: dict[str, Any]) -> float:
    pre_stop = spec.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"]["seconds"])
    command = pre_stop.get("exec", {}).get("command", [])
    assert len(command) == 2, f"preStop is not `sleep SECONDS`: {pre_stop}"
    assert command[0] in {"sleep", "/bin/sleep"}, f"preStop is not a sleep: {pre_stop}"
    return float(command[1])


def strict_validate(resource: dict[str, Any]) -> str | None:
    """Why `resource` is not valid Kubernetes KUBERNETES_VERSION (strict schema), or None."""
    # Imported by name: the package ships no type information.
    validator = importlib.import_module("kubernetes_validate")
    try:
        validator.validate(resource, KUBERNETES_VERSION, strict=True)
    except (validator.ValidationError, validator.SchemaNotFoundError) as exc:
        where = "/".join(str(part) for part in getattr(exc, "path", []))
        return f"{exc.message} (at {where or 'top level'})"
    return None


# --- rendering and the schema -------------------------------------------------------------


def test_every_manifest_is_in_the_kustomization() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    listed = set(kustomization.get("resources", []))
    files = {path.name for path in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == files, f"kustomization.yaml lists {sorted(listed)}, deploy/k8s has {sorted(files)}"


def test_builtin_resources_are_valid_kubernetes(rendered: list[dict[str, Any]]) -> None:
    problems = {
        f"{doc['kind']}/{doc['metadata']['name']}": why
        for doc in rendered
        if doc["kind"] not in KEDA_KINDS and (why := strict_validate(doc))
    }
    assert not problems, f"invalid for Kubernetes {KUBERNETES_VERSION}: {problems}"
    # Only KEDA's kinds skip the schema (a kind it does not know fails above), and they are there.
    keda = {doc["kind"] for doc in rendered if doc["apiVersion"] == "keda.sh/v1alpha1"}
    assert keda == KEDA_KINDS, f"KEDA resources rendered: {keda}, expected {KEDA_KINDS}"


def test_strict_validation_catches_a_misspelt_field(objects: Objects) -> None:
    # The validator must be able to fail, or the test above passes vacuously.
    broken = yaml.safe_load(yaml.safe_dump(deployment(objects, "router")))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/", "port": 1}}
    assert strict_validate(broken), "a misspelt field (readinesProbe) passed strict validation"
    broken = yaml.safe_load(yaml.safe_dump(deployment(objects, "router")))
    broken["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "sixty"
    assert strict_validate(broken), "a string for terminationGracePeriodSeconds passed validation"


# --- autoscaling --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_one_autoscaler_owns_each_deployment(objects: Objects, services: dict[str, Built], name: str) -> None:
    hpas = targets(objects, "HorizontalPodAutoscaler", name)
    scaled = targets(objects, "ScaledObject", name)
    # KEDA makes its own HPA for a ScaledObject: a second autoscaler on one Deployment fights it.
    owners, expected = [obj["kind"] for obj in hpas + scaled], SERVICES[name].autoscaler
    assert owners == [expected], f"{name}: autoscaled by {owners}, expected exactly one {expected}"
    assert "replicas" not in deployment(objects, name)["spec"], (
        f"{name}: the Deployment sets replicas, which every apply would reset under its autoscaler"
    )
    spec = (hpas + scaled)[0]["spec"]
    bounds = ("minReplicas", "maxReplicas") if hpas else ("minReplicaCount", "maxReplicaCount")
    low, high = spec[bounds[0]], spec[bounds[1]]
    assert 2 <= low <= high, f"{name}: replicas {low}..{high}; at least 2, so a PDB can let one go"
    assert services[name].subscriptions, f"{name}: consumes nothing, yet the decision counts it as a consumer"


@pytest.mark.parametrize("name", sorted(n for n, s in SERVICES.items() if s.autoscaler == "HorizontalPodAutoscaler"))
def test_hpa_scales_http_services_on_cpu(objects: Objects, name: str) -> None:
    (hpa,) = targets(objects, "HorizontalPodAutoscaler", name)
    assert hpa["apiVersion"] == "autoscaling/v2", f"{name}: HPA is {hpa['apiVersion']}"
    assert hpa["spec"]["scaleTargetRef"].get("apiVersion") == "apps/v1", f"{name}: HPA target is not apps/v1"
    metrics = [(m["type"], m.get("resource", {}).get("name")) for m in hpa["spec"]["metrics"]]
    assert metrics == [("Resource", "cpu")], f"{name}: HPA metrics {metrics}, expected CPU"
    requests = container(objects, name).get("resources", {}).get("requests", {})
    assert "cpu" in requests, f"{name}: no CPU request, so CPU utilization has no denominator"


@pytest.mark.parametrize("name", sorted(n for n, s in SERVICES.items() if s.autoscaler == "ScaledObject"))
def test_scaled_object_follows_every_consumer_group(objects: Objects, services: dict[str, Built], name: str) -> None:
    (scaled,) = targets(objects, "ScaledObject", name)
    spec, built = scaled["spec"], services[name]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1", f"{name}: ScaledObject is {scaled['apiVersion']}"
    assert spec["scaleTargetRef"].get("apiVersion", "apps/v1") == "apps/v1", f"{name}: target is not apps/v1"
    triggers = spec.get("triggers", [])
    assert {t["type"] for t in triggers} == {"kafka"}, f"{name}: trigger types {[t['type'] for t in triggers]}"

    metadata = [t["metadata"] for t in triggers]
    pairs = [(m.get("topic"), m.get("consumerGroup")) for m in metadata]
    assert len(set(pairs)) == len(pairs), f"{name}: duplicate triggers {pairs}"
    assert set(pairs) == built.subscriptions, (
        f"{name}: triggers follow {sorted(pairs)}, but the service subscribes {sorted(built.subscriptions)}"
    )
    for topic, group in pairs:
        assert group == f"{built.consumer_group}.{topic}", f"{name}: group {group} is not <consumer_group>.<topic>"

    bootstrap = config_of(objects, name)[f"{prefix_of(name)}KAFKA__BOOTSTRAP_SERVERS"]
    reset = consumer_options("g")["auto_offset_reset"]
    for m in metadata:
        where = f"{name} trigger {m.get('topic')}"
        assert m.get("bootstrapServers") == bootstrap, f"{where}: bootstrapServers is not {name}-config's {bootstrap}"
        assert m.get("allowIdleConsumers") == "false", f'{where}: allowIdleConsumers must be "false"'
        assert m.get("offsetResetPolicy") == reset, f"{where}: offsetResetPolicy must match the consumers' {reset!r}"
        threshold = str(m.get("lagThreshold", ""))
        assert threshold.isdigit(), f"{where}: lagThreshold {threshold!r} is not a whole number (in quotes)"
        assert int(threshold) > 0, f"{where}: lagThreshold must be positive"

    low, high = spec["minReplicaCount"], spec["maxReplicaCount"]
    # A group uses one replica per partition at most; a replica idle in one group may still work
    # for another, so the bound is the most partitions of any topic the service consumes.
    most = max(PARTITIONS[topic] for topic, _ in pairs)
    assert high <= most, f"{name}: maxReplicaCount {high} exceeds the {most} partitions of its topics"
    fallback = spec.get("fallback")
    if fallback:
        replicas = fallback["replicas"]
        assert low <= replicas <= high, f"{name}: fallback replicas {replicas} outside {low}..{high}"

    for trigger in triggers:
        ref = trigger.get("authenticationRef", {})
        assert ref.get("kind", "TriggerAuthentication") == "TriggerAuthentication", f"{name}: auth ref {ref}"
        assert ("TriggerAuthentication", ref.get("name")) in objects, (
            f"{name}: trigger {trigger['metadata'].get('topic')} needs TriggerAuthentication {ref.get('name')!r}"
        )


def test_trigger_authentication_reads_a_secret_kept_out_of_the_repo(objects: Objects) -> None:
    auths = of_kind(objects, "TriggerAuthentication")
    assert auths, "no TriggerAuthentication rendered"
    for auth in auths:
        refs = auth["spec"].get("secretTargetRef", [])
        params = {ref["parameter"] for ref in refs}
        assert params <= KEDA_KAFKA_AUTH, f"{auth['metadata']['name']}: unknown parameters {params - KEDA_KAFKA_AUTH}"
        # KEDA reads a missing key as "", which its kafka scaler refuses for tls (and sasl must say
        # "none" rather than be guessed): the README has the Secret created with both.
        assert {"sasl", "tls"} <= params, f"{auth['metadata']['name']}: sasl and tls must come from the Secret"
        for ref in refs:
            assert ("Secret", ref["name"]) not in objects, f"Secret {ref['name']} is committed; create it out of band"
    readme = (K8S_DIR / "README.md").read_text()
    for name in {ref["name"] for auth in auths for ref in auth["spec"]["secretTargetRef"]}:
        assert name in readme, f"README.md does not say how to create the Secret {name}"


# --- pods: probes, stopping, disruption, spread ------------------------------------------


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_probes_ask_the_service_on_its_port(objects: Objects, services: dict[str, Built], name: str) -> None:
    spec = container(objects, name)
    ports = {p.get("name") for p in spec.get("ports", [])} | {p["containerPort"] for p in spec.get("ports", [])}
    wanted = {
        "startupProbe": {"/health/live", "/health/ready"},
        "readinessProbe": {"/health/ready"},
        "livenessProbe": {"/health/live"},
    }
    for probe, paths in wanted.items():
        get = spec.get(probe, {}).get("httpGet")
        assert get, f"{name}: no {probe} with httpGet"
        assert get.get("path") in paths, f"{name}: {probe} asks {get.get('path')}, expected one of {sorted(paths)}"
        assert get.get("path") in services[name].routes, f"{name}: the app serves no {get.get('path')}"
        assert get.get("port") in ports, f"{name}: {probe} port {get.get('port')!r} is not a container port {ports}"
    readiness_timeout = spec["readinessProbe"].get("timeoutSeconds", 1)
    assert readiness_timeout > 2, f"{name}: readiness times out after {readiness_timeout} s, before the route's own 2 s"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_grace_period_outlasts_pre_stop_and_drain(objects: Objects, name: str) -> None:
    pod = deployment(objects, name)["spec"]["template"]["spec"]
    prefix = prefix_of(name)
    pre_stop = pre_stop_seconds(container(objects, name))
    assert pre_stop > 0, f"{name}: no preStop delay; the endpoint may still get traffic after SIGTERM"
    needed = pre_stop + drain_seconds(config_of(objects, name), prefix)
    grace = float(pod.get("terminationGracePeriodSeconds", 30))
    assert grace > needed, f"{name}: terminationGracePeriodSeconds {grace} <= preStop + drain = {needed}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_one_disruption_budget_per_service(objects: Objects, name: str) -> None:
    labels = pod_labels(objects, name)
    budgets = [pdb for pdb in of_kind(objects, "PodDisruptionBudget") if selects(pdb["spec"]["selector"], labels)]
    assert len(budgets) == 1, f"{name}: {len(budgets)} PodDisruptionBudgets select its pods"
    (pdb,) = budgets
    limits = {key: pdb["spec"][key] for key in ("minAvailable", "maxUnavailable") if key in pdb["spec"]}
    assert limits in ({"minAvailable": 1}, {"maxUnavailable": 1}), f"{name}: PDB limits {limits}"
    others = [n for n in SERVICES if n != name and selects(pdb["spec"]["selector"], pod_labels(objects, n))]
    assert not others, f"{name}: its PDB also selects {others}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_replicas_spread_over_hosts_and_zones(objects: Objects, name: str) -> None:
    constraints = deployment(objects, name)["spec"]["template"]["spec"].get("topologySpreadConstraints", [])
    keys = {c["topologyKey"] for c in constraints}
    assert {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= keys, f"{name}: spread over {keys}"
    for constraint in constraints:
        assert selects(constraint["labelSelector"], pod_labels(objects, name)), (
            f"{name}: spread over {constraint['topologyKey']} selects other pods than its own"
        )


def test_operations_guide_lists_every_consumer_group_and_the_partner_acl_names_the_real_one(
    services: dict[str, Built],
) -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    acls = guide[guide.index("### Consumer groups and ACLs") : guide.index("## MongoDB")]
    for name, built in services.items():
        for topic, group in built.subscriptions:
            assert f"`{group}`" in acls, f"docs/operations.md: no ACL for {name}'s group {group} ({topic})"
    partner = (ROOT / "docs" / "partner-contract" / "README.md").read_text()
    (intake_group,) = {g for t, g in services["intake"].subscriptions if t == "leads.inbound.v1"}
    groups = re.findall(r"--group (\S+)", partner)
    assert groups == [intake_group], f"the partner contract's ACL example names {groups}"


# --- network policies (decision 0080) ----------------------------------------------------------

# The metrics scraper as the policies name it, and docs/operations.md with them: Prometheus's pods (the
# Prometheus operator's label) in namespace `monitoring`.
SCRAPER_NAMESPACE = "monitoring"
SCRAPER_LABELS = {NAME_LABEL: "prometheus"}
NAMESPACE_NAME = "kubernetes.io/metadata.name"  # the label Kubernetes gives every namespace: its name


@dataclass(frozen=True)
class Peer:
    """Where a connection comes from: a pod (its namespace's labels, its own), or outside the cluster (None)."""

    namespace: dict[str, str] | None
    pod: dict[str, str] | None


def peers(objects: Objects) -> dict[str, Peer]:
    (namespace,) = of_kind(objects, "Namespace")
    ours = {**namespace["metadata"].get("labels", {}), NAMESPACE_NAME: namespace["metadata"]["name"]}
    elsewhere = {NAMESPACE_NAME: "default"}
    scrapers = {NAMESPACE_NAME: SCRAPER_NAMESPACE}
    return {name: Peer(ours, pod_labels(objects, name)) for name in SERVICES} | {
        "scraper": Peer(scrapers, SCRAPER_LABELS),
        "another pod of the scraper's namespace": Peer(scrapers, {NAME_LABEL: "grafana"}),
        "a pod labelled as the scraper elsewhere": Peer(elsewhere, SCRAPER_LABELS),
        "a pod labelled as crm-api elsewhere": Peer(elsewhere, {NAME_LABEL: "crm-api"}),
        "another pod of leadflow's namespace": Peer(ours, {NAME_LABEL: "debug"}),
        "a pod of another namespace": Peer(elsewhere, {"app": "curl"}),
        "outside the cluster": Peer(None, None),
    }


EVERYONE = frozenset(
    {*SERVICES, "scraper", "another pod of the scraper's namespace", "a pod labelled as the scraper elsewhere",
     "a pod labelled as crm-api elsewhere", "another pod of leadflow's namespace", "a pod of another namespace",
     "outside the cluster"}
)  # fmt: skip
# Who reaches each service's HTTP port (docs/operations.md, "Network policies").
ADMITTED = {
    "intake": EVERYONE,  # the public ingest
    "crm-api": EVERYONE,  # it serves people
    "router": frozenset({"crm-api", "scraper"}),  # its internal API is unauthenticated
    "notifier": frozenset({"scraper"}),  # it serves /metrics and the probes only
}


def labels_match(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels only, as ours are; {} selects everything) selects these labels."""
    assert set(selector) <= {"matchLabels"}, f"only matchLabels selectors are checked here: {selector}"
    return all(labels.get(key) == value for key, value in (selector.get("matchLabels") or {}).items())


def peer_matches(sources: list[dict[str, Any]] | None, policy_namespace: str, peer: Peer) -> bool:
    """Whether an ingress rule's `from` lets `peer` in (no `from`: everyone, outside the cluster included)."""
    if not sources:
        return True
    for source in sources:
        assert "ipBlock" not in source, f"ipBlock is not checked here: {source}"
        if peer.namespace is None or peer.pod is None:
            continue  # outside the cluster: only a rule without `from` (or an ipBlock) lets it in
        if "namespaceSelector" in source:
            namespace_ok = labels_match(source["namespaceSelector"], peer.namespace)
        else:
            namespace_ok = peer.namespace.get(NAMESPACE_NAME) == policy_namespace
        if namespace_ok and labels_match(source.get("podSelector", {}), peer.pod):
            return True
    return False


def port_matches(ports: list[dict[str, Any]] | None, port: int, named: dict[str, int]) -> bool:
    """Whether an ingress rule's `ports` include the target pod's `port` (a name is the container port's)."""
    if not ports:
        return True
    for entry in ports:
        assert entry.get("protocol", "TCP") == "TCP", f"only TCP is checked here: {entry}"
        assert "endPort" not in entry, f"port ranges are not checked here: {entry}"
        wanted = entry.get("port")
        if wanted is None or (named.get(wanted) if isinstance(wanted, str) else wanted) == port:
            return True
    return False


def reaches(objects: Objects, pod: dict[str, str], named: dict[str, int], peer: Peer, port: int) -> bool:
    """Whether `peer` may open a connection to `port` of a pod with these labels in leadflow's namespace."""
    policies = [
        policy
        for policy in of_kind(objects, "NetworkPolicy")
        if "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])
        and labels_match(policy["spec"]["podSelector"], pod)
    ]
    if not policies:
        return True  # a pod no policy selects is not isolated
    return any(
        port_matches(rule.get("ports"), port, named)
        and peer_matches(rule.get("from"), policy["metadata"]["namespace"], peer)
        for policy in policies
        for rule in policy["spec"].get("ingress", [])
    )


def http_port(objects: Objects, name: str) -> tuple[int, dict[str, int]]:
    named = {p["name"]: p["containerPort"] for p in container(objects, name).get("ports", []) if "name" in p}
    return named["http"], named


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_service_s_http_port_admits_only_who_needs_it(objects: Objects, name: str) -> None:
    port, named = http_port(objects, name)
    admitted = {
        who for who, peer in peers(objects).items() if reaches(objects, pod_labels(objects, name), named, peer, port)
    }
    assert admitted == ADMITTED[name], (
        f"{name}: port {port} admits {sorted(admitted)}, expected {sorted(ADMITTED[name])}"
    )
    other = {
        who
        for who, peer in peers(objects).items()
        if reaches(objects, pod_labels(objects, name), named, peer, port + 1)
    }
    assert not other, f"{name}: port {port + 1}, which it does not serve, admits {sorted(other)}"


def test_a_pod_no_service_policy_opens_is_closed_to_everyone(objects: Objects) -> None:
    # The namespace's default deny: a pod added later (a debug pod, a new service) is reachable by nobody
    # until a policy of its own opens it.
    reached = {who for who, peer in peers(objects).items() if reaches(objects, {NAME_LABEL: "new"}, {}, peer, 8080)}
    assert not reached, f"a new pod of the namespace is reachable by {sorted(reached)}"


def test_crm_api_reaches_the_router_at_the_address_it_is_configured_with(objects: Objects) -> None:
    url = urlsplit(config_of(objects, "crm-api")["CRM_API_ROUTER_URL"])
    service = objects.get(("Service", str(url.hostname)))
    assert service, f"CRM_API_ROUTER_URL names {url.hostname}, which is no Service"
    (entry,) = [p for p in service["spec"]["ports"] if p["port"] == url.port]
    assert labels_match({"matchLabels": service["spec"]["selector"]}, pod_labels(objects, "router"))
    port, named = http_port(objects, "router")
    target = entry["targetPort"]
    assert (named.get(target) if isinstance(target, str) else target) == port, f"{url.hostname}:{url.port} -> {target}"
    assert reaches(objects, pod_labels(objects, "router"), named, peers(objects)["crm-api"], port)


# The router's service token (decision 0082): each service reads it from its Secret, never from the manifests.
SERVICE_TOKEN_SETTINGS = {"router": ("ROUTER_API_TOKEN", "ROUTER_API_TOKEN_NEXT"), "crm-api": ("CRM_API_ROUTER_TOKEN",)}


def test_the_router_s_service_token_comes_from_the_secrets_the_readme_has_created(objects: Objects) -> None:
    readme = (K8S_DIR / "README.md").read_text()
    for name, variables in SERVICE_TOKEN_SETTINGS.items():
        settings = SERVICES[name].settings
        for variable in variables:
            field = variable.removeprefix(prefix_of(name)).lower()
            assert field in settings.model_fields, f"{variable} is no setting of {settings.__name__}"
            assert variable not in config_of(objects, name), f"{name}-config holds {variable}: it is a secret"
            assert variable not in {e["name"] for e in container(objects, name).get("env", [])}, variable
        refs = [ref["secretRef"]["name"] for ref in container(objects, name).get("envFrom", []) if "secretRef" in ref]
        assert refs == [f"{name}-secrets"], f"{name}: reads the Secrets {refs}"
        assert ("Secret", f"{name}-secrets") not in objects, f"Secret {name}-secrets is committed"
        assert re.search(rf"{name}-secrets[^`]*{variables[0]}", readme, re.DOTALL), f"README: {variables[0]}"


def test_the_policy_check_can_fail(objects: Objects) -> None:
    # Without the router's policy, the namespace's default deny would shut crm-api out too; without the default
    # deny as well, anyone would reach the router: the check above sees both.
    port, named = http_port(objects, "router")
    router, everyone = pod_labels(objects, "router"), peers(objects)
    without = {key: obj for key, obj in objects.items() if key != ("NetworkPolicy", "router")}
    assert not reaches(without, router, named, everyone["crm-api"], port)
    bare = {key: obj for key, obj in without.items() if key != ("NetworkPolicy", "default-deny-ingress")}
    assert reaches(bare, router, named, everyone["a pod of another namespace"], port)
    assert reaches(bare, router, named, everyone["outside the cluster"], port)


def test_operations_guide_names_who_reaches_each_service_and_the_scraper_the_policies_name(objects: Objects) -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    section = guide[guide.index("### Network policies") :]
    section = section[: section.index("\n## ")]
    for name in SERVICES:
        assert f"| {name} " in section, f"docs/operations.md, Network policies: no row for {name}"
    assert f"`{SCRAPER_NAMESPACE}`" in section, "docs/operations.md does not name the scraper's namespace"
    assert "`app.kubernetes.io/name: prometheus`" in section, "docs/operations.md does not name the scraper's label"
    scraper_sources = [
        source
        for policy in of_kind(objects, "NetworkPolicy")
        for rule in policy["spec"].get("ingress", [])
        for source in rule.get("from", [])
        if "namespaceSelector" in source
    ]
    assert scraper_sources, "no policy names the scraper"
    for source in scraper_sources:
        assert source == {
            "namespaceSelector": {"matchLabels": {NAMESPACE_NAME: SCRAPER_NAMESPACE}},
            "podSelector": {"matchLabels": SCRAPER_LABELS},
        }, f"a policy names another scraper than docs/operations.md: {source}"
