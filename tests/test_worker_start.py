"""A worker that could not do its job right refuses to start, and says why.

An evicting Redis would drop leases and staged records (doctor refuses it too);
a target whose settings are missing would fail every unit it took.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from importq.cli import main
from tests.conftest import Worker

REFUSED = "maxmemory-policy allkeys-lru"


@pytest.fixture
def evicting(redis_client: redis.Redis) -> Iterator[None]:
    """The session Redis with an evicting policy, put back afterwards."""
    redis_client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        yield
    finally:
        redis_client.config_set("maxmemory-policy", "noeviction")


def test_a_worker_refuses_to_start_on_an_evicting_redis(evicting: None, tmp_path: Path) -> None:
    log = refused_start(tmp_path)
    assert REFUSED in log and "IMPORTQ_ALLOW_EVICTION" in log


def test_the_override_lets_a_worker_start_on_an_evicting_redis(
    evicting: None, start_worker: Any
) -> None:
    worker = start_worker(concurrency=1, IMPORTQ_ALLOW_EVICTION="true")  # waits until ready
    assert worker.process.poll() is None


def test_doctor_fails_an_evicting_redis(evicting: None, sim: Any) -> None:
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code != 0
    assert REFUSED in result.output and "noeviction" in result.output


def refused_start(tmp_path: Path, **env: str) -> str:
    """The log of a sourcing_data worker started with `env`, which must exit unready."""
    worker = Worker(tmp_path / "w.log", "sourcing_data", 1, "refused@localhost",
                    {**os.environ, **env})  # fmt: skip
    try:
        assert worker.process.wait(timeout=60) != 0
    finally:
        worker.stop()
    log = worker.log_path.read_text()
    assert " ready." not in log
    return log


def test_a_worker_refuses_a_target_whose_settings_are_missing(tmp_path: Path) -> None:
    log = refused_start(tmp_path, SOURCING_DATA_AGENT_ID="")
    assert "SOURCING_DATA_AGENT_ID" in log and "fix these settings" in log


def test_a_worker_refuses_a_circuit_breaker_setting_that_means_nothing(tmp_path: Path) -> None:
    assert "IMPORTQ_BREAKER_FAILURES" in refused_start(tmp_path, IMPORTQ_BREAKER_FAILURES="0")


def _compose_healthcheck(queue: str, node: str) -> str:
    """docker-compose.yml's health check of the worker for `queue`, aimed at `node`."""
    import yaml

    from importq.deploy.compose import HEALTHCHECK

    compose = yaml.safe_load((Path(__file__).parent.parent / "docker-compose.yml").read_text())
    kind, command = compose["services"][f"worker_{queue}"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL" and command == HEALTHCHECK.format(node=queue)
    # The container's node is <queue>@$HOSTNAME; here the test worker's own name stands in.
    return command.replace(f"{queue}@$$HOSTNAME", node).replace("celery", "python -m celery", 1)


def test_the_compose_health_check_answers_for_a_live_worker_only(start_worker: Any) -> None:
    worker = start_worker("sourcing_data", 1)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    alive = subprocess.run(["sh", "-c", _compose_healthcheck("sourcing_data", worker.name)],
                           env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert alive.returncode == 0, alive.stdout + alive.stderr
    gone = _compose_healthcheck("sourcing_data", "nobody@nowhere").replace("10", "2")
    dead = subprocess.run(["sh", "-c", gone], env=env, capture_output=True, timeout=60)
    assert dead.returncode != 0
