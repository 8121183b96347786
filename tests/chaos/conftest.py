"""Fixtures of the chaos suite: fleets of workers, a Redis with AOF, a stallable proxy.

The session Redis, the simulators and TEST_ENV come from tests/conftest.py; every
process a fixture here starts, it stops.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import CHAOS_ENV, Fleet, Site
from tests.faults import AofRedis, StallableProxy

_FIGURES: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _FIGURES:
        terminalreporter.section("chaos figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture
def figure() -> Callable[[str], None]:
    """Record a scenario's one-line figure; printed in the run's summary."""

    def say(line: str) -> None:
        _FIGURES.append(line)
        print(line)

    return say


def _worker_env(redis_url: str) -> dict[str, str]:
    from tests.conftest import TEST_ENV

    return {**os.environ, **TEST_ENV, **CHAOS_ENV, "REDIS_URL": redis_url}


@pytest.fixture
def session_site(redis_client: Any) -> Iterator[Site]:
    """The session Redis (emptied), seen through a client of the test's own."""
    from workers import app

    site = Site(app.redis_url())
    yield site
    site.close()


@pytest.fixture
def fleets(tmp_path: Path) -> Iterator[Callable[[str], Fleet]]:
    """fleets(redis_url) -> a Fleet whose workers use that Redis; all stopped at the end."""
    made: list[Fleet] = []

    def make(redis_url: str) -> Fleet:
        fleet = Fleet(tmp_path, _worker_env(redis_url))
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        fleet.stop_all()


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[AofRedis]:
    """A Redis of the test's own with AOF (fsync always), restartable on its port and dir."""
    server = AofRedis(tmp_path / "aof-redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def aof_site(aof_redis: AofRedis) -> Iterator[Site]:
    site = Site(aof_redis.url)
    yield site
    site.close()


@pytest.fixture
def proxies() -> Iterator[Callable[[str], StallableProxy]]:
    """proxies(redis_url) -> a stallable proxy in front of that Redis; closed at the end."""
    made: list[StallableProxy] = []

    def make(url: str) -> StallableProxy:
        proxy = StallableProxy.to_url(url)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()
