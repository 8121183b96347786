"""http_batch end to end: real Redis, real Celery worker processes, the simulator over HTTP.

Files are published through `importq publish` as JSON Lines; the workers read the
receiver's settings from the environment the simulator's client_env gives them.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from importq.cli import main
from tests.helpers import QUICK_PROBES, jsonl, publish_file, wait_for_job, wait_for_pause
from tests.test_workflow_import_e2e import dump

TARGET = "http_batch"
CANARY_SECRET = "canary-http-batch-secret-9d3f1a"


def events(count: int) -> list[dict[str, Any]]:
    return [{"eventId": f"ev-{n:06d}", "type": "purchase", "amount": n % 90 + 0.5}
            for n in range(count)]  # fmt: skip


def published(tmp_path: Path, count: int, *options: str) -> str:
    """`importq publish http_batch events.jsonl`; the job's id."""
    result = publish_file(tmp_path, TARGET, "events.jsonl", jsonl(*events(count)), "--json",
                          *options)  # fmt: skip
    assert result.exit_code == 0, result.output
    job_id: str = json.loads(result.output[result.output.index("{") :])["id"]
    return job_id


def dead_letters(job_id: str) -> list[dict[str, Any]]:
    shown = CliRunner().invoke(main, ["dlq", "show", job_id, "--json"])
    assert shown.exit_code == 0, shown.output
    letters: list[dict[str, Any]] = json.loads(shown.stdout)
    return letters


@pytest.fixture
def sim(fresh_simulators: dict[str, Any]) -> Any:
    """The receiver, reset, expecting CANARY_SECRET and keeping records by their eventId."""
    settings = {"auth_secret": CANARY_SECRET, "key_column": "eventId", "retry_after_seconds": 0}
    fresh_simulators[TARGET].configure(**settings)
    return fresh_simulators[TARGET]


@pytest.fixture
def worker(start_worker: Any) -> Any:
    """Starts a worker of this target that holds the secret the receiver expects."""
    return functools.partial(start_worker, TARGET, HTTP_BATCH_AUTH_SECRET=CANARY_SECRET)


def test_a_json_lines_file_lands_once_per_record_one_request_per_unit(
    tmp_path: Path, sim: Any, worker: Any
) -> None:
    worker(concurrency=2, HTTP_BATCH_FORMAT="jsonl")
    job = wait_for_job(published(tmp_path, 2000, "--param", "path=events/"))
    assert job.state == "succeeded", job
    assert (job.records_delivered, job.units_total) == (2000, 4)
    ledger = sim.ledger()
    assert (ledger["requests_taken"], ledger["records"], ledger["duplicates"]) == (4, 2000, 0)
    assert len(ledger["records_by_key"]) == 2000 and ledger["max_records_in_request"] == 500
    assert ledger["formats"] == {"json": 0, "jsonl": 4} and ledger["paths"] == {"events": 4}
    assert ledger["keys"] == [f"{job.id}:{n}" for n in range(4)]  # each unit's id is its key


@pytest.mark.parametrize("whole", [False, True], ids=["listed-in-a-2xx", "422-bisected"])
def test_a_record_the_receiver_refuses_is_dead_lettered_with_its_reason(
    tmp_path: Path, sim: Any, worker: Any, whole: bool
) -> None:
    sim.configure(refuse_values={"ev-000123"}, refuse_whole=whole)
    worker(concurrency=2)
    job = wait_for_job(published(tmp_path, 600))
    assert job.state == "partial", job
    assert (job.records_delivered, job.records_dead) == (599, 1)
    (letter,) = dead_letters(job.id)
    assert letter["record"]["eventId"] == "ev-000123"
    assert "Value eventId='ev-000123' is not accepted." in letter["reason"]
    ledger = sim.ledger()
    assert (ledger["records"], ledger["duplicates"]) == (599, 0)
    if whole:  # the core halved the unit of 500 nine times, until the record stood alone
        assert ledger["refused"] == {"422": 10} and ledger["requests_taken"] == 10
    else:  # listed in a 2xx answer: the receiver took the rest of the unit at once
        assert ledger["refused"] == {} and ledger["requests_taken"] == 2


@pytest.mark.parametrize("lost_answer", ["stall", "504"])
def test_a_post_whose_answer_was_lost_is_resent_and_taken_once(
    tmp_path: Path, sim: Any, worker: Any, lost_answer: str
) -> None:
    # The stalled answer outlasts the 5 s timeout many times over; every other POST of a
    # loaded machine is answered well within it.
    sim.configure(lose_next=1, lost_answer=lost_answer, stall_seconds=60)
    worker(concurrency=1, HTTP_BATCH_TIMEOUT="5")
    job = wait_for_job(published(tmp_path, 1000))
    assert job.state == "succeeded" and job.retries == 1, job
    ledger = sim.ledger()
    assert (ledger["lost_answers"], ledger["replays"], ledger["duplicates"]) == (1, 1, 0)
    assert (ledger["requests_taken"], ledger["records"]) == (2, 1000)


def test_a_refused_credential_pauses_the_target_and_never_leaves_the_process(
    tmp_path: Path, sim: Any, worker: Any, redis_client: redis.Redis
) -> None:
    started = worker(concurrency=1, **QUICK_PROBES)
    sim.configure(auth_secret="the-receiver-now-wants-another-secret")
    job_id = published(tmp_path, 700)
    assert "HTTP_BATCH_AUTH_SECRET was refused" in wait_for_pause(TARGET).reason
    sim.configure(auth_secret=CANARY_SECRET)  # the operator fixes the secret
    job = wait_for_job(job_id)
    assert job.state == "succeeded" and job.records_dead == 0, job
    assert sim.ledger()["refused"].keys() == {"401"}
    started.stop()
    log = started.log_path.read_bytes()
    assert b"401" in log  # the failure was logged, the secret was not
    assert CANARY_SECRET.encode() not in log
    assert CANARY_SECRET.encode() not in dump(redis_client)
