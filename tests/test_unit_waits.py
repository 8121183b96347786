"""How long the runner makes a unit wait, and what the wait costs, with a scripted sink.

The runner runs in this process against the session Redis; the sink only raises
what a vendor's answer would become. The unit's due time (`next_attempt_at`) and
the countdown of the message that wakes it are what the core must get right: a
vendor's Retry-After is a floor for every wait, whether the wait costs an
attempt or not.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from importq.errors import RetryableError, VendorBusy
from tests.scripted import TARGET, Published, ScriptedSink, staged_unit
from workers import keys
from workers.jobs import JobStore
from workers.runner import Runner

# Far above the tests' backoff (IMPORTQ_BACKOFF_MAX=0.5): only Retry-After can explain a wait
# this long, and far below the visibility timeout, so the countdown message is still sent.
RETRY_AFTER = 40.0


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
    sink.error = VendorBusy("someone else's import is open", target=TARGET, retry_after=RETRY_AFTER)
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
