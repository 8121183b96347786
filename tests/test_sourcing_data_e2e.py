"""SourcingData end to end: real Redis, real Celery worker processes, the simulator over HTTP."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from importq.cli import main
from tests.conftest import CANARY_TOKEN
from tests.helpers import (
    QUICK_PROBES,
    publish_sourcing,
    sample_records,
    wait_for_job,
    wait_for_pause,
    wait_until,
)
from workers import keys


def test_twenty_thousand_records_each_committed_once_within_limits(
    sim: Any, start_worker: Any, redis_client: redis.Redis
) -> None:
    start_worker(concurrency=4)
    job_id = publish_sourcing(sample_records(20_000))
    job = wait_for_job(job_id)
    ledger = sim.ledger()
    assert job.state == "succeeded", job
    assert job.records_delivered == 20_000
    assert ledger["committed_records"] == 20_000
    assert len(ledger["commits"]) == 20_000
    assert ledger["duplicates"] == 0
    assert ledger["max_records_in_request"] <= 500
    assert ledger["max_records_in_item"] <= 4000
    # The finished state expires: the TTL is set just after the finish, by the same worker.
    ttl = wait_until("the job's TTL", lambda: max(0, redis_client.ttl(keys.job(job_id))))
    assert ttl <= 14 * 86400


def test_faults_with_retry_after_deliver_everything_once(sim: Any, start_worker: Any) -> None:
    sim.configure(fault_rate=0.2, retry_after_seconds=1, seed=7)
    # Enough 5xx in a row trip the breaker now and then: its probe comes in 0.3 s, not 30 s.
    start_worker(concurrency=4, **QUICK_PROBES)
    job = wait_for_job(publish_sourcing(sample_records(10_000)), timeout=240)
    ledger = sim.ledger()
    assert ledger["faults"] > 10  # the faults really happened
    assert job.state == "succeeded", job
    assert ledger["committed_records"] == 10_000
    assert ledger["duplicates"] == 0


@pytest.mark.parametrize("lost", ["502", "504"])
def test_lost_answers_to_starts_leave_no_item_pending_and_no_sibling_cancelled(
    lost: str, sim: Any, start_worker: Any
) -> None:
    # Two starts are applied (a Pending item each) and a gateway error goes back instead;
    # five units of one operation run side by side, so the orphans sit among live items.
    sim.configure(lose_next={"start": 2}, lost_answer=lost, latency_seconds=0.01)
    start_worker(concurrency=4)
    job = wait_for_job(publish_sourcing(sample_records(20_000)))
    ledger = sim.ledger()
    assert ledger["lost_answers"] == 2
    assert job.state == "succeeded", job
    assert (ledger["committed_records"], ledger["duplicates"]) == (20_000, 0)
    # The two orphans were found and cancelled; nothing else was (no unit was split).
    assert ledger["items"] == {"Pending": 0, "Completed": 0, "Success": 5, "Failed": 0,
                               "Canceled": 2}  # fmt: skip
    assert job.units_total == 5


def test_lost_answer_to_a_start_without_an_operation_id_is_found_by_its_own_operation(
    sim: Any, start_worker: Any
) -> None:
    from producers.publish import locate, publish
    from workers import app
    from workers.jobs import JobStore

    sim.configure(lose_next={"start": 1}, lost_answer="504")
    start_worker(concurrency=2)
    job_id = publish("sourcing_data", locate(sample_records(6000)), {}, settings=app.settings(),
                     store=JobStore(app.redis_client()), publish_unit=app.publish_unit)  # fmt: skip
    job = wait_for_job(job_id)
    ledger = sim.ledger()
    assert job.state == "succeeded", job
    assert (ledger["committed_records"], ledger["duplicates"]) == (6000, 0)
    assert (ledger["items"]["Pending"], ledger["items"]["Canceled"]) == (0, 1)


def test_killed_worker_commits_nothing_twice(sim: Any, start_worker: Any) -> None:
    sim.configure(latency_seconds=0.15)
    first = start_worker(concurrency=2)
    job_id = publish_sourcing(sample_records(12_000))
    deadline = time.monotonic() + 60
    while sim.ledger()["requests_by_kind"]["append"] < 3:  # mid-item on both processes
        assert time.monotonic() < deadline, "the worker never got going"
        time.sleep(0.02)
    first.kill()
    assert sim.ledger()["committed_records"] < 12_000  # killed before the job was done
    start_worker(concurrency=2)
    job = wait_for_job(job_id, timeout=180)
    ledger = sim.ledger()
    assert job.state == "succeeded", job
    assert job.crashes >= 1  # the second worker took over units whose owner died
    assert ledger["committed_records"] == 12_000
    assert ledger["duplicates"] == 0
    assert ledger["items"]["Canceled"] >= 1  # the dead attempts' open items were cancelled


def test_poison_record_is_dead_lettered_and_replayed_after_the_fix(
    sim: Any, start_worker: Any, redis_client: redis.Redis
) -> None:
    sim.configure(poison_record_ids={"r-1234"})
    start_worker(concurrency=4)
    job = wait_for_job(publish_sourcing(sample_records(5_000)))
    assert job.state == "partial"
    assert (job.records_delivered, job.records_dead) == (4_999, 1)
    letters = json.loads(_cli("dlq", "show", job.id, "--json").stdout)
    assert [entry["record"]["recordId"] for entry in letters] == ["r-1234"]
    assert "doesn't fit to expected format" in letters[0]["reason"]
    assert _cli("status", job.id).exit_code == 2
    assert redis_client.ttl(keys.job(job.id)) == -1  # kept while it has dead letters

    sim.configure(poison_record_ids=set())
    replay = _cli("dlq", "replay", job.id)
    assert replay.exit_code == 0, replay.output
    replayed = wait_for_job(replay.output.split()[-1])
    assert replayed.state == "succeeded"
    ledger = sim.ledger()
    assert ledger["commits"]["ORG_DEPT/r-1234"] == 1
    assert ledger["committed_records"] == 5_000 and ledger["duplicates"] == 0
    assert "no dead letters" in _cli("dlq", "list").output
    assert redis_client.ttl(keys.job(job.id)) > 0  # replayed: now it may expire


def test_items_in_flight_per_operation_are_capped_across_processes(
    sim: Any, start_worker: Any
) -> None:
    sim.configure(latency_seconds=0.05)
    start_worker(concurrency=4, SOURCING_DATA_ITEMS_IN_FLIGHT="2")
    job = wait_for_job(publish_sourcing(sample_records(16_000)))
    assert job.state == "succeeded"
    assert sim.ledger()["max_open_items_per_operation"] == 2


def test_canary_token_never_leaves_the_process(
    sim: Any, start_worker: Any, redis_client: redis.Redis
) -> None:
    sim.configure(token="the-vendor-now-wants-another-token", fault_rate=0.3, seed=3)
    worker = start_worker(concurrency=2, **QUICK_PROBES)
    job_id = publish_sourcing(sample_records(1_200))
    # 401: the target pauses with the vendor's reason, nothing dead-lettered...
    assert "SOURCING_DATA_TOKEN was refused" in wait_for_pause("sourcing_data").reason
    assert redis_client.llen(keys.dead_letters(job_id)) == 0
    sim.configure(token=CANARY_TOKEN)  # ...and resumes once the token works again
    assert wait_for_job(job_id).state == "succeeded"
    worker.stop()
    assert CANARY_TOKEN.encode() not in worker.log_path.read_bytes()
    assert b"401" in worker.log_path.read_bytes()  # the log did record the failure
    assert CANARY_TOKEN.encode() not in _dump(redis_client)


def _dump(client: redis.Redis) -> bytes:
    """Every value in Redis: job state, dead letters, Celery messages and kombu's unacked."""
    out = []
    for key in client.scan_iter():
        kind = client.type(key)
        if kind == b"string":
            out.append(client.get(key) or b"")
        elif kind == b"hash":
            out += [v for pair in client.hgetall(key).items() for v in pair]
        elif kind == b"list":
            out += client.lrange(key, 0, -1)
        elif kind == b"zset":
            out += client.zrange(key, 0, -1)
        elif kind == b"set":
            out += list(client.smembers(key))
    return b"\n".join(out)


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def test_duplicate_messages_are_acknowledged_without_running(sim: Any, start_worker: Any) -> None:
    from workers import app
    from workers.jobs import JobStore

    worker = start_worker(concurrency=4)
    job_id = publish_sourcing(sample_records(8_000))
    for unit_id in JobStore(app.redis_client()).unit_ids(job_id):
        app.publish_unit(unit_id, "sourcing_data")  # a second message for every unit
    job = wait_for_job(job_id)
    assert job.state == "succeeded"
    ledger = sim.ledger()
    assert ledger["committed_records"] == 8_000 and ledger["duplicates"] == 0
    assert ledger["requests_by_kind"]["start"] == 2
    worker.stop()
    assert worker.log_path.read_text().count("message acknowledged without running") == 2
