"""docker-compose.yml, the Dockerfile and .env.example keep the deployment invariants."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from workers.targets import TARGETS

ROOT = Path(__file__).resolve().parent.parent
SECRET_NAME = re.compile(r"(_KEY|_TOKEN)$|PASSWORD|SECRET|BASIC_AUTH")
# A reference with no default: ${VAR}, ${VAR:-} or ${VAR:?message}. A default value would
# be a literal written into the file.
REFERENCE = re.compile(r"^\$\{[A-Z][A-Z0-9_]*(:?-|:?\?[^}]*)?\}$")


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def _queue_of(service: dict[str, Any]) -> str | None:
    command = _command(service)
    if command[:4] != ["celery", "-A", "workers.app", "worker"] or "-Q" not in command:
        return None
    return command[command.index("-Q") + 1]


def _workers() -> dict[str, tuple[str, dict[str, Any]]]:
    """Queue -> (service name, service) for every worker service."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, service in _services().items():
        queue = _queue_of(service)
        if queue is not None:
            assert queue not in found, f"two worker services on queue {queue}"
            found[queue] = (name, service)
    return found


def _environment(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["NAME=value", "NAME"]: a bare name passes the shell's value
        pairs = [item.partition("=") for item in env]
        return {name: value if sep else None for name, sep, value in pairs}
    return {key: None if value is None else str(value) for key, value in env.items()}


def test_every_registered_target_has_a_worker_service_on_its_own_queue() -> None:
    workers = _workers()
    missing = sorted(set(TARGETS) - set(workers))
    assert not missing, f"docker-compose.yml has no worker service for {missing}"
    for queue, (name, service) in workers.items():
        assert "," not in queue, f"{name} consumes several queues: {queue}"
        assert service.get("build") == "." and "env_file" not in service, name
        assert f"{queue}@%h" in _command(service), f"{name}: give it a -n {queue}@%h node name"


def _target_of(variable: str) -> str | None:
    """The registered target whose own variable this is (SOURCING_DATA_URL: sourcing_data)."""
    owners = [name for name in TARGETS if variable.startswith(name.upper() + "_")]
    return max(owners, key=len) if owners else None


def test_each_worker_gets_its_own_targets_variables_and_no_other_secret() -> None:
    for queue, (name, service) in _workers().items():
        env = _environment(service)
        others = [v for v in env if _target_of(v) not in (None, queue)]
        assert others == [], f"{name} is given another target's variables: {others}"
        assert "FLOWER_BASIC_AUTH" not in env, name
        per_target = [v for v in env if v.startswith(("IMPORTQ_RATE_LIMIT_", "IMPORTQ_MAX_WAIT_"))]
        suffix = queue.upper()
        assert all(v == "IMPORTQ_MAX_WAIT_SECONDS" or v.endswith("_" + suffix)
                   for v in per_target), per_target  # fmt: skip
        for setting in TARGETS[queue].settings:
            if setting.secret or setting.name.startswith(suffix + "_"):
                assert set(setting.names) <= set(env), f"{name} lacks {setting.name}"
    assert "FLOWER_BASIC_AUTH" in _environment(_services()["flower"])


def test_workers_and_the_metrics_have_health_checks() -> None:
    for queue, (name, service) in _workers().items():
        check = " ".join(service["healthcheck"]["test"])
        assert f"inspect ping -d {queue}@$HOSTNAME" in check.replace("$$", "$"), name
    metrics = " ".join(_services()["metrics"]["healthcheck"]["test"])
    assert "http://127.0.0.1:9808/metrics" in metrics


def test_blue_runs_one_process_in_a_single_replica() -> None:
    name, blue = _workers()["blue"]
    command = _command(blue)
    assert command[command.index("--concurrency") + 1] == "1", name
    assert blue["deploy"]["replicas"] == 1
    for queue, (_, service) in _workers().items():
        if queue != "blue":  # the others scale with --scale and WORKER_CONCURRENCY
            assert "replicas" not in service.get("deploy", {})


def test_redis_keeps_an_append_only_file_on_a_volume_with_a_healthcheck() -> None:
    compose = _compose()
    redis = compose["services"]["redis"]
    assert re.fullmatch(r"redis:7(\.\d+)*(-\w+)?", redis["image"])
    command = _command(redis)
    assert command[command.index("--appendonly") + 1] == "yes"
    volume = redis["volumes"][0].split(":")
    assert volume[1] == "/data" and volume[0] in compose["volumes"]  # named, survives rebuilds
    assert "redis-cli" in redis["healthcheck"]["test"]
    for queue, (name, service) in _workers().items():
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
        assert _environment(service)["REDIS_URL"] == "redis://redis:6379/0", queue


def test_flower_watches_the_same_broker_behind_basic_auth_from_the_environment() -> None:
    flower = _services()["flower"]
    assert _command(flower)[:2] == ["importq", "flower"]
    env = _environment(flower)
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert (env["FLOWER_BASIC_AUTH"] or "").startswith("${FLOWER_BASIC_AUTH:?")
    assert any(str(port).endswith(":5555:5555") for port in flower["ports"])
    assert "healthcheck" in flower
    assert "env_file" not in flower  # Flower needs no target credential


def test_no_secret_literal_in_the_compose_file() -> None:
    for name, service in _services().items():
        for variable, value in _environment(service).items():
            if SECRET_NAME.search(variable):
                assert value is not None and REFERENCE.match(value), (
                    f"{name}: {variable} must be a ${{{variable}}} reference without a "
                    f"default, not {value!r}"
                )
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_env_example_holds_no_value_for_a_secret() -> None:
    for line in (ROOT / ".env.example").read_text().splitlines():
        variable, sep, value = line.lstrip("# ").partition("=")
        if sep and SECRET_NAME.search(variable):
            assert value == "", f".env.example gives {variable} a value"


def test_dockerfile_builds_a_slim_non_root_image_without_secrets() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    base = next(line for line in instructions if line.startswith("FROM "))
    assert re.fullmatch(r"FROM python:3\.11(\.\d+)?-slim(-\w+)?", base)
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image must end as a non-root user"
    assert any(re.search(r"pip install ['\"]?\.(\[[\w,]+\])?['\"]?$", line) for line in lines)
    for line in instructions:
        if line.startswith(("ENV ", "ARG ")):
            assert not SECRET_NAME.search(line), f"secret baked into the image: {line}"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".git" in ignored


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (`make compose-tools` installs Debian's)")
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")  # what an operator starts from

    def config(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [compose, "config", "-q"], cwd=tmp_path, env={"PATH": "/usr/bin:/bin", **env},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    accepted = config(FLOWER_BASIC_AUTH="fake-user:fake-password")
    assert accepted.returncode == 0, accepted.stderr
    with_ha = config(FLOWER_BASIC_AUTH="fake-user:fake-password", COMPOSE_PROFILES="ha")
    assert with_ha.returncode == 0, with_ha.stderr
    refused = config()  # Flower without logins must not come up
    assert refused.returncode != 0
    assert "set FLOWER_BASIC_AUTH=user:password" in refused.stderr


def test_the_ha_profile_adds_a_replica_and_three_sentinels_watching_redis() -> None:
    services = _services()
    ha = {name for name, service in services.items() if "ha" in service.get("profiles", [])}
    assert ha == {"redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"}
    replica = _command(services["redis-replica"])
    assert replica[replica.index("--replicaof") + 1 :][:2] == ["redis", "6379"]
    assert replica[replica.index("--appendonly") + 1] == "yes"
    for number in (1, 2, 3):
        script = " ".join(_command(services[f"sentinel-{number}"]))
        assert "'sentinel monitor mymaster redis 6379 2'" in script  # a majority of three
        assert f"'sentinel announce-ip sentinel-{number}'" in script
        assert script.endswith("--sentinel")
    env = _environment(services["flower"])  # every service can be pointed at the sentinels
    assert env["REDIS_SENTINELS"] == "${REDIS_SENTINELS:-}"
    for name, service in _workers().values():
        assert "REDIS_SENTINELS" in _environment(service), name


def test_the_api_plans_with_every_targets_limits_and_holds_no_vendor_credential() -> None:
    api = _services()["api"]
    assert _command(api)[:2] == ["importq", "serve"] and "0.0.0.0" in _command(api)
    assert any(str(port) == "127.0.0.1:8080:8080" for port in api["ports"])
    assert "/openapi.json" in " ".join(api["healthcheck"]["test"])
    env = _environment(api)
    assert env["REDIS_URL"] == "redis://redis:6379/0" and "IMPORTQ_SERVE_TOKENS" in env
    secrets = {n for t in TARGETS.values() for s in t.settings if s.secret for n in s.names}
    assert secrets and not secrets & set(env), secrets & set(env)
    for target in TARGETS:  # the API cuts units as the workers' limits say
        assert f"IMPORTQ_MAX_QUEUED_UNITS_{target.upper()}" in env
    assert "HTTP_BATCH_RECORDS_PER_REQUEST" in env and "FLOWER_BASIC_AUTH" not in env
    # Its own secret, the callbacks' keys of every token, is one variable it carries.
    assert env["IMPORTQ_SERVE_CALLBACK_SECRETS"] == "${IMPORTQ_SERVE_CALLBACK_SECRETS:-}"
    assert not [name for name in env if name.startswith("IMPORTQ_SERVE_CALLBACK_SECRET_")]
    assert "IMPORTQ_SERVE_CALLBACK_SECRETS=" in (ROOT / ".env.example").read_text().splitlines()
