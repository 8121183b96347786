"""Shared fixtures: one Redis per session on a free port, the simulator, worker processes.

The environment is set before workers.app is first used anywhere, because the
app reads its settings once, on first use, exactly like a real worker does.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import redis

from importq import broker
from importq.processes import Process, celery_worker_command, stop_all

CANARY_TOKEN = "canary-sourcing-token-3f9c1d"
AGENT = "demo-agent"

# Fast leases and backoff so crash recovery and retries happen within seconds in tests.
# The lease is renewed every third of it and trusted for half of it: 4 s leaves a loaded
# 2-core machine seconds of slack before a live worker's lease could lapse.
TEST_ENV = {
    "IMPORTQ_LEASE_SECONDS": "4",
    "IMPORTQ_REAPER_INTERVAL": "0.5",
    "IMPORTQ_RETRY_GRACE": "5",
    "IMPORTQ_BACKOFF_BASE": "0.05",
    "IMPORTQ_BACKOFF_MAX": "0.5",
    "IMPORTQ_LOG_FORMAT": "json",
    "SOURCING_DATA_TOKEN": CANARY_TOKEN,
    "SOURCING_DATA_AGENT_ID": AGENT,
    "SOURCING_DATA_POLL_INTERVAL": "0.02",
    # Producers refuse Blueshift records without a bucket to stage them in; the tests that
    # upload give their workers moto's S3 (test_blueshift_e2e.s3_env).
    "BLUESHIFT_S3_BUCKET": "importq-test",
}


free_port = broker.free_port

# Set by pytest_configure: nothing is started at import, so a usage error (pytest --bogus-flag),
# which ends pytest before configure, leaves no Redis behind.
REDIS_URL = ""
SIM_PORTS: dict[str, int] = {}
SIM_URL = ""
_started: dict[str, Any] = {}


def _reserve_simulator_ports() -> dict[str, int]:
    """A port per registered target; its simulator's client env goes into os.environ now."""
    from simulators import load
    from workers.targets import TARGETS

    ports = {name: free_port() for name in TARGETS}
    for name, port in ports.items():
        os.environ.update(load(name).client_env(f"http://127.0.0.1:{port}"))
    return ports


# The scripted target and in-process runner fixtures; a Redis Sentinel group's.
pytest_plugins = ["tests.scripted", "tests.sentinel"]


def pytest_configure(config: pytest.Config) -> None:
    """The session's Redis and environment, before any test module imports workers.app."""
    global REDIS_URL, SIM_PORTS, SIM_URL
    if config.getoption("help", False) or config.getoption("version", False):
        return
    redis_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"importq-test-redis-{os.getpid()}"
    redis_dir.mkdir(parents=True, exist_ok=True)
    _started["dir"] = redis_dir
    _started["redis"], REDIS_URL = broker.start_private(redis_dir)
    SIM_PORTS = _reserve_simulator_ports()
    SIM_URL = os.environ["SOURCING_DATA_URL"]
    os.environ.update(TEST_ENV)
    os.environ["REDIS_URL"] = REDIS_URL
    os.environ["IMPORTQ_HOME"] = str(redis_dir / "home")


def pytest_unconfigure(config: pytest.Config) -> None:
    process = _started.pop("redis", None)
    if process is not None:
        process.terminate()
        process.wait(timeout=10)
    redis_dir = _started.pop("dir", None)
    if redis_dir is not None:
        shutil.rmtree(redis_dir, ignore_errors=True)


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
        self.name = name  # its Celery node name


@pytest.fixture
def start_worker(
    tmp_path: Path, simulators: dict[str, Any], redis_client: redis.Redis
) -> Iterator[object]:
    """Starts real workers; they are SIGKILLed once the test is over (its redis_client has
    emptied Redis first, and the next test's empties what they leave)."""
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
    # Nothing is asserted after the test: a warm shutdown would cost each worker 1-2 s of
    # billiard's pool threads sleeping. Tests of a shutdown stop their workers themselves.
    stop_all(started, signum=signal.SIGKILL)
