from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from nrm.cli import build_parser
from nrm.settings import COMPONENTS, SERVICES, Component, InsecureConfiguration
from tests.deploy import REPO, check_production, load_yaml, run_tool, unknown_nrm_names

COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
INIT_SQL = REPO / "deploy" / "postgres" / "init-databases.sql"
DEPLOY_README = REPO / "deploy" / "README.md"

# Read by compose for interpolation only, never by the apps (docker-compose.yml, deploy/README.md).
COMPOSE_HOST_VARIABLES = frozenset({"NRM_POSTGRES_PASSWORD", "NRM_RABBITMQ_PASSWORD"})

_INTERPOLATION = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def interpolate(value: str) -> str:
    """What compose substitutes with none of the host variables set: the defaults."""
    return _INTERPOLATION.sub(lambda match: match.group(2) or "", value)


def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


def service(name: str) -> dict[str, Any]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return services[name]


def environment(definition: dict[str, Any]) -> dict[str, str]:
    raw = definition.get("environment", {})
    pairs = dict(item.split("=", 1) for item in raw) if isinstance(raw, list) else raw
    return {key: interpolate(str(value)) for key, value in pairs.items()}


def validate_compose(path: Path) -> tuple[bool, str]:
    result = run_tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", path)
    return result.returncode == 0, result.stdout + result.stderr


def readme_prod_override() -> str:
    match = re.search(r"```yaml\n(# compose\.prod\.yaml\n.*?)```", DEPLOY_README.read_text(), re.S)
    assert match, "deploy/README.md lost its compose.prod.yaml example"
    return match.group(1)


def test_compose_file_follows_the_compose_specification() -> None:
    valid, output = validate_compose(COMPOSE_FILE)
    assert valid, output
    assert "version" not in compose(), "the Compose Specification has no top-level version"


def test_schema_check_catches_a_misspelt_service_key(tmp_path: Path) -> None:
    broken = compose()
    broken["services"]["gateway"]["enviroment"] = broken["services"]["gateway"].pop("environment")
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))

    valid, output = validate_compose(path)

    assert not valid
    assert "enviroment" in output


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_component_runs_one_serve_command(component: Component) -> None:
    args = build_parser().parse_args(service(component)["command"])

    assert (args.command, args.component) == ("serve", component)
    # Inside its container a component must listen on every interface to be reachable.
    assert (args.host, args.port) == ("0.0.0.0", 8000)  # noqa: S104


def test_migrations_run_once_for_every_component_before_any_starts() -> None:
    args = build_parser().parse_args(service("migrate")["command"])
    assert (args.command, args.component) == ("migrate", "all")

    migrate_env = environment(service("migrate"))
    for component in COMPONENTS:
        key = f"NRM_{component.upper()}_DATABASE_URL"
        assert migrate_env[key] == environment(service(component))[key]
        assert service(component)["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }


def test_every_nrm_variable_in_compose_is_a_setting() -> None:
    assert unknown_nrm_names(COMPOSE_FILE.read_text(), COMPOSE_HOST_VARIABLES) == set()


def test_variable_check_catches_a_misspelt_name() -> None:
    misspelt = COMPOSE_FILE.read_text().replace("NRM_INTAKE_DATABASE_URL", "NRM_INTAKE_DB_URL")

    assert unknown_nrm_names(misspelt, COMPOSE_HOST_VARIABLES) == {"NRM_INTAKE_DB_URL"}


def test_host_only_variables_never_reach_a_container() -> None:
    for name, definition in compose()["services"].items():
        assert not COMPOSE_HOST_VARIABLES & environment(definition).keys(), name


def test_every_component_is_built_from_the_one_image() -> None:
    shared = compose()["x-nrm"]
    assert (REPO / shared["build"]["context"] / shared["build"]["dockerfile"]) == DOCKERFILE

    for name in (*COMPONENTS, "migrate"):
        assert service(name)["image"] == shared["image"], name
        assert service(name)["build"] == shared["build"], name


def created_databases() -> set[str]:
    return set(re.findall(r"^CREATE DATABASE (\w+);", INIT_SQL.read_text(), re.M | re.I))


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_component_reaches_only_its_own_database(component: Component) -> None:
    env = environment(service(component))
    own = f"NRM_{component.upper()}_DATABASE_URL"
    assert {key for key in env if key.endswith("_DATABASE_URL")} == {own}

    url = urlsplit(env[own])
    postgres = environment(service("postgres"))
    assert url.scheme == "postgresql+asyncpg"
    assert (url.hostname, url.port) == ("postgres", 5432)
    assert (url.username, url.password) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
    )
    assert url.path == f"/{component}"
    assert component in created_databases()


def test_postgres_runs_the_init_script() -> None:
    mounts = service("postgres")["volumes"]
    assert any(
        mount.startswith("./deploy/postgres/init-databases.sql:/docker-entrypoint-initdb.d/")
        for mount in mounts
    )


def test_components_wait_for_healthy_backends() -> None:
    for component in COMPONENTS:
        depends = service(component)["depends_on"]
        for backend in ("postgres", "rabbitmq"):
            assert depends[backend] == {"condition": "service_healthy"}, component
            assert "test" in service(backend)["healthcheck"], backend
    assert service("gateway")["depends_on"]["redis"] == {"condition": "service_healthy"}


def test_broker_url_matches_the_user_and_vhost_rabbitmq_creates() -> None:
    rabbit = environment(service("rabbitmq"))
    for component in COMPONENTS:
        url = urlsplit(environment(service(component))["NRM_BROKER_URL"])
        assert url.scheme == "amqp"
        assert url.hostname == "rabbitmq"
        assert url.username == rabbit["RABBITMQ_DEFAULT_USER"] != "guest"
        assert url.password == rabbit["RABBITMQ_DEFAULT_PASS"]
        assert url.path == f"/{rabbit['RABBITMQ_DEFAULT_VHOST']}"


def test_every_url_in_the_environment_names_a_compose_service() -> None:
    names = compose()["services"].keys()
    for name, definition in compose()["services"].items():
        for key, value in environment(definition).items():
            if "://" in value:
                assert urlsplit(value).hostname in names, (name, key, value)


def test_services_verify_tokens_with_the_gateway_and_are_found_by_it() -> None:
    gateway = environment(service("gateway"))
    for name in SERVICES:
        assert environment(service(name))["NRM_JWKS_URL"] == (
            "http://gateway:8000/.well-known/jwks.json"
        )
        assert gateway[f"NRM_{name.upper()}_URL"] == f"http://{name}:8000"
    assert "NRM_JWKS_URL" not in gateway, "the gateway trusts its own keys, not itself over HTTP"
    assert urlsplit(gateway["NRM_REDIS_URL"]).hostname == "redis"


def test_interpolation_defaults_agree_everywhere() -> None:
    defaults: dict[str, set[str]] = defaultdict(set)
    for name, default in re.findall(r"\$\{(\w+):-([^}]*)\}", COMPOSE_FILE.read_text()):
        defaults[name].add(default)
    assert {name: values for name, values in defaults.items() if len(values) > 1} == {}
    for name in COMPOSE_HOST_VARIABLES:
        (default,) = defaults[name]
        assert default.startswith("dev-only-"), f"{name}'s default must look like what it is"


def test_only_the_gateway_listens_beyond_localhost() -> None:
    for name, definition in compose()["services"].items():
        ports = [str(port) for port in definition.get("ports", [])]
        if name == "gateway":
            assert ports == ["8000:8000"]
        else:
            assert all(port.startswith("127.0.0.1:") for port in ports), (name, ports)


def prod_environment(component: Component, *overrides: dict[str, str]) -> dict[str, str]:
    env = environment(service(component)) | {"NRM_ENV": "prod"}
    for override in overrides:
        env |= override
    return env


@pytest.mark.parametrize("component", SERVICES)
def test_services_pass_the_production_checks_as_composed(
    component: Component, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_production(prod_environment(component), component, monkeypatch)


def test_gateway_refuses_production_without_the_signing_key_override(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(InsecureConfiguration, match="NRM_SIGNING_KEY_FILE"):
        check_production(prod_environment("gateway"), "gateway", monkeypatch)


def test_readme_production_override_is_valid_and_satisfies_the_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = readme_prod_override()
    path = tmp_path / "compose.prod.yaml"
    path.write_text(text)
    valid, output = validate_compose(path)
    assert valid, output
    assert unknown_nrm_names(text) == set()

    override = yaml.safe_load(text)
    gateway = override["services"]["gateway"]
    (secret,) = gateway["secrets"]
    assert secret in override["secrets"]
    assert gateway["environment"]["NRM_SIGNING_KEY_FILE"] == f"/run/secrets/{secret}"
    check_production(prod_environment("gateway", gateway["environment"]), "gateway", monkeypatch)


def test_rabbitmq_gets_the_event_topology_without_a_boot_import() -> None:
    definitions = json.loads((REPO / "deploy" / "rabbitmq" / "definitions.json").read_text())
    exchanges = {exchange["name"]: exchange for exchange in definitions["exchanges"]}
    assert exchanges["nrm.events"] | {"type": "topic", "durable": True} == exchanges["nrm.events"]
    assert exchanges["nrm.dead"] | {"type": "direct", "durable": True} == exchanges["nrm.dead"]
    vhost = environment(service("rabbitmq"))["RABBITMQ_DEFAULT_VHOST"]
    assert {exchange["vhost"] for exchange in exchanges.values()} == {vhost}
    assert "users" not in definitions, "passwords come from the environment, not from a file"

    # A boot-time import would stop RabbitMQ creating RABBITMQ_DEFAULT_USER.
    conf = (REPO / "deploy" / "rabbitmq" / "rabbitmq.conf").read_text()
    assert not re.search(r"^\s*[\w.]*load_definitions", conf, re.M)
    mounted = {mount.split(":")[1] for mount in service("rabbitmq")["volumes"]}
    (hook,) = service("rabbitmq")["post_start"]
    imported = re.findall(r"import_definitions (\S+)", " ".join(hook["command"]))
    assert imported
    assert set(imported) <= mounted


def test_traces_flow_from_the_apps_through_the_collector_to_jaeger() -> None:
    collector_file = REPO / "deploy" / "otel-collector.yaml"
    config = load_yaml(collector_file)
    assert any(
        mount.startswith("./deploy/otel-collector.yaml:/etc/otelcol-contrib/config.yaml")
        for mount in service("otel-collector")["volumes"]
    )

    endpoint = urlsplit(environment(service("gateway"))["NRM_OTLP_ENDPOINT"])
    assert endpoint.hostname == "otel-collector"
    http_receiver = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert http_receiver.rsplit(":", 1)[1] == str(endpoint.port)

    pipeline = config["service"]["pipelines"]["traces"]
    for section in ("receivers", "processors", "exporters"):
        assert set(pipeline[section]) <= config[section].keys(), section
    for exporter in pipeline["exporters"]:
        assert config["exporters"][exporter]["endpoint"].startswith("jaeger:")
    assert environment(service("jaeger"))["COLLECTOR_OTLP_ENABLED"] == "true"


def test_dockerfile_passes_hadolint() -> None:
    result = run_tool("hadolint", DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_careless_dockerfile(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nADD https://example.org/app.tar.gz /app\n")

    result = run_tool("hadolint", careless)

    assert result.returncode != 0
    assert "DL3007" in result.stdout  # "latest" tag


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    lines = [line for line in dockerfile.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            pairs.append((keyword.upper(), arguments.strip()))
    return pairs


def dockerfile_problems(dockerfile: str) -> list[str]:
    steps = instructions(dockerfile)
    final = steps[max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM") :]
    problems = []
    for keyword, arguments in steps:
        if keyword == "FROM" and not re.match(r"python:3\.11-slim[\w.-]*(\s|$)", arguments):
            problems.append(f"FROM {arguments}: want a pinned python:3.11-slim tag")
        if keyword == "ADD":
            problems.append("ADD: use COPY (ADD fetches URLs and unpacks archives)")
    users = [arguments for keyword, arguments in final if keyword == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the final stage must switch to a non-root USER")
    if ("ENTRYPOINT", '["nrm"]') not in final:
        problems.append('the final stage must have ENTRYPOINT ["nrm"]')
    if ("EXPOSE", "8000") not in final:
        problems.append("the final stage must EXPOSE 8000")
    if not any(k == "ENV" and "NRM_DATA_DIR=/var/lib/nrm" in a for k, a in final):
        problems.append("NRM_DATA_DIR must be /var/lib/nrm")
    copies = [arguments for keyword, arguments in steps if keyword == "COPY"]
    lock = next((i for i, a in enumerate(copies) if "requirements.lock" in a), None)
    source = next((i for i, a in enumerate(copies) if a.startswith("nrm ")), None)
    if lock is None or source is None or lock > source:
        problems.append("COPY requirements.lock before the source, so dependencies stay cached")
    if not any(k == "RUN" and "-c requirements.lock" in a for k, a in steps):
        problems.append("pip must install with the lock as constraints (-c requirements.lock)")
    return problems


def test_dockerfile_builds_a_cached_non_root_nrm_image() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


def test_dockerfile_check_catches_a_root_image_without_the_lock() -> None:
    text = DOCKERFILE.read_text()
    careless = text.replace("USER 10001:10001", "USER root").replace("-c requirements.lock", "")

    problems = dockerfile_problems(careless)

    assert len(problems) == 2, problems


def test_build_context_holds_only_what_the_image_copies() -> None:
    ignore = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", "an allow-list keeps keys and .env files out of the context"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}

    copied = set()
    for keyword, arguments in instructions(DOCKERFILE.read_text()):
        if keyword == "COPY" and not arguments.startswith("--from"):
            copied.update(arguments.split()[:-1])
    assert copied == allowed
    assert all((REPO / name).exists() for name in copied)
    assert {"**/*.pem", "**/*.key", "**/.env"} <= set(ignore)
