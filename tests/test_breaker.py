"""A target that fails as a whole is paused, not drained into the dead-letter store.

The runner runs in this process against the session Redis with a scripted sink
(tests/scripted.py): the sink raises what a vendor outage becomes.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
import redis

from importq.errors import AuthError, FinalError, RetryableError, Unreachable, VendorAnswer
from importq.settings import load
from tests.conftest import CANARY_TOKEN
from tests.helpers import publish_sourcing, sample_records, wait_for_job, wait_until
from tests.scripted import TARGET, MakeRunner, Published, ScriptedSink, staged_unit
from workers import keys
from workers.breaker import Breaker
from workers.jobs import JobStore

BREAKER = {"IMPORTQ_BREAKER_FAILURES": "3", "IMPORTQ_BREAKER_PROBE_SECONDS": "30",
           "IMPORTQ_MAX_ATTEMPTS": "2"}  # fmt: skip
UNAUTHORIZED, TOO_MANY = VendorAnswer(status=401), VendorAnswer(status=429)
DOWN = Unreachable("POST /start failed: ConnectError: connection refused", target=TARGET)


def probe_now(redis_client: redis.Redis) -> None:
    """Skip ahead to the next probe time."""
    redis_client.hset(keys.breaker(TARGET), "probe_at", int(time.time() * 1000) - 1)


def due_now(redis_client: redis.Redis, *unit_ids: str) -> None:
    for unit_id in unit_ids:
        redis_client.hset(keys.unit(unit_id), "next_attempt_at", time.time() - 1)


def test_failures_across_units_pause_the_target_without_using_attempts(
    sink: ScriptedSink, make_runner: MakeRunner
) -> None:
    runner, store = make_runner(**BREAKER)
    units = [staged_unit(store) for _ in range(5)]
    sink.error = DOWN
    assert [runner.run(TARGET, u) for u in units] == ["waiting"] * 5
    attempts = [store.unit(u)["attempts"] for u in units]
    assert attempts == ["1", "1", "0", "0", "0"]  # the third failure paused it
    assert sink.runs == 3  # the paused target's later units did not even try
    pause = runner.breaker.pause(TARGET)
    assert pause is not None and "connection refused" in pause.reason
    assert f"target {TARGET} paused since" in store.unit(units[4])["last_error"]
    # However long it lasts, nothing is dead-lettered: the budget is not touched.
    for _ in range(4):
        due_now(runner.store.redis, *units)
        assert {runner.run(TARGET, u) for u in units} == {"waiting"}
    assert {store.unit(u)["state"] for u in units} == {"waiting"}
    assert [store.unit(u)["attempts"] for u in units] == attempts


def test_a_probe_that_reaches_the_vendor_resumes_the_target_and_wakes_its_units(
    sink: ScriptedSink, make_runner: MakeRunner, published: Published, redis_client: redis.Redis
) -> None:
    runner, store = make_runner(**BREAKER)
    units = [staged_unit(store) for _ in range(4)]
    sink.error = DOWN
    for unit_id in units:
        runner.run(TARGET, unit_id)
    probe_now(redis_client)
    due_now(redis_client, units[0])
    answered = VendorAnswer(status=400)  # an answer again
    sink.error = FinalError("unknown entity", target=TARGET, answer=answered)
    published.calls.clear()
    assert runner.run(TARGET, units[0]) == "failed"  # the probe: a unit-level outcome
    assert runner.breaker.pause(TARGET) is None
    woken = {unit for unit, _, countdown in published.calls if countdown is None}
    assert woken == set(units[2:])  # the two it paused; the second waits out its own retry
    sink.error = None
    assert [runner.run(TARGET, u) for u in units[2:]] == ["succeeded"] * 2


def test_a_failed_probe_keeps_the_target_paused_and_probes_less_often(
    sink: ScriptedSink, make_runner: MakeRunner, redis_client: redis.Redis
) -> None:
    runner, store = make_runner(**BREAKER)
    units = [staged_unit(store) for _ in range(3)]
    sink.error = DOWN
    for unit_id in units:
        runner.run(TARGET, unit_id)
    before = runner.breaker.pause(TARGET)
    assert before is not None
    probe_now(redis_client)
    due_now(redis_client, units[0])
    runs = sink.runs
    assert runner.run(TARGET, units[0]) == "waiting"
    assert sink.runs == runs + 1  # one unit probed
    after = runner.breaker.pause(TARGET)
    assert after is not None and after.probe_at - time.time() > 50  # 30 s doubled
    assert store.unit(units[0])["attempts"] == "1"  # the probe used no attempt


def test_refused_credentials_pause_the_target_at_once(
    sink: ScriptedSink, make_runner: MakeRunner
) -> None:
    runner, store = make_runner(**BREAKER)
    unit_id = staged_unit(store)
    sink.error = AuthError("401 Unauthorized: token revoked", target=TARGET, answer=UNAUTHORIZED)
    assert runner.run(TARGET, unit_id) == "waiting"
    assert store.unit(unit_id)["attempts"] == "0"
    job = store.get(keys.job_of(unit_id))
    assert job is not None and job.records_dead == 0
    pause = runner.breaker.pause(TARGET)
    assert pause is not None and "token revoked" in pause.reason


def test_unit_level_failures_do_not_pause_the_target(
    sink: ScriptedSink, make_runner: MakeRunner
) -> None:
    runner, store = make_runner(**BREAKER)
    units = [staged_unit(store) for _ in range(4)]
    sink.error = RetryableError("429 Too Many Requests", target=TARGET, answer=TOO_MANY)
    for unit_id in units:
        runner.run(TARGET, unit_id)
    assert runner.breaker.pause(TARGET) is None
    assert {store.unit(u)["attempts"] for u in units} == {"1"}


# --- end to end: a real worker, the SourcingData simulator over HTTP ----------------------------

E2E_BREAKER = {"IMPORTQ_MAX_ATTEMPTS": "2", "IMPORTQ_BREAKER_FAILURES": "2",
               "IMPORTQ_BREAKER_PROBE_SECONDS": "0.5", "IMPORTQ_BREAKER_PROBE_MAX_SECONDS": "1",
               "SOURCING_DATA_RESEND_ATTEMPTS": "2"}  # fmt: skip


def test_a_vendor_outage_pauses_the_target_and_loses_nothing(
    sim: Any, start_worker: Any, redis_client: redis.Redis
) -> None:
    sim.configure(fault_rate=1.0, fault_statuses=(503,), retry_after_seconds=0)
    start_worker(concurrency=2, **E2E_BREAKER)
    job_id = publish_sourcing(sample_records(24_000))  # six queue items
    wait_until("the target to pause", lambda: redis_client.exists(keys.breaker("sourcing_data")))
    # Down for many times what two attempts with backoff would have lasted.
    paused_since = time.monotonic()
    store = JobStore(redis_client)
    time.sleep(max(0.0, 4 - (time.monotonic() - paused_since)))
    job = store.get(job_id)
    assert job is not None and job.records_dead == 0 and not job.finished
    sim.configure(fault_rate=0.0)  # the vendor is back
    job = wait_for_job(job_id, timeout=120)
    ledger = sim.ledger()
    assert job.state == "succeeded", job
    assert ledger["committed_records"] == 24_000 and ledger["duplicates"] == 0
    assert not redis_client.exists(keys.breaker("sourcing_data"))


def test_a_revoked_token_pauses_the_target_until_it_is_fixed(
    sim: Any, start_worker: Any, redis_client: redis.Redis
) -> None:
    sim.configure(token="the-vendor-rotated-it")  # every request now answers 401
    start_worker(concurrency=2, **E2E_BREAKER)
    job_id = publish_sourcing(sample_records(8_000))
    wait_until("the target to pause", lambda: redis_client.exists(keys.breaker("sourcing_data")))
    pause = Breaker(redis_client, load(dict(os.environ))).pause("sourcing_data")
    assert pause is not None and "401" in pause.reason
    assert CANARY_TOKEN not in pause.reason
    sim.configure(token=CANARY_TOKEN)  # the operator fixes the credentials at the vendor
    job = wait_for_job(job_id, timeout=120)
    assert job.state == "succeeded" and job.records_dead == 0
    assert sim.ledger()["committed_records"] == 8_000


def test_status_and_jobs_say_the_target_is_paused_and_why(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from importq.cli import main
    from workers import app

    monkeypatch.setattr(app, "publish_unit", lambda *args: None)  # no worker: it stays queued
    job_id = publish_sourcing(sample_records(10))
    refused = AuthError(
        "401: SOURCING_DATA_TOKEN was refused", target="sourcing_data", answer=UNAUTHORIZED
    )
    Breaker(redis_client, app.settings()).failed("sourcing_data", "u", "token", refused)
    status = CliRunner().invoke(main, ["status", job_id])
    assert "target sourcing_data paused since" in status.output
    assert "SOURCING_DATA_TOKEN was refused" in status.output
    as_json = json.loads(CliRunner().invoke(main, ["status", job_id, "--json"]).stdout)
    assert "SOURCING_DATA_TOKEN was refused" in as_json["paused"]["reason"]
    listing = CliRunner().invoke(main, ["jobs"]).output
    assert "target sourcing_data paused since" in listing and "(target paused)" in listing
