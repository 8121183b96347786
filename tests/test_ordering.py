"""Jobs on one order key run in publish order; finished or vanished jobs leave the line."""

from __future__ import annotations

import redis

from workers import keys, ordering
from workers.jobs import JobStore


def _job(store: JobStore, client: redis.Redis) -> str:
    job_id = store.create("sourcing_data", {})
    store.stage_unit(job_id, "sourcing_data", 0, [{"entityId": "E", "recordId": "1"}], 60_000)
    store.open(job_id)
    ordering.enqueue(client, "sourcing_data", "ds-1", job_id)
    return job_id


def _finish(client: redis.Redis, job_id: str) -> None:
    client.hset(keys.job(job_id), mapping={"units_done": 1, "records_delivered": 1})


def test_a_later_job_waits_for_the_earlier_one(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    first, second = _job(store, redis_client), _job(store, redis_client)
    assert ordering.my_turn(store, "sourcing_data", "ds-1", f"{first}:0")
    assert not ordering.my_turn(store, "sourcing_data", "ds-1", f"{second}:0")
    _finish(redis_client, first)
    assert ordering.my_turn(store, "sourcing_data", "ds-1", f"{second}:0")
    assert redis_client.lrange(keys.order("sourcing_data", "ds-1"), 0, -1) == [second.encode()]


def test_other_keys_and_unkeyed_jobs_do_not_wait(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    first, second = _job(store, redis_client), _job(store, redis_client)
    assert not ordering.my_turn(store, "sourcing_data", "ds-1", f"{second}:0")
    assert ordering.my_turn(store, "sourcing_data", "ds-2", f"{second}:0")
    assert ordering.my_turn(store, "sourcing_data", None, f"{second}:0")
    store.discard(first)  # a vanished job does not block the line forever
    assert ordering.my_turn(store, "sourcing_data", "ds-1", f"{second}:0")
