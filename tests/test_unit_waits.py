"""How long the runner makes a unit wait, and what the wait costs, with a scripted sink.

The runner runs in this process against the session Redis; the sink only raises
what a vendor's answer would become. The unit's due time (`next_attempt_at`) and
the countdown of the message that wakes it are what the core must get right: a
vendor's Retry-After is a floor for every wait, whether the wait costs an
attempt or not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
import redis

from importq import settings as importq_settings
from importq.errors import RetryableError
from importq.settings import Settings
from workers import keys, targets
from workers.jobs import JobStore
from workers.runner import Runner
from workers.targets.base import Delivered, Located, Record, RunContext, Sink

TARGET = "scripted"
# Far above the tests' backoff (IMPORTQ_BACKOFF_MAX=0.5): only Retry-After can explain a wait
# this long, and far below the visibility timeout, so the countdown message is still sent.
RETRY_AFTER = 40.0


class ScriptedSink(Sink):
    """A target whose every run raises `error`, or delivers every record when it is None."""

    name = TARGET

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.runs = 0

    def load_limits(self, settings: Settings) -> None:
        return None

    def make_client(self, settings: Settings) -> None:
        return None

    def plan(
        self, records: Iterable[Located], limits: Any, params: dict[str, Any]
    ) -> Iterator[list[Record]]:
        yield [record for record, _ in records]

    def run(self, ctx: RunContext) -> Delivered:
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


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> ScriptedSink:
    scripted = ScriptedSink()
    monkeypatch.setitem(targets.SINKS, TARGET, scripted)
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


def due_of(store: JobStore, unit_id: str) -> float:
    return float(store.unit(unit_id)["next_attempt_at"])


def test_a_retry_is_not_due_before_the_vendors_retry_after(
    sink: ScriptedSink, make_runner: Callable[..., tuple[Runner, JobStore]], published: Published
) -> None:
    runner, store = make_runner()
    unit_id = staged_unit(store)
    sink.error = RetryableError("429 Too Many Requests", target=TARGET, retry_after=RETRY_AFTER)
    before = time.time()
    assert runner.run(TARGET, unit_id) == "waiting"
    unit = store.unit(unit_id)
    assert unit["attempts"] == "1"  # this wait costs an attempt
    assert due_of(store, unit_id) >= before + RETRY_AFTER - 0.01
    countdowns = [countdown for unit, _, countdown in published.calls if unit == unit_id]
    assert all(c is not None and c >= RETRY_AFTER - 0.01 for c in countdowns), countdowns


def test_a_wait_that_costs_no_attempt_lasts_the_retry_after_it_was_given(
    sink: ScriptedSink, make_runner: Callable[..., tuple[Runner, JobStore]], published: Published
) -> None:
    runner, store = make_runner()
    unit_id = staged_unit(store)
    sink.error = RetryableError(
        "someone else's import is open", target=TARGET, retry_after=RETRY_AFTER,
        counts_attempt=False,
    )  # fmt: skip
    before = time.time()
    assert runner.run(TARGET, unit_id) == "waiting"
    job = store.get(keys.job_of(unit_id))
    assert job is not None and job.retries == 0
    assert store.unit(unit_id)["attempts"] == "0"  # given back
    assert "someone else's import is open" in store.unit(unit_id)["last_error"]
    assert due_of(store, unit_id) >= before + RETRY_AFTER - 0.01
    countdowns = [countdown for unit, _, countdown in published.calls if unit == unit_id]
    assert all(c is not None and c >= RETRY_AFTER - 0.01 for c in countdowns), countdowns


def test_a_finished_job_expires_after_the_job_ttl(
    sink: ScriptedSink,
    make_runner: Callable[..., tuple[Runner, JobStore]],
    redis_client: redis.Redis,
) -> None:
    runner, store = make_runner(IMPORTQ_JOB_TTL="4321")
    unit_id = staged_unit(store)
    assert runner.run(TARGET, unit_id) == "succeeded"
    job_id = keys.job_of(unit_id)
    for key in (keys.job(job_id), keys.unit(unit_id), keys.job_units(job_id)):
        assert 4000 < redis_client.ttl(key) <= 4321, key
