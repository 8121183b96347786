"""Workflow Import end to end: real Redis, real Celery worker processes, the simulator over HTTP."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from importq.cli import main
from simulators.workflow_import import DEMO_CREATION_PATH
from tests.helpers import QUICK_PROBES, wait_for_job, wait_for_pause, wait_until

CANARY_KEY = "canary-workflow-key-7b2e44"
QUEUE = "workflow_import"
SEARCH = f"IMPORT_QUEUE_API:{DEMO_CREATION_PATH}"  # conftest exports the simulator's client_env


def people(count: int, first: int = 0) -> list[dict[str, Any]]:
    return [{"EmployeeId": f"E{n:06d}", "Name": f"Person {n}", "FullTime": n % 2 == 0}
            for n in range(first, first + count)]  # fmt: skip


def publish(records: list[dict[str, Any]], **params: str) -> str:
    from producers.publish import locate
    from producers.publish import publish as publish_job
    from workers import app
    from workers.jobs import JobStore

    store = JobStore(app.redis_client())
    return publish_job(
        QUEUE, locate(records), params, settings=app.settings(), store=store,
        publish_unit=app.publish_unit,
    )  # fmt: skip


def units(job_id: str) -> dict[str, dict[str, str]]:
    from workers import app
    from workers.jobs import JobStore

    return dict(JobStore(app.redis_client()).units(job_id))


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def sim(fresh_simulators: dict[str, Any]) -> Any:
    simulator = fresh_simulators[QUEUE]
    simulator.configure(api_key=CANARY_KEY, key_column="EmployeeId", retry_after_seconds=0)
    return simulator


@pytest.fixture
def worker(start_worker: Any) -> Any:
    def start(concurrency: int = 2, **env: str) -> Any:
        return start_worker(QUEUE, concurrency, WORKFLOW_IMPORT_API_KEY=CANARY_KEY, **env)

    return start


def test_five_thousand_records_land_once_each_in_batches_listed_by_status(
    sim: Any, worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers import app

    env = {**app.settings().env, "WORKFLOW_IMPORT_QUERY_PARAMS": "importType"}
    changed = dataclasses.replace(app.settings(), env=env)
    monkeypatch.setattr(app, "settings", lambda: changed)
    started = worker(concurrency=4)
    job = wait_for_job(publish(people(5000), importType="Onboarding"))
    assert job.state == "succeeded", job
    ledger = sim.ledger()
    assert (ledger["batches"], ledger["records"], ledger["duplicates"]) == (5, 5000, 0)
    assert len(ledger["records_by_key"]) == 5000
    assert ledger["max_records_in_batch"] == 1000
    assert {(b["creation_path"], b["records"]) for b in ledger["batch_list"]} == {
        (DEMO_CREATION_PATH, 1000)
    }
    assert all(b["params"] == {"importType": "Onboarding"} for b in ledger["batch_list"])

    shown = cli("status", job.id, "--units")
    assert shown.exit_code == 0, shown.output
    for batch in ledger["batch_list"]:
        batch_id = batch["queue_batch_id"]
        assert f"queue_batch_id={batch_id}" in shown.output
        assert f"WorkflowImportQueue?batchId={batch_id}" in shown.output  # the details link

    from workers import app

    for unit_id in units(job.id):
        app.publish_unit(unit_id, QUEUE)  # a second message for every finished unit
    deadline = time.monotonic() + 30
    while started.log_path.read_text().count("message acknowledged without running") < 5:
        assert time.monotonic() < deadline, "the duplicate messages were never consumed"
        time.sleep(0.1)
    assert sim.ledger()["batches"] == 5


def test_lost_answer_is_held_for_review_and_never_posted_twice(sim: Any, worker: Any) -> None:
    sim.configure(lose_next=1)  # the first batch is created, then its answer is a 504
    worker(concurrency=1)
    job = wait_for_job(publish(people(2000)))
    assert job.state == "partial", job
    assert (job.records_delivered, job.records_dead) == (1000, 1000)
    ledger = sim.ledger()
    assert (ledger["batches"], ledger["lost_answers"], ledger["duplicates"]) == (2, 1, 0)

    held = [u for u in units(job.id).values() if u.get("remote.possible_duplicate")]
    assert len(held) == 1
    note = held[0]["remote.possible_duplicate"]
    assert SEARCH in note and held[0]["remote.post_started_at"] in note
    shown = cli("status", job.id, "--units")
    assert "possible_duplicate=possible duplicate batch" in shown.output
    assert shown.exit_code == 2
    letters = json.loads(cli("dlq", "show", job.id, "--json", "--limit", "1").stdout)
    assert SEARCH in letters[0]["reason"]
    assert f"importq dlq replay {job.id}" in letters[0]["reason"]


def test_bad_gateway_after_the_batch_was_created_is_held_for_review_not_resent(
    sim: Any, worker: Any
) -> None:
    # A gateway answers 502 after the application queued the batch: like a timeout.
    sim.configure(lose_next=1, lost_answer="502")
    worker(concurrency=1)
    job = wait_for_job(publish(people(2000)))
    ledger = sim.ledger()
    assert (ledger["batches"], ledger["lost_answers"], ledger["duplicates"]) == (2, 1, 0)
    assert job.state == "partial", job
    assert (job.records_delivered, job.records_dead) == (1000, 1000)
    held = [u for u in units(job.id).values() if u.get("remote.possible_duplicate")]
    assert len(held) == 1 and SEARCH in held[0]["remote.possible_duplicate"]


def test_timed_out_post_is_posted_again_when_repost_is_on(sim: Any, worker: Any) -> None:
    # The stalled answer outlasts the timeout many times over, and the timeout is long
    # enough for every other POST on a loaded machine: only the stalled one times out.
    sim.configure(lose_next=1, lost_answer="stall", stall_seconds=60)
    worker(concurrency=1, WORKFLOW_IMPORT_REPOST_UNKNOWN="true", WORKFLOW_IMPORT_TIMEOUT="5")
    job = wait_for_job(publish(people(2000)))
    assert job.state == "succeeded", job
    ledger = sim.ledger()
    # As asked: the batch whose answer timed out exists twice.
    assert (ledger["batches"], ledger["lost_answers"], ledger["duplicates"]) == (3, 1, 1000)
    reposted = [u for u in units(job.id).values() if u.get("remote.reposted_after")]
    assert len(reposted) == 1 and reposted[0]["remote.queue_batch_id"]


def test_503_is_resent_and_exhausted_resends_retry_the_unit_without_a_false_alarm(
    sim: Any, worker: Any
) -> None:
    worker(concurrency=1)
    sim.configure(fail_next=1)
    job = wait_for_job(publish(people(500)))
    assert job.state == "succeeded" and job.retries == 0
    assert (sim.ledger()["requests"], sim.ledger()["batches"]) == (2, 1)

    sim.configure(fail_next=5)  # every in-place resend of the first attempt gets a 503
    job = wait_for_job(publish(people(500, first=500)))
    assert job.state == "succeeded" and job.retries == 1, job
    (unit,) = units(job.id).values()
    assert "remote.possible_duplicate" not in unit and unit["remote.queue_batch_id"]
    assert (sim.ledger()["batches"], sim.ledger()["duplicates"]) == (2, 0)


def test_refused_record_is_isolated_and_the_rest_imported(sim: Any, worker: Any) -> None:
    sim.configure(poison_values={"E000123"})
    worker(concurrency=4)
    job = wait_for_job(publish(people(1000)))
    assert job.state == "partial"
    assert (job.records_delivered, job.records_dead) == (999, 1)
    letters = json.loads(cli("dlq", "show", job.id, "--json").output)
    assert [entry["record"]["EmployeeId"] for entry in letters] == ["E000123"]
    assert "value 'E000123' of column 'EmployeeId' is not valid" in letters[0]["reason"]
    ledger = sim.ledger()
    assert (ledger["records"], ledger["duplicates"]) == (999, 0)


def test_refused_key_names_the_permission_and_the_key_never_leaves_the_process(
    sim: Any, worker: Any, redis_client: redis.Redis
) -> None:
    started = worker(concurrency=2, **QUICK_PROBES)
    sim.configure(api_key="the-vendor-now-wants-another-key")
    job_id = publish(people(1500))
    # Refused credentials pause the target (nothing dead-lettered) until they work again.
    assert "WORKFLOW_IMPORT_API_KEY was refused" in wait_for_pause(QUEUE).reason
    sim.configure(api_key=CANARY_KEY, keys_without_permission={CANARY_KEY})
    missing_permission = "lacks the BeginWorkflowImportProcess"
    wait_until("the pause to name the permission",
               lambda: missing_permission in wait_for_pause(QUEUE).reason)  # fmt: skip
    sim.configure(keys_without_permission=set())  # the permission is granted
    job = wait_for_job(job_id)
    assert job.state == "succeeded" and job.records_dead == 0
    assert sim.ledger()["refused"].keys() == {"401", "403"}
    started.stop()
    log = started.log_path.read_bytes()
    assert b"401" in log and b"403" in log  # the log did record the failures
    assert CANARY_KEY.encode() not in log
    assert CANARY_KEY.encode() not in dump(redis_client)


def dump(client: redis.Redis) -> bytes:
    """Every value in Redis: job state, dead letters, Celery messages and kombu's unacked."""
    readers = {
        b"string": lambda key: [client.get(key) or b""],
        b"hash": lambda key: [v for pair in client.hgetall(key).items() for v in pair],
        b"list": lambda key: client.lrange(key, 0, -1),
        b"zset": lambda key: client.zrange(key, 0, -1),
        b"set": lambda key: list(client.smembers(key)),
    }
    values: list[bytes] = []
    for key in client.scan_iter():
        values += [key, *readers.get(client.type(key), lambda key: [])(key)]
    return b"\n".join(values)
