from __future__ import annotations

import functools
import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nrm.cli import build_parser
from nrm.settings import COMPONENTS, SERVICES, Component, InsecureConfiguration
from tests.deploy import REPO, check_production, load_yaml, run_tool, unknown_nrm_names

K8S = REPO / "deploy" / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"
SECRET_TEMPLATE = K8S / "secret.template.yaml"
NAMESPACE = "open-nrm"
PLACEHOLDER = "CHANGE_ME"

# What an operator's Secret could hold: real-looking, never guest, never a placeholder.
OPERATOR_SECRETS = {
    "NRM_BROKER_URL": "amqp://nrm:broker-password@rabbitmq.example:5672/nrm",
    "NRM_REDIS_URL": "redis://:redis-password@redis.example:6379/0",
    **{
        f"NRM_{c.upper()}_DATABASE_URL": f"postgresql+asyncpg://{c}:pw@db.example:5432/{c}"
        for c in COMPONENTS
    },
    "NRM_INTAKE_MASTER_KEYS": "k2026:" + "A" * 43 + "=",
    "NRM_INTAKE_INDEX_KEY": "B" * 43 + "=",
    "NRM_FUND_PAYEE_KEY": "C" * 43 + "=",
    "NRM_NOTIFY_SECRET_KEY": "D" * 43 + "=",
}


def manifest_files() -> list[Path]:
    return sorted(path for path in K8S.glob("*.yaml") if path != KUSTOMIZATION)


@functools.cache
def documents() -> list[dict[str, Any]]:
    return [
        document
        for path in manifest_files()
        for document in yaml.safe_load_all(path.read_text())
        if document is not None
    ]


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in documents() if doc["kind"] == kind}


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("Deployment", "Job"):
        for name, workload in objects(kind).items():
            yield f"{kind}/{name}", workload["spec"]["template"]["spec"]


def only_container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def container_env(container: dict[str, Any], secrets: dict[str, str]) -> dict[str, str]:
    """The environment the container gets, with `secrets` standing in for the Secret."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env |= objects("ConfigMap")[source["configMapRef"]["name"]]["data"]
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            env[variable["name"]] = secrets[variable["valueFrom"]["secretKeyRef"]["key"]]
    return env


def test_every_manifest_is_a_namespaced_kubernetes_object() -> None:
    for document in documents():
        assert {"apiVersion", "kind", "metadata"} <= document.keys(), document
        assert document["metadata"]["name"]
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == NAMESPACE, document["metadata"]


def test_manifests_match_the_kubernetes_schemas() -> None:
    result = run_tool("kubernetes-validate", "--strict", "--quiet", *manifest_files())
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_catches_a_misspelt_field(tmp_path: Path) -> None:
    broken = tmp_path / "intake.yaml"
    broken.write_text((K8S / "intake.yaml").read_text().replace("readinessProbe", "readynessProbe"))

    result = run_tool("kubernetes-validate", "--strict", "--quiet", broken)

    assert result.returncode != 0
    assert "readynessProbe" in result.stdout + result.stderr


def test_kustomization_applies_every_manifest_but_the_secret_template() -> None:
    resources = set(load_yaml(KUSTOMIZATION)["resources"])
    assert resources == {path.name for path in manifest_files()} - {SECRET_TEMPLATE.name}


def test_namespace_refuses_privileged_pods() -> None:
    labels = objects("Namespace")[NAMESPACE]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_component_has_a_deployment_a_service_and_a_migration_job(
    component: Component,
) -> None:
    deployment = objects("Deployment")[component]
    serve = build_parser().parse_args(only_container(deployment)["args"])
    assert (serve.command, serve.component, serve.port) == ("serve", component, 8000)

    migrate = build_parser().parse_args(
        only_container(objects("Job")[f"{component}-migrate"])["args"]
    )
    assert (migrate.command, migrate.component) == ("migrate", component)

    service = objects("Service")[component]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    port_names = {port["name"] for port in only_container(deployment)["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= port_names


@pytest.mark.parametrize("component", COMPONENTS)
def test_deployments_probe_liveness_and_readiness(component: Component) -> None:
    container = only_container(objects("Deployment")[component])
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}

    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        check = container[probe]["httpGet"]
        assert check["path"] == path, probe
        assert ports.get(check["port"], check["port"]) == 8000, probe


def test_every_pod_runs_locked_down() -> None:
    for name, pod in pod_specs():
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        empty_dirs = {volume["name"] for volume in pod["volumes"] if "emptyDir" in volume}
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
            assert mounts.get("/tmp") in empty_dirs, f"{name}: /tmp must be a writable emptyDir"
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= container["resources"][bound].keys(), name


def test_every_pod_runs_the_image_compose_builds() -> None:
    image = load_yaml(REPO / "docker-compose.yml")["x-nrm"]["image"]
    for name, pod in pod_specs():
        assert [container["image"] for container in pod["containers"]] == [image], name
    (override,) = load_yaml(KUSTOMIZATION)["images"]
    assert override["name"] == image.partition(":")[0]


def test_every_nrm_variable_is_a_setting() -> None:
    for path in manifest_files():
        assert unknown_nrm_names(path.read_text()) == set(), path.name


def test_variable_check_catches_a_misspelt_name() -> None:
    text = (K8S / "gateway.yaml").read_text().replace("NRM_REDIS_URL", "NRM_REDIS")
    assert unknown_nrm_names(text) == {"NRM_REDIS"}


def test_secret_template_holds_placeholders_only() -> None:
    assert SECRET_TEMPLATE.read_text().startswith("# TEMPLATE ONLY")
    secrets = objects("Secret")
    assert secrets
    for name, secret in secrets.items():
        assert "data" not in secret, f"{name}: base64 data hides what is committed"
        assert set(secret["stringData"].values()) == {PLACEHOLDER}, name


def test_configmap_holds_no_credentials() -> None:
    for name, config in objects("ConfigMap").items():
        for key, value in config["data"].items():
            assert "@" not in value, f"{name}.{key} looks like a URL with credentials"
            assert key not in OPERATOR_SECRETS, f"{name}.{key} belongs in the Secret"


def test_every_secret_reference_names_a_templated_key_of_the_same_name() -> None:
    templated = {
        (name, key) for name, secret in objects("Secret").items() for key in secret["stringData"]
    }
    for name, pod in pod_specs():
        for container in pod["containers"]:
            for variable in container.get("env", []):
                if "valueFrom" in variable:
                    reference = variable["valueFrom"]["secretKeyRef"]
                    assert (reference["name"], reference["key"]) in templated, name
                    # Keys are named after the variable they fill, so a mix-up shows.
                    assert reference["key"] == variable["name"], name
    assert {key for _, key in templated} >= OPERATOR_SECRETS.keys()


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
@pytest.mark.parametrize("component", COMPONENTS)
def test_each_component_reads_only_its_own_database(kind: str, component: Component) -> None:
    name = component if kind == "Deployment" else f"{component}-migrate"
    env = container_env(only_container(objects(kind)[name]), OPERATOR_SECRETS)

    assert {key for key in env if key.endswith("_DATABASE_URL")} == {
        f"NRM_{component.upper()}_DATABASE_URL"
    }


@pytest.mark.parametrize("component", COMPONENTS)
def test_components_pass_the_production_checks(
    component: Component, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = container_env(only_container(objects("Deployment")[component]), OPERATOR_SECRETS)
    assert env["NRM_ENV"] == "prod"
    check_production(env, component, monkeypatch)


def test_unfilled_template_fails_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    placeholders = dict.fromkeys(OPERATOR_SECRETS, PLACEHOLDER)
    env = container_env(only_container(objects("Deployment")["intake"]), placeholders)

    with pytest.raises(InsecureConfiguration, match="NRM_BROKER_URL"):
        check_production(env, "intake", monkeypatch)


def test_gateway_reads_its_signing_key_from_the_secret() -> None:
    gateway = objects("Deployment")["gateway"]
    container = only_container(gateway)
    key_file = container_env(container, OPERATOR_SECRETS)["NRM_SIGNING_KEY_FILE"]
    directory, filename = posixpath.split(key_file)
    assert "NRM_JWKS_URL" not in container_env(container, OPERATOR_SECRETS), (
        "the gateway trusts its own keys, not itself over HTTP"
    )

    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    assert mount["readOnly"] is True
    volumes = {volume["name"]: volume for volume in gateway["spec"]["template"]["spec"]["volumes"]}
    secret_name = volumes[mount["name"]]["secret"]["secretName"]
    assert filename in objects("Secret")[secret_name]["stringData"]


def test_gateway_is_the_one_way_in_and_survives_disruptions() -> None:
    gateway = objects("Deployment")["gateway"]
    pod_labels = gateway["spec"]["template"]["metadata"]["labels"]

    (budget,) = objects("PodDisruptionBudget").values()
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["spec"]["minAvailable"] < gateway["spec"]["replicas"]

    (ingress,) = objects("Ingress").values()
    backends = [
        path["backend"]["service"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    service_ports = {port["name"] for port in objects("Service")["gateway"]["spec"]["ports"]}
    assert backends
    for backend in backends:
        assert backend["name"] == "gateway"
        assert backend["port"]["name"] in service_ports

    (policy,) = objects("NetworkPolicy").values()
    (selected,) = policy["spec"]["podSelector"]["matchExpressions"]
    assert set(selected["values"]) == set(SERVICES), "every service but not the gateway"
