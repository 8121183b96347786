"""Shared fixtures: one Redis per session on a free port, the simulator, worker processes.

The environment is set before workers.app is imported anywhere, because the
app reads its settings once at import, exactly like a real worker does.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import redis

from importq import broker
from importq.processes import Process, celery_worker_command

CANARY_TOKEN = "canary-sourcing-token-3f9c1d"
AGENT = "demo-agent"

# Fast leases and backoff so crash recovery and retries happen within seconds in tests.
TEST_ENV = {
    "IMPORTQ_LEASE_SECONDS": "2",
    "IMPORTQ_REAPER_INTERVAL": "0.5",
    "IMPORTQ_RETRY_GRACE": "5",
    "IMPORTQ_BACKOFF_BASE": "0.05",
    "IMPORTQ_BACKOFF_MAX": "0.5",
    "IMPORTQ_LOG_FORMAT": "json",
    "SOURCING_DATA_TOKEN": CANARY_TOKEN,
    "SOURCING_DATA_AGENT_ID": AGENT,
    "SOURCING_DATA_POLL_INTERVAL": "0.02",
}


free_port = broker.free_port


_REDIS_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / f"importq-test-redis-{os.getpid()}"
_REDIS_DIR.mkdir(parents=True, exist_ok=True)
_REDIS_PROCESS, REDIS_URL = broker.start_private(_REDIS_DIR)


def _reserve_simulator_ports() -> dict[str, int]:
    """A port per registered target; its simulator's client env goes into os.environ now."""
    from simulators import load
    from workers.targets import SINKS

    ports = {name: free_port() for name in SINKS}
    for name, port in ports.items():
        os.environ.update(load(name).client_env(f"http://127.0.0.1:{port}"))
    return ports


SIM_PORTS = _reserve_simulator_ports()
SIM_URL = os.environ["SOURCING_DATA_URL"]
os.environ.update(TEST_ENV)
os.environ["REDIS_URL"] = REDIS_URL
os.environ["IMPORTQ_HOME"] = str(_REDIS_DIR / "home")


def pytest_unconfigure(config: pytest.Config) -> None:
    _REDIS_PROCESS.terminate()
    _REDIS_PROCESS.wait(timeout=10)
    shutil.rmtree(_REDIS_DIR, ignore_errors=True)


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """The session's Redis, emptied before each test."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def simulators() -> Iterator[dict[str, Any]]:
    """Every registered target's simulator, served on its reserved port for the session."""
    from simulators import load
    from simulators.http import serve

    sims = {name: load(name).SIMULATOR() for name in SIM_PORTS}
    servers = [serve(sim, port=SIM_PORTS[name]) for name, sim in sims.items()]
    yield sims
    for server in servers:
        server.stop()


@pytest.fixture
def fresh_simulators(simulators: dict[str, Any], redis_client: redis.Redis) -> dict[str, Any]:
    """The simulators with their default config and an empty ledger."""
    for simulator in simulators.values():
        defaults = type(simulator.config)()
        simulator.configure(**{f.name: getattr(defaults, f.name) for f in fields(defaults)})
        simulator.reset()
    return simulators


@pytest.fixture(scope="session")
def sim_server(simulators: dict[str, Any]) -> tuple[object, str]:
    return simulators["sourcing_data"], SIM_URL


@pytest.fixture
def sim(fresh_simulators: dict[str, Any]) -> object:
    """The SourcingData simulator, reset, with the canary token as its valid token."""
    simulator = fresh_simulators["sourcing_data"]
    simulator.configure(token=CANARY_TOKEN, agents={AGENT}, processing_seconds=0.01)
    return simulator


class Worker(Process):
    """A real `celery worker` process, stopped (or killed) by the test that starts it."""

    def __init__(
        self, log_path: Path, queues: str, concurrency: int, name: str, env: dict[str, str]
    ):
        super().__init__(celery_worker_command(queues, concurrency, name), env, log_path)


@pytest.fixture
def start_worker(tmp_path: Path, simulators: dict[str, Any]) -> Iterator[object]:
    started: list[Worker] = []

    def start(queues: str = "sourcing_data", concurrency: int = 4, **env: str) -> Worker:
        name = f"w{len(started)}-{os.getpid()}@localhost"
        worker = Worker(
            tmp_path / f"worker{len(started)}.log", queues, concurrency, name, {**os.environ, **env}
        )
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()
