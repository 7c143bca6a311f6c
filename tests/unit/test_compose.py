"""docker-compose.yml, checked without a Docker engine: services, ports, environment and settings agree."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

from stream_learner.settings import load_settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
INTERPOLATION = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def _resolve(value: Any) -> str:
    """Compose's ``${VAR:-default}`` with nothing set: the default."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", str(value))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def service_env(compose: dict[str, Any]) -> dict[str, str]:
    return {k: _resolve(v) for k, v in compose["services"]["stream-learner"]["environment"].items()}


def _published(service: dict[str, Any]) -> dict[int, int]:
    """container port -> host port."""
    out = {}
    for mapping in service.get("ports", []):
        host, _, container = str(mapping).rpartition(":")
        out[int(container)] = int(host)
    return out


def test_the_stack_has_its_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", "redis", "stream-learner", "prometheus", "grafana"}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["stream-learner"]["build"] == "."
    assert (ROOT / "Dockerfile").exists()
    depends = services["stream-learner"]["depends_on"]
    assert depends["kafka"]["condition"] == depends["redis"]["condition"] == "service_healthy"


def test_kafka_runs_kraft_single_node_with_listeners_that_match(compose: dict[str, Any], service_env: dict[str, str]) -> None:
    env = {k: str(v) for k, v in compose["services"]["kafka"]["environment"].items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    advertised = dict(item.split("://", 1) for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    listeners = {name: addr.rsplit(":", 1)[1] for name, addr in (item.split("://", 1) for item in env["KAFKA_LISTENERS"].split(","))}
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) == set(protocols) and env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    # the service reaches Kafka on the internal listener it advertises
    assert service_env["STREAM_LEARNER_KAFKA__BOOTSTRAP_SERVERS"] == advertised["PLAINTEXT"]
    # the host reaches it on the published external listener
    host, port = advertised["EXTERNAL"].split(":")
    assert host == "localhost" and _published(compose["services"]["kafka"])[int(listeners["EXTERNAL"])] == int(port)
    # offsets and transactions topics can exist on one broker
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"


def test_the_service_settings_validate_and_point_at_the_stack(compose: dict[str, Any], service_env: dict[str, str]) -> None:
    assert all(k.startswith("STREAM_LEARNER_") for k in service_env)
    settings = load_settings(environ=service_env)  # raises ConfigError on any unknown or invalid setting
    url = settings.redis.url.get_secret_value()
    assert url.startswith("redis://redis:6379/")
    redis = compose["services"]["redis"]
    password = redis["command"][redis["command"].index("--requirepass") + 1]
    assert settings.redis.password is not None and settings.redis.password.get_secret_value() == _resolve(password)
    assert settings.snapshot.signing_key is not None
    assert settings.kafka.labels_topic and settings.recovery.dir is not None
    volumes = compose["services"]["stream-learner"]["volumes"]
    assert any(str(settings.recovery.dir).startswith(v.split(":")[1]) for v in volumes)  # recovery state survives the container
    masked = settings.masked()
    assert masked["redis"]["password"] == masked["snapshot"]["signing_key"] == "**********"


def test_prometheus_scrapes_the_port_the_service_serves(compose: dict[str, Any]) -> None:
    service = compose["services"]["stream-learner"]
    command = service["command"]
    port = int(command[command.index("--metrics-port") + 1])
    assert command[:3] == ["run", "--source", "kafka"]
    assert port in _published(service)
    mounted = {v.split(":")[1]: v.split(":")[0] for v in compose["services"]["prometheus"]["volumes"]}
    scrape = yaml.safe_load((ROOT / mounted["/etc/prometheus/prometheus.yml"]).read_text())
    targets = [t for job in scrape["scrape_configs"] for group in job["static_configs"] for t in group["targets"]]
    assert f"stream-learner:{port}" in targets


def test_grafana_mounts_existing_provisioning(compose: dict[str, Any]) -> None:
    for volume in compose["services"]["grafana"]["volumes"]:
        source = volume.split(":")[0]
        assert (ROOT / source).is_dir(), source
    assert _published(compose["services"]["grafana"]) == {3000: 3000}


def test_the_dockerfile_runs_the_cli_the_compose_file_calls() -> None:
    text = (ROOT / "Dockerfile").read_text()
    entrypoint = re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M)
    assert entrypoint and yaml.safe_load(entrypoint.group(1)) == ["stream-learner"]
    for package in ("stream_learner", "strategies", "connectors"):
        assert f"COPY {package} " in text
    from stream_learner.app.cli import build_parser

    compose_command = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["stream-learner"]["command"]
    args = build_parser().parse_args(compose_command)  # the command the container runs parses
    assert args.source == "kafka" and shlex.join(compose_command)


def _named_mounts(compose: dict[str, Any], service: str) -> dict[str, str]:
    """container path -> named volume, for the service's mounts of the file's named volumes."""
    mounts = (str(v).split(":")[:2] for v in compose["services"][service].get("volumes", []))
    return {target: source for source, target in mounts if source in (compose.get("volumes") or {})}


def _inside(path: str, folders: dict[str, str]) -> bool:
    return any(path == folder or path.startswith(folder.rstrip("/") + "/") for folder in folders)


def test_kafka_redis_and_the_recovery_state_keep_their_data_in_named_volumes(compose: dict[str, Any], service_env: dict[str, str]) -> None:
    kafka = {k: str(v) for k, v in compose["services"]["kafka"]["environment"].items()}
    log_dirs = kafka["KAFKA_LOG_DIRS"].split(",")
    assert all(_inside(d, _named_mounts(compose, "kafka")) for d in log_dirs), log_dirs  # topics survive a new container
    assert kafka["CLUSTER_ID"]  # a fixed id: the restarted broker accepts the storage it formatted
    redis = compose["services"]["redis"]
    assert "--appendonly" in redis["command"] and _inside("/data", _named_mounts(compose, "redis"))  # the redis image's data folder
    assert _inside(service_env["STREAM_LEARNER_RECOVERY__DIR"], _named_mounts(compose, "stream-learner"))


def test_the_image_installs_cpu_torch_unless_built_with_torch_cuda() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG TORCH=cpu$", text, re.M)  # compose builds with the defaults
    assert re.search(r"cpu\) pip install --index-url https://download.pytorch.org/whl/cpu .*torch==.*torchvision==", text)
