"""A unit that ends without running again settles what its dead attempts left open.

The runner runs in this process against the session Redis and the SourcingData
simulator over HTTP; a dead attempt is staged as what it leaves behind: a queue
item at the vendor, its id in job state, the unit `running` with no lease.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests.conftest import CANARY_TOKEN
from tests.helpers import publish_sourcing, sample_records
from workers import keys
from workers.jobs import JobStore
from workers.runner import Runner
from workers.targets.sourcing_data.client import SourcingDataClient

RECORDS = 1_000  # one queue item of two requests


@pytest.fixture(autouse=True)
def no_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Publishing sends no message: the test runs the unit itself."""
    from workers import app

    monkeypatch.setattr(app, "publish_unit", lambda *args: None)


def dead_attempt(
    redis_client: redis.Redis, client: SourcingDataClient, *, completed: bool, crashes: int
) -> tuple[str, str]:
    """Publish one unit and leave it as a worker would that died with its item open."""
    job_id = publish_sourcing(sample_records(RECORDS))
    unit_id = f"{job_id}:0"
    records = list(sample_records(RECORDS))
    item = client.start(records[:500], operation_id="op-test", incomplete=True)
    if completed:  # the last append landed; its answer died with the worker
        client.append(item.id, records[500:], incomplete=False)
    redis_client.hset(keys.unit(unit_id), mapping={
        "state": "running", "crashes": crashes, "attempts": crashes,
        "remote.queue_item_id": item.id, "remote.chunks_sent": "2" if completed else "1",
    })  # fmt: skip
    return job_id, unit_id


def runner() -> Runner:
    from workers import app

    return Runner(app.settings(), JobStore(app.redis_client()), lambda *args: None)


def test_a_poisoned_unit_cancels_the_item_its_dead_attempt_left_pending(
    sim: Any, redis_client: redis.Redis
) -> None:
    from workers import app

    client = SourcingDataClient.from_settings(app.settings(), 10)
    crashes = app.settings().max_crashes - 1  # the next claim sees one more: poisoned
    job_id, unit_id = dead_attempt(redis_client, client, completed=False, crashes=crashes)
    assert runner().run("sourcing_data", unit_id) == "failed"
    ledger = sim.ledger()
    assert ledger["items"]["Canceled"] == 1 and ledger["items"]["Pending"] == 0
    assert ledger["committed_records"] == 0
    job = JobStore(redis_client).get(job_id)
    assert job is not None and job.records_dead == RECORDS
    assert CANARY_TOKEN not in str(redis_client.lrange(keys.dead_letters(job_id), 0, 0))


def test_a_poisoned_unit_whose_item_committed_is_delivered_not_dead_lettered(
    sim: Any, redis_client: redis.Redis
) -> None:
    from workers import app

    client = SourcingDataClient.from_settings(app.settings(), 10)
    crashes = app.settings().max_crashes - 1
    job_id, unit_id = dead_attempt(redis_client, client, completed=True, crashes=crashes)
    assert runner().run("sourcing_data", unit_id) == "succeeded"
    assert sim.ledger()["committed_records"] == RECORDS
    job = JobStore(redis_client).get(job_id)
    assert job is not None and job.state == "succeeded" and job.records_dead == 0


def test_a_cancelled_job_cancels_the_item_its_dead_attempt_left_pending(
    sim: Any, redis_client: redis.Redis
) -> None:
    from workers import app

    client = SourcingDataClient.from_settings(app.settings(), 10)
    job_id, unit_id = dead_attempt(redis_client, client, completed=False, crashes=0)
    JobStore(redis_client).cancel(job_id, "operator")
    assert runner().run("sourcing_data", unit_id) == "cancelled"
    assert sim.ledger()["items"]["Canceled"] == 1
    assert sim.ledger()["committed_records"] == 0
