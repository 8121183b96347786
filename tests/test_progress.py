"""`importq status --wait` moves while a long unit runs (a Blue import is one unit)."""

from __future__ import annotations

import redis

from importq.progress import progress_line
from workers import keys
from workers.jobs import JobStore
from workers.targets.blue.importing import progress_fields


def test_running_units_count_their_reported_share(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    job_id = store.create("blue", {})
    first = store.stage_unit(job_id, "blue", 0, [{"ID": str(n)} for n in range(300)])
    second = store.stage_unit(job_id, "blue", 1, [{"ID": str(n)} for n in range(100)])
    redis_client.hset(keys.unit(first), mapping={"state": "running", "remote.percent": "50"})
    redis_client.hset(keys.unit(second), mapping={"state": "queued", "remote.percent": "90"})
    assert store.running_progress(job_id) == 150.0  # only running units count
    job = store.get(job_id)
    assert job is not None
    assert progress_line(job, store.running_progress(job_id)).startswith("[" + "#" * 11 + " ")


def test_blue_progress_status_maps_to_the_second_half_of_the_bar() -> None:
    assert progress_fields(-4) == {"progress": "-4"}  # registered / cancelled: no share
    assert progress_fields(0)["percent"] == "50"  # pushing was the first half
    assert progress_fields(60)["percent"] == "80"
    assert progress_fields(100)["percent"] == "100"
