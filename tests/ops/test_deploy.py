"""The deployment stack, checked without a Docker engine: the compose file against the Compose
specification's JSON schema and for what the stack must hold together; the Dockerfile with
hadolint and for a small, unprivileged, health-checked, pinned image."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from metrics_contract import PROMETHEUS, ROOT
from smsroute.config import load_settings
from tools import run, tool

DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_compose_file_matches_the_compose_specification_schema() -> None:
    run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", COMPOSE)


def test_kafka_is_three_kraft_brokers_replicating_every_record() -> None:
    brokers = {name: service for name, service in services().items() if name.startswith("kafka-")}
    assert sorted(brokers) == ["kafka-1", "kafka-2", "kafka-3"]
    voters = {f"{service['environment']['KAFKA_NODE_ID']}@{name}:9093" for name, service in brokers.items()}
    for name, service in brokers.items():
        env = service["environment"]
        assert service["image"].startswith("apache/kafka:")
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert (env["KAFKA_DEFAULT_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"]) == (3, 2)
        assert "healthcheck" in service
    assert len({service["environment"]["CLUSTER_ID"] for service in brokers.values()}) == 1


def test_ingress_and_worker_run_the_kafka_engine_from_the_image() -> None:
    for name in ("ingress", "worker"):
        service = services()[name]
        assert service["command"] == [name]
        assert service["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
        assert (COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == DOCKERFILE
        brokers = service["environment"]["SMSROUTE_KAFKA__BOOTSTRAP_SERVERS"].split(",")
        assert brokers == [f"kafka-{n}:9092" for n in (1, 2, 3)]
        assert all(service["depends_on"][f"kafka-{n}"]["condition"] == "service_healthy" for n in (1, 2, 3))


def test_prometheus_scrapes_each_service_where_it_serves_metrics_and_health(monkeypatch: pytest.MonkeyPatch) -> None:
    """The image's environment with each service's, as smsroute would load it: the ingress's and
    the worker's /metrics listen on all interfaces, on the port Prometheus's job scrapes and the
    image's healthcheck ($SMSROUTE_PORT) asks."""
    [image_env] = [args for instruction, args in instructions(DOCKERFILE) if instruction == "ENV"]
    image = dict(pair.split("=", 1) for pair in image_env.split())
    jobs = {
        job["job_name"]: job for job in yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"]
    }
    for name in ("ingress", "worker"):
        with monkeypatch.context() as env:
            for key, value in {**image, **services()[name]["environment"]}.items():
                env.setenv(key, str(value))
            settings = load_settings()
        host, port = (
            (settings.host, settings.port)
            if name == "ingress"
            else (settings.worker.metrics_host, settings.worker.metrics_port)
        )
        [scraped] = jobs[f"smsroute-{name}"]["dns_sd_configs"]
        assert (scraped["names"], host, port) == ([name], "0.0.0.0", scraped["port"]), name
        assert port == int(image["SMSROUTE_PORT"]), name


def test_every_bind_mount_exists_and_tools_see_their_configuration() -> None:
    mounts: dict[str, dict[str, Path]] = {}
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                path = (COMPOSE.parent / source).resolve()
                assert path.exists(), f"{name}: {source} does not exist"
                mounts.setdefault(name, {})[target] = path
    assert mounts["prometheus"]["/etc/prometheus"] == PROMETHEUS
    assert mounts["alertmanager"]["/etc/alertmanager"] == DOCKER / "alertmanager"
    assert mounts["grafana"]["/etc/grafana/provisioning"] == DOCKER / "grafana" / "provisioning"
    assert mounts["grafana"]["/var/lib/grafana/dashboards"] == DOCKER / "grafana" / "dashboards"
    assert mounts["worker"]["/etc/smsroute/routing_rules"] == ROOT / "routing_rules"


def test_hosts_named_in_the_monitoring_configuration_are_services() -> None:
    names = services().keys()
    prometheus = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    scraped = {
        name for job in prometheus["scrape_configs"] for sd in job.get("dns_sd_configs", []) for name in sd["names"]
    }
    assert scraped == {"ingress", "worker"}
    [manager] = prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    alertmanager = yaml.safe_load((DOCKER / "alertmanager" / "alertmanager.yml").read_text())
    [webhook] = [hook["url"] for receiver in alertmanager["receivers"] for hook in receiver.get("webhook_configs", [])]
    hosts = {
        manager.split(":")[0],
        alertmanager["global"]["smtp_smarthost"].split(":")[0],
        re.split(r"[/:]", webhook)[3],
    }
    assert hosts == {"alertmanager", "mailpit", "alert-webhook"}
    assert hosts | scraped | {"prometheus", "grafana"} <= names
    datasources = yaml.safe_load((DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert [source["url"] for source in datasources["datasources"]] == ["http://prometheus:9090"]


def test_images_are_pinned() -> None:
    for name, service in services().items():
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d[\w.-]*|smsroute:local", image), (
            f"{name}: {image} is not pinned to a version"
        )


def test_dockerfile_passes_hadolint() -> None:
    run(tool("hadolint"), "--failure-threshold", "info", DOCKERFILE)


def test_dockerfile_is_multi_stage_pinned_unprivileged_and_health_checked() -> None:
    steps = instructions(DOCKERFILE)
    bases = [arguments.split()[0] for instruction, arguments in steps if instruction == "FROM"]
    assert len(bases) == 2
    assert all(re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base) for base in bases), bases
    final = steps[max(index for index, (instruction, _) in enumerate(steps) if instruction == "FROM") :]
    users = [arguments for instruction, arguments in final if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    [healthcheck] = [arguments for instruction, arguments in final if instruction == "HEALTHCHECK"]
    assert "CMD" in healthcheck and "/healthz" in healthcheck
    assert ("ENTRYPOINT", '["smsroute"]') in final
    copied = [arguments for instruction, arguments in final if instruction == "COPY"]
    assert all(source.startswith("--from=build") or source.startswith("routing_rules/") for source in copied), copied
