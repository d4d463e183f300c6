"""deploy/kubernetes keeps its contract, checked offline.

kustomize may not be installed, so the kustomization is rendered here the way it is written:
its `resources` (each file there, every manifest listed), with its namespace and labels. Each
document is validated, strictly (no unknown field), against the Kubernetes schemas that
kubernetes-validate ships, for the oldest Kubernetes the manifests are for and the newest it
knows. Then the contract: probes on paths the app serves, a drain that fits the grace period, a
locked-down container, a rollout and a disruption budget that keep ready pods, a network policy
that lets out only DNS, Redis and HTTPS, settings that are real settings and a usable production
configuration, and no secret value anywhere.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.sandbox.config import TOOLBOX_API_KEY, TOOLBOX_SECRET_KEY
from app.settings import Settings, load_settings
from tests.deploy.compose_file import ROOT, read_dockerfile
from tests.deploy.routes import bff_serves

KUBERNETES = ROOT / "deploy" / "kubernetes"
KUSTOMIZATION = KUBERNETES / "kustomization.yaml"
# 1.30: the oldest the manifests are for (the preStop `sleep` action is on by default from
# there); and the newest whose schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
SECRET_NAME = "flinks-bff"
# Settings that may hold a secret: the SecretStr ones, and REDIS_URL (it may carry a password).
SECRET_SETTINGS = {
    name.upper() for name, field in Settings.model_fields.items() if "SecretStr" in str(field)
} | {"REDIS_URL"}
PRIVATE_NETWORKS = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}
LINK_LOCAL = "169.254.0.0/16"  # cloud metadata endpoints live there


def _kustomization() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(KUSTOMIZATION.read_text())
    return document


def _rendered() -> list[dict[str, Any]]:
    """Every document of every resource, with the kustomization's namespace and labels."""
    kustomization = _kustomization()
    labels: dict[str, str] = {}
    for entry in kustomization.get("labels", []):
        labels.update(entry["pairs"])
    documents = []
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((KUBERNETES / name).read_text()):
            if document is None:
                continue
            metadata = document.setdefault("metadata", {})
            metadata["namespace"] = kustomization["namespace"]
            metadata["labels"] = {**metadata.get("labels", {}), **labels}
            documents.append(document)
    return documents


def _one(kind: str) -> dict[str, Any]:
    found = [document for document in _rendered() if document["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _pod() -> dict[str, Any]:
    pod: dict[str, Any] = _one("Deployment")["spec"]["template"]
    return pod


def _container() -> dict[str, Any]:
    containers = _pod()["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _selects_the_pods(selector: dict[str, str]) -> bool:
    labels: dict[str, str] = _pod()["metadata"]["labels"]
    return bool(selector) and selector.items() <= labels.items()


def _drain_seconds() -> int:
    """How long the app lets requests in flight finish after SIGTERM (app/cli.py)."""
    source = (ROOT / "app" / "cli.py").read_text()
    found = re.search(r"timeout_graceful_shutdown\W{1,4}(\d+)", source)
    assert found, "app/cli.py no longer sets timeout_graceful_shutdown: update this test"
    return int(found[1])


def test_the_kustomization_lists_every_manifest_and_only_files_that_exist() -> None:
    listed = _kustomization()["resources"]
    assert len(listed) == len(set(listed))
    assert all((KUBERNETES / name).is_file() for name in listed), listed
    manifests = {path.name for path in KUBERNETES.iterdir() if path.suffix in (".yaml", ".yml")}
    assert set(listed) == manifests - {KUSTOMIZATION.name}


def _documents_and_versions() -> Iterator[Any]:
    for document in _rendered():
        for version in KUBERNETES_VERSIONS:
            kind, name = document["kind"], document["metadata"]["name"]
            yield pytest.param(document, version, id=f"{kind}/{name}@{version}")


@pytest.mark.parametrize(("document", "version"), list(_documents_and_versions()))
def test_every_manifest_validates_against_the_kubernetes_schemas(
    document: dict[str, Any], version: str
) -> None:
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(part) for part in exc.path)
        pytest.fail(f"Kubernetes {version}: {where}: {exc.message}")
    except kubernetes_validate.SchemaNotFoundError as exc:
        pytest.fail(exc.message)  # an apiVersion/kind that Kubernetes does not have


def test_the_probes_name_paths_the_app_serves_on_the_port_it_listens_on() -> None:
    container = _container()
    probes = {name: container[name]["httpGet"] for name in ("readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == "/livez"
    startup = container.get("startupProbe", {}).get("httpGet")
    for probe in [*probes.values(), *([startup] if startup else [])]:
        assert bff_serves(probe["path"]), probe
        assert probe["port"] == "http"
    (port,) = (p for p in container["ports"] if p["name"] == "http")
    assert str(port["containerPort"]) == _one("ConfigMap")["data"]["BFF_PORT"]


def test_a_pod_leaves_the_endpoints_then_drains_within_its_grace_period() -> None:
    pause = _container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pause >= 5, "the endpoints and proxies need a moment to drop the pod"
    grace = _pod()["spec"]["terminationGracePeriodSeconds"]
    assert grace > pause + _drain_seconds(), (grace, pause, _drain_seconds())


def test_a_rollout_never_takes_the_last_ready_pod() -> None:
    strategy = _one("Deployment")["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}


def test_the_container_runs_unprivileged_on_a_read_only_root() -> None:
    pod, container = _pod()["spec"], _container()
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    uid, _, gid = read_dockerfile().user.partition(":")
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert pod["securityContext"]["runAsGroup"] == int(gid)
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security.get("privileged", False) is False
    for context in (pod["securityContext"], security):
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not any(pod.get(key) for key in ("hostNetwork", "hostPID", "hostIPC"))
    assert pod["automountServiceAccountToken"] is False
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108 - the pod's own scratch space


def test_the_container_has_requests_and_limits() -> None:
    resources = _container()["resources"]
    for bound in ("requests", "limits"):
        assert set(resources[bound]) == {"cpu", "memory"}, bound


def test_the_service_autoscaler_budget_and_policy_all_select_the_pods() -> None:
    service, deployment = _one("Service"), _one("Deployment")
    assert _selects_the_pods(service["spec"]["selector"])
    assert _selects_the_pods(deployment["spec"]["selector"]["matchLabels"])
    port_names = {port["name"] for port in _container()["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= port_names

    autoscaler = _one("HorizontalPodAutoscaler")
    target = autoscaler["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert autoscaler["spec"]["minReplicas"] >= 2  # a disruption never leaves none
    metrics = autoscaler["spec"]["metrics"]
    assert [(m["type"], m["resource"]["name"]) for m in metrics] == [("Resource", "cpu")]

    budget = _one("PodDisruptionBudget")["spec"]
    assert _selects_the_pods(budget["selector"]["matchLabels"])
    assert budget.get("maxUnavailable") == 1 or budget["minAvailable"] >= 1

    policy = _one("NetworkPolicy")["spec"]
    assert _selects_the_pods(policy["podSelector"]["matchLabels"])


def test_the_network_policy_lets_in_the_app_port_and_out_dns_redis_and_https_only() -> None:
    policy = _one("NetworkPolicy")["spec"]
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    ingress_ports = [port for rule in policy["ingress"] for port in rule["ports"]]
    assert ingress_ports == [{"port": "http", "protocol": "TCP"}]
    allowed = set()
    for rule in policy["egress"]:
        assert rule.get("ports"), f"an egress rule open to every port: {rule}"
        assert rule.get("to"), f"an egress rule open to every address: {rule}"
        allowed |= {(port["port"], port["protocol"]) for port in rule["ports"]}
    redis_ports = {(6379, "TCP"), (6380, "TCP"), (26379, "TCP")}
    assert allowed == {(53, "UDP"), (53, "TCP"), (443, "TCP")} | redis_ports
    (https,) = (rule for rule in policy["egress"] if (443, "TCP") in _ports(rule))
    (block,) = (peer["ipBlock"] for peer in https["to"])
    assert block["cidr"] == "0.0.0.0/0"
    assert PRIVATE_NETWORKS | {LINK_LOCAL} <= set(block["except"])
    (redis,) = (rule for rule in policy["egress"] if (6379, "TCP") in _ports(rule))
    assert {peer["ipBlock"]["cidr"] for peer in redis["to"]} == PRIVATE_NETWORKS


def _ports(rule: dict[str, Any]) -> set[tuple[int, str]]:
    return {(port["port"], port["protocol"]) for port in rule["ports"]}


def test_the_environment_is_settings_and_a_usable_production_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container, config = _container(), _one("ConfigMap")["data"]
    assert container["envFrom"] == [
        {"configMapRef": {"name": _one("ConfigMap")["metadata"]["name"]}}
    ]
    from_secret = {}
    for variable in container["env"]:
        reference = variable["valueFrom"]["secretKeyRef"]
        assert reference["name"] == SECRET_NAME
        from_secret[variable["name"]] = reference["key"]
    names = set(config) | set(from_secret)
    unknown = names - {name.upper() for name in Settings.model_fields}
    assert not unknown, f"not settings of the app: {sorted(unknown)}"
    assert all(name == key for name, key in from_secret.items())

    # The ConfigMap and the Secret's keys, as the container gets them: production accepts them.
    placeholders = {
        "REDIS_URL": "rediss://redis.example.com:6380/0",
        "BFF_ENCRYPTION_KEY": base64.urlsafe_b64encode(bytes(range(32))).decode(),
        "FLINKS_CUSTOMER_ID": "0b6e3f7c-0000-4000-8000-000000000001",
        "FLINKS_SECRET_KEY": "placeholder",
        "FLINKS_API_KEY": "placeholder",
        "FLINKS_WEBHOOK_SECRET": "placeholder",
        "BFF_WEBHOOK_SECRET": "whsec_" + base64.b64encode(bytes(range(32))).decode(),
    }
    assert set(placeholders) == set(from_secret)
    for name, value in {**config, **placeholders}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(_env_file=None)
    assert settings.is_production
    assert settings.bff_port == int(config["BFF_PORT"])


def test_no_secret_value_is_in_a_manifest() -> None:
    documents = _rendered()
    assert all(document["kind"] != "Secret" for document in documents)
    config = _one("ConfigMap")["data"]
    assert not SECRET_SETTINGS & set(config), "secrets belong in the Secret"
    for variable in _container()["env"]:
        if variable["name"] in SECRET_SETTINGS:
            assert "value" not in variable
            assert "secretKeyRef" in variable["valueFrom"]
    optional = {"FLINKS_API_KEY", "FLINKS_WEBHOOK_SECRET", "BFF_WEBHOOK_SECRET"}
    env = {v["name"]: v for v in _container()["env"]}
    assert set(env) >= SECRET_SETTINGS
    for name in SECRET_SETTINGS:  # the ones a deployment may go without are optional refs
        assert env[name]["valueFrom"]["secretKeyRef"].get("optional", False) == (name in optional)
    text = "\n".join(path.read_text() for path in KUBERNETES.iterdir())
    assert TOOLBOX_SECRET_KEY not in text
    assert TOOLBOX_API_KEY not in text
    assert not re.search(r"\b[A-Za-z0-9_-]{43}=?(?![\w-])", text), "a key-like value"
    assert not re.search(r"rediss?://[^\s@/]*@", text), "a Redis URL with credentials"


def test_the_manifests_say_which_kubernetes_they_need() -> None:
    minimum = KUBERNETES_VERSIONS[0].rsplit(".", 1)[0]
    assert f"Kubernetes {minimum} or newer" in KUSTOMIZATION.read_text()
    assert Path(ROOT / "README.md").read_text().count(f"Kubernetes {minimum}") >= 1
