"""Replays and holds: a failed replace holds the jobs behind it; a replay happens once."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from importq.cli import main
from producers.replay import ReplayError, replay
from tests.helpers import publish_sourcing, sample_records, wait_for_job, wait_until
from tests.test_datasource_e2e import publish, rows, rows_of
from workers import keys
from workers.jobs import JobStore


@pytest.fixture
def ds(fresh_simulators: dict[str, Any]) -> Any:
    sim = fresh_simulators["datasource"]
    sim.configure(data_sources={"sports"})
    return sim


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def unit_error(job_id: str) -> str:
    from workers import app

    return JobStore(app.redis_client()).unit(f"{job_id}:0").get("last_error", "")


# --- Data Source: a failed replace holds later jobs on its data source ------------------------


def failed_replace_then_upsert(ds: Any, start_worker: Any) -> tuple[str, str]:
    """A replace that applies its Rows, then is refused on NewRows; an upsert behind it."""
    ds.configure(max_new_rows=1_000)  # the vendor now refuses the replace's 1,500 NewRows
    replace = publish("replace", "sports", rows(12_000))
    upsert = publish("upsert", "sports", rows(5, tag="v2"))
    start_worker(queues="datasource", concurrency=2)
    assert wait_for_job(replace).state == "failed"
    wait_until("the upsert to say it is held", lambda: "held: job" in unit_error(upsert))
    return replace, upsert


def test_a_failed_replace_holds_later_jobs_until_it_is_replayed(ds: Any, start_worker: Any) -> None:
    replace, upsert = failed_replace_then_upsert(ds, start_worker)
    assert f"importq dlq replay {replace}" in unit_error(upsert)
    assert len(rows_of(ds.ledger(), "sports")) == 10_000  # truncated, and left alone
    ds.configure(max_new_rows=1_500)  # fixed at the vendor
    replayed = cli("dlq", "replay", replace)
    assert replayed.exit_code == 0, replayed.output
    assert wait_for_job(upsert).state == "succeeded"
    final = rows_of(ds.ledger(), "sports")
    assert len(final) == 12_000  # the replay ran first, then the upsert on the full set
    assert sum(1 for row in final if row[1].endswith("v2")) == 5


def test_released_jobs_run_on_what_the_failed_replace_left(ds: Any, start_worker: Any) -> None:
    replace, upsert = failed_replace_then_upsert(ds, start_worker)
    released = cli("release", replace)
    assert released.exit_code == 0 and "released" in released.output
    assert wait_for_job(upsert).state == "succeeded"
    assert len(rows_of(ds.ledger(), "sports")) == 10_000  # the operator chose that
    assert cli("release", replace).exit_code != 0  # nothing held any more


# --- replay: once, with overrides, per job, target or all --------------------------------------


@pytest.fixture
def no_workers(monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis) -> None:
    from workers import app

    monkeypatch.setattr(app, "publish_unit", lambda *args: None)


def dead_lettered_job(client: redis.Redis, records: int = 3, operation: str = "op-1") -> str:
    """A sourcing_data job whose records were all refused for good."""
    job_id = publish_sourcing(sample_records(records), operation_id=operation)
    for record in sample_records(records):
        entry = {"record": record, "reason": "400: entity unknown", "unit": f"{job_id}:0",
                 "target": "sourcing_data", "attempts": 1, "at": 0}  # fmt: skip
        client.rpush(keys.dead_letters(job_id), json.dumps(entry))
    client.zadd(keys.DLQ_INDEX, {job_id: 1})
    return job_id


def test_two_replays_at_once_replay_the_records_once(
    no_workers: None, redis_client: redis.Redis
) -> None:
    from workers import app

    job_id = dead_lettered_job(redis_client, records=2_000)
    outcomes: list[object] = []
    start = threading.Barrier(2)

    def replay_it() -> None:
        start.wait()
        store = JobStore(app.redis_client())
        try:
            outcomes.append(replay(job_id, settings=app.settings(), store=store,
                                   publish_unit=app.publish_unit))  # fmt: skip
        except ReplayError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=replay_it) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(type(o).__name__ for o in outcomes) == ["ReplayError", "Replayed"]
    assert redis_client.zcard(keys.JOBS) == 2  # the original and one replay
    assert redis_client.llen(keys.dead_letters(job_id)) == 0


def test_a_replay_takes_param_overrides(no_workers: None, redis_client: redis.Redis) -> None:
    job_id = dead_lettered_job(redis_client, operation="op-wrong")
    result = cli("dlq", "replay", job_id, "--param", "operation_id=op-right")
    assert result.exit_code == 0, result.output
    new_job = result.output.split()[-1]
    job = JobStore(redis_client).get(new_job)
    assert job is not None and job.params["operation_id"] == "op-right"
    assert job.records_total == 3


def test_replay_by_target_and_all(no_workers: None, redis_client: redis.Redis) -> None:
    first, second = dead_lettered_job(redis_client), dead_lettered_job(redis_client)
    assert cli("dlq", "replay").exit_code != 0  # one of JOB_ID, --target, --all
    by_target = cli("dlq", "replay", "--target", "sourcing_data")
    assert by_target.exit_code == 0
    assert f"of {first} as job" in by_target.output and f"of {second} as job" in by_target.output
    assert cli("dlq", "replay", "--all").exit_code != 0  # nothing left to replay


def test_cancelling_a_finished_job_is_refused(no_workers: None, redis_client: redis.Redis) -> None:
    job_id = publish_sourcing(sample_records(3))
    redis_client.hset(keys.job(job_id), mapping={"units_done": 1, "records_delivered": 3})
    result = cli("cancel", job_id)
    assert result.exit_code != 0 and "already ended succeeded" in result.output
    job = JobStore(redis_client).get(job_id)
    assert job is not None and job.state == "succeeded"
