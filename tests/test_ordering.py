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
    assert ordering.blocked(store, "sourcing_data", "ds-1", f"{first}:0") is None
    assert ordering.blocked(store, "sourcing_data", "ds-1", f"{second}:0") == "turn"
    _finish(redis_client, first)
    assert ordering.blocked(store, "sourcing_data", "ds-1", f"{second}:0") is None
    assert redis_client.lrange(keys.order("sourcing_data", "ds-1"), 0, -1) == [second.encode()]


def test_other_keys_and_unkeyed_jobs_do_not_wait(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    first, second = _job(store, redis_client), _job(store, redis_client)
    assert ordering.blocked(store, "sourcing_data", "ds-1", f"{second}:0") == "turn"
    assert ordering.blocked(store, "sourcing_data", "ds-2", f"{second}:0") is None
    assert ordering.blocked(store, "sourcing_data", None, f"{second}:0") is None
    store.discard(first)  # a vanished job does not block the line forever
    assert ordering.blocked(store, "sourcing_data", "ds-1", f"{second}:0") is None


def _datasource_job(store: JobStore, mode: str) -> str:
    params = {"mode": mode, "external_id": "sports"}
    job_id = store.create("datasource", params)
    store.stage_unit(job_id, "datasource", 0, [{"Vals": ["a", "b"]}])
    store.open(job_id)
    ordering.enqueue(store.redis, "datasource", "sports", job_id)
    return job_id


def test_a_failed_replace_holds_the_line_even_before_its_worker_says_so(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    replace, upsert = _datasource_job(store, "replace"), _datasource_job(store, "upsert")
    # The replace's unit just failed; its worker has not run the job-finished hook yet.
    redis_client.hset(keys.job(replace), mapping={"units_done": 1, "units_failed": 1,
                                                  "records_dead": 1})  # fmt: skip
    redis_client.hset(keys.unit(f"{replace}:0"), "last_error", "NewRows refused")
    why = ordering.blocked(store, "datasource", "sports", f"{upsert}:0")
    assert why is not None and f"job {replace} failed" in why and "NewRows refused" in why
    # Its replay goes first in line, takes the failed job's place and lifts the hold.
    replay = store.create("datasource", {"mode": "replace", "external_id": "sports"})
    ordering.enqueue(redis_client, "datasource", "sports", replay, first=True)
    assert redis_client.lrange(keys.order("datasource", "sports"), 0, -1) == [
        replay.encode(), upsert.encode()]  # fmt: skip
    assert ordering.blocked(store, "datasource", "sports", f"{upsert}:0") == "turn"
    assert ordering.blocked(store, "datasource", "sports", f"{replay}:0") is None
