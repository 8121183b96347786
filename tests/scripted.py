"""A scripted target and an in-process runner: the core's routing without a vendor.

Registered as a pytest plugin in conftest.py, so any test can ask for the
`sink`, `published` and `make_runner` fixtures. The runner runs in the test
process against the session Redis; the sink only raises what a vendor's answer
would become, and a second message for a unit is a second `runner.run` call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
import redis

from importq import settings as importq_settings
from importq.settings import Settings
from workers import targets
from workers.jobs import JobStore
from workers.runner import Runner
from workers.targets.base import Delivered, Located, Record, RunContext, Sink, Target

TARGET = "scripted"
MakeRunner = Callable[..., tuple[Runner, JobStore]]


class ScriptedSink(Sink[None, None]):
    """A target whose every run raises `error`, or delivers every record when it is None."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.runs = 0

    def plan(
        self, records: Iterable[Located], limits: None, params: dict[str, Any]
    ) -> Iterator[list[Record]]:
        yield [record for record, _ in records]

    def run(self, ctx: RunContext[None, None]) -> Delivered:
        self.runs += 1
        if self.error is not None:
            raise self.error
        return Delivered(len(ctx.records))


class Published:
    """The runner's publish function: keeps (unit, target, countdown) instead of sending."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float | None]] = []

    def __call__(self, unit_id: str, target: str, countdown: float | None) -> None:
        self.calls.append((unit_id, target, countdown))


def nothing(settings: Settings) -> None:
    """The scripted target's limits and client: it has neither."""
    return None


def register(monkeypatch: pytest.MonkeyPatch, scripted: ScriptedSink) -> None:
    """Put `scripted` in the registry for one test, under the name TARGET."""
    target = Target(name=TARGET, limits=nothing, client=nothing, sink=scripted)
    monkeypatch.setitem(targets.TARGETS, TARGET, target)


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> ScriptedSink:
    scripted = ScriptedSink()
    register(monkeypatch, scripted)
    return scripted


@pytest.fixture
def published() -> Published:
    return Published()


@pytest.fixture
def make_runner(
    redis_client: redis.Redis, published: Published
) -> Callable[..., tuple[Runner, JobStore]]:
    def make(**env: str) -> tuple[Runner, JobStore]:
        settings = importq_settings.load(
            {"IMPORTQ_BACKOFF_BASE": "0.05", "IMPORTQ_BACKOFF_MAX": "0.5", **env}
        )
        store = JobStore(redis_client)
        return Runner(settings, store, published), store

    return make


def staged_unit(store: JobStore, count: int = 3) -> str:
    job_id = store.create(TARGET, {})
    records = [{"n": n} for n in range(count)]
    unit_id = store.stage_unit(job_id, TARGET, 0, records, rescue_ms=60_000)
    store.open(job_id)
    return unit_id
