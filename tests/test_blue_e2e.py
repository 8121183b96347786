"""Blue end to end: real Redis, real Celery workers on the `blue` queue, the simulator over HTTP."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from importq.cli import main
from tests.helpers import wait_for_job, wait_for_pause, wait_until
from tests.test_sourcing_data_e2e import _dump
from workers import keys
from workers.jobs import JobStore

CANARY_KEY = "canary-blue-api-key-51c9e2"
# Short waits so crash recovery, deferrals and foreign-import checks happen within seconds.
BLUE_ENV = {"BLUE_FOREIGN_RETRY": "0.5", "BLUE_BUSY_RETRY": "0.2"}


def users(count: int, start: int = 0) -> Iterator[dict[str, Any]]:
    for n in range(start, start + count):
        yield {"USER_ID": f"u{n:05d}", "FIRST_NAME": f"First {n}", "LAST_NAME": f"Last {n}",
               "EMAIL": f"u{n:05d}@example.edu"}  # fmt: skip


def courses(count: int) -> Iterator[dict[str, Any]]:
    for n in range(count):
        yield {"COURSE_ID": f"c{n:05d}", "TITLE": f"Course {n}", "TERM": "2026A"}


def enrolments(count: int) -> Iterator[dict[str, Any]]:
    for n in range(count):
        yield {"COURSE_ID": f"c{n:05d}", "USER_ID": f"u{n:05d}", "ROLE": "Student"}


def publish_blue(records: Any, datasource: str = "Users", **options: Any) -> str:
    from producers.publish import locate, publish
    from workers import app

    return publish("blue", locate(records), {"datasource": datasource, **options},
                   settings=app.settings(), store=store(),
                   publish_unit=app.publish_unit)  # fmt: skip


def store() -> JobStore:
    from workers import app

    return JobStore(app.redis_client())


def unit_of(job_id: str) -> dict[str, str]:
    return store().unit(f"{job_id}:0")


@pytest.fixture
def blue(fresh_simulators: dict[str, Any]) -> Any:
    return fresh_simulators["blue"]


def test_three_workers_and_twenty_jobs_never_open_two_transactions(
    blue: Any, start_worker: Any
) -> None:
    blue.configure(prepare_seconds=0.05)
    for _ in range(3):
        start_worker(queues="blue", concurrency=1, **BLUE_ENV)
    jobs = [publish_blue(users(50, start=n * 50)) for n in range(20)]
    for job_id in jobs[:5]:  # redelivered messages: a second message for some units
        from workers import app

        app.publish_unit(f"{job_id}:0", "blue")
    finished = [wait_for_job(job_id, timeout=120) for job_id in jobs]
    ledger = blue.ledger()
    assert all(job.state == "succeeded" for job in finished)
    assert ledger["max_open"] == 1
    assert ledger["overlaps"] == 0  # no worker even tried while another import was open
    assert ledger["transactions"] == {"finalized": 20}
    assert ledger["committed_rows"] == 1000 and ledger["duplicates"] == 0


@pytest.mark.parametrize("phase", ["pushing", "preparing"])
def test_a_worker_killed_mid_import_is_redone_after_cancelling_its_transaction(
    blue: Any, start_worker: Any, phase: str
) -> None:
    blue.configure(latency_seconds=0.01, prepare_seconds=2.5 if phase == "preparing" else 0.05)
    first = start_worker(queues="blue", concurrency=1, BLUE_ROWS_PER_PUSH="100", **BLUE_ENV)
    job_id = publish_blue(users(1000))
    wait_until(f"the import to be {phase}", lambda: unit_of(job_id).get("remote.phase") == phase)
    if phase == "pushing":
        pushes = lambda: blue.ledger()["requests"].get("PushObjectDataV2", 0)  # noqa: E731
        wait_until("a few pushes", lambda: pushes() >= 3)
    dead = int(unit_of(job_id)["remote.transaction_id"])
    first.kill()
    start_worker(queues="blue", concurrency=1, **BLUE_ENV)
    job = wait_for_job(job_id, timeout=90)
    ledger = blue.ledger()
    assert job.state == "succeeded" and job.crashes >= 1
    states = {t["id"]: t["state"] for t in ledger["timeline"]}
    assert states[dead] == "cancelled"  # the redo cancelled the dead attempt's transaction
    assert list(states.values()).count("finalized") == 1
    assert ledger["committed_rows"] == 1000 and ledger["duplicates"] == 0
    assert ledger["busy_refusals"] == 0


def test_a_foreign_import_is_not_touched_and_the_job_says_it_waits(
    blue: Any, start_worker: Any
) -> None:
    foreign = blue.open_foreign("Data2")
    worker = start_worker(queues="blue", concurrency=1, **BLUE_ENV)
    job_id = publish_blue(users(10))
    said = wait_until("the job to report the foreign import",
                      lambda: "foreign import" in unit_of(job_id).get("last_error", "") and
                      unit_of(job_id)["last_error"])  # fmt: skip
    assert f"transaction {foreign}, progress -4" in said
    status = CliRunner().invoke(main, ["status", job_id, "--units"])
    assert status.exit_code == 3 and "foreign import is open" in status.output
    time.sleep(0.6)  # it keeps waiting, and keeps its hands off
    assert blue.ledger()["foreign_cancelled"] == []
    blue.end_foreign(foreign)  # the person who started it finishes it
    job = wait_for_job(job_id, timeout=30)
    assert job.state == "succeeded" and blue.ledger()["committed"] == {"Data1": 10}
    worker.stop()
    assert str(foreign).encode() in worker.log_path.read_bytes()  # the log names it too


def test_refusals_carry_blues_message_and_the_key_never_leaks(
    blue: Any, start_worker: Any, redis_client: redis.Redis
) -> None:
    blue.configure(api_key=CANARY_KEY, max_id_length=8)
    worker = start_worker(queues="blue", concurrency=1, BLUE_API_KEY=CANARY_KEY, **BLUE_ENV)
    mismatch = publish_blue([{"USER_ID": "u1", "FIRST_NAME": "A", "LAST_NAME": "B"}])
    unknown = publish_blue(users(2), datasource="Alumni")
    too_long = ({"USER_ID": f"long-user-{n}", "FIRST_NAME": "A", "LAST_NAME": "B", "EMAIL": "e"}
                for n in range(3))  # fmt: skip
    empty = publish_blue(too_long)  # Blue skips every row, then refuses the empty table
    expected = {
        mismatch: "Missing value on EMAIL field",
        unknown: "datasource does not exist",
        empty: "Operation is aborted because the imported data table is empty",
    }
    for job_id, phrase in expected.items():
        job = wait_for_job(job_id, timeout=30)
        assert job.state == "failed", (job, unit_of(job_id))
        assert phrase in unit_of(job_id)["last_error"]
        letters = json.loads(_cli("dlq", "show", job_id, "--json", "--limit", "1").stdout)
        assert phrase in letters[0]["reason"]
    assert blue.ledger()["transactions"] == {"failed": 1}  # only the empty one registered
    blue.configure(api_key="the-key-was-rotated")
    refused = publish_blue(users(2))
    pause = wait_for_pause("blue")  # a refused key pauses the target: nothing dead-lettered
    assert "INVALID_APIKEY" in pause.reason
    assert "INVALID_APIKEY" in unit_of(refused)["last_error"]
    assert redis_client.llen(keys.dead_letters(refused)) == 0
    worker.stop()
    log = worker.log_path.read_bytes()
    assert b"INVALID_APIKEY" in log  # the log did record the failure
    assert CANARY_KEY.encode() not in log
    assert CANARY_KEY.encode() not in _dump(redis_client)  # job state, task args, dead letters


def test_the_producer_refuses_ids_blue_would_skip(
    tmp_path: Path, blue: Any, redis_client: redis.Redis
) -> None:
    rows = [{"USER_ID": "u1", "FIRST_NAME": "A", "LAST_NAME": "B", "EMAIL": "e"},
            {"USER_ID": "o'hara", "FIRST_NAME": "A", "LAST_NAME": "B", "EMAIL": "e"}]  # fmt: skip
    path = tmp_path / "users.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = _cli("publish", "blue", str(path), "--param", "datasource=Users")
    assert result.exit_code == 1
    assert 'users.jsonl:2: USER_ID: ID "o\'hara" contains an apostrophe' in result.output
    unknown = _cli("publish", "blue", str(path), "--param", "datasource=Alumni")
    assert unknown.exit_code == 1 and "datasource does not exist" in unknown.output
    assert redis_client.keys("importq:*") == [] and redis_client.llen("blue") == 0
    assert blue.ledger()["requests"].get("RegisterImport") is None


def test_the_producer_refuses_columns_the_data_block_would_refuse(
    tmp_path: Path, blue: Any, redis_client: redis.Redis
) -> None:
    path = tmp_path / "users.jsonl"
    path.write_text(json.dumps({"USER_ID": "u1", "FIRST_NAME": "A", "LAST_NAME": "B",
                                "MAIL": "e"}) + "\n")  # fmt: skip
    result = _cli("publish", "blue", str(path), "--param", "datasource=Users")
    assert result.exit_code == 1
    assert "users.jsonl:1: the columns do not match data block 'Users'" in result.output
    assert "missing EMAIL; not in the block MAIL" in result.output
    assert redis_client.keys("importq:*") == [] and redis_client.llen("blue") == 0
    assert blue.ledger()["requests"].get("RegisterImport") is None
    blue.configure(report_columns=False)  # a Blue that does not say: the first push checks
    assert _cli("publish", "blue", str(path), "--param", "datasource=Users").exit_code == 0


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def test_a_worker_stopped_during_prepare_finalizes_before_it_goes(
    blue: Any, start_worker: Any
) -> None:
    """A prepared transaction is never handed back: the next attempt would cancel it and
    prepare again (20-45 minutes on a real instance)."""
    blue.configure(prepare_seconds=2.0)
    stopping = start_worker(queues="blue", concurrency=1, **BLUE_ENV)
    job_id = publish_blue(users(30))
    wait_until("the import to prepare", lambda: blue.ledger()["transactions"].get("preparing"))
    os.kill(stopping.process.pid, signal.SIGTERM)  # a warm shutdown, as `docker stop` sends
    stopping.process.wait(timeout=60)
    start_worker(queues="blue", concurrency=1, **BLUE_ENV)  # would carry on a handed-back unit
    job = wait_for_job(job_id, timeout=60)
    ledger = blue.ledger()
    assert job.state == "succeeded", unit_of(job_id)
    assert ledger["transactions"] == {"finalized": 1}  # nothing cancelled, nothing redone
    assert ledger["requests"]["RegisterImport"] == 1
    assert ledger["requests"]["PrepareDataToFinzalizeImportV2"] == 1
    assert ledger["committed_rows"] == 30 and ledger["duplicates"] == 0


def test_workers_naming_one_instance_differently_share_it_as_importq(
    blue: Any, start_worker: Any
) -> None:
    """localhost and 127.0.0.1, a trailing slash, the host's case: one instance, one slot,
    and never "a foreign import" for another importq worker's transaction."""
    from tests.conftest import SIM_PORTS

    port = SIM_PORTS["blue"]
    blue.configure(prepare_seconds=0.5)
    spellings = [f"http://127.0.0.1:{port}/BlueWebService.svc",
                 f"http://LOCALHOST:{port}/BlueWebService.svc/"]  # fmt: skip
    for spelling in spellings:  # a foreign wait would last longer than this test
        start_worker(queues="blue", concurrency=1, BLUE_ENDPOINT_URL=spelling,
                     BLUE_FOREIGN_RETRY="300", BLUE_BUSY_RETRY="0.2")  # fmt: skip
    jobs = [publish_blue(users(20, start=20 * n)) for n in range(4)]

    def settled() -> bool:
        errors = [unit_of(job_id).get("last_error", "") for job_id in jobs]
        foreign = [e for e in errors if "foreign" in e]
        assert not foreign, foreign  # an importq transaction taken for someone else's
        return all(store().get(job_id).finished for job_id in jobs)  # type: ignore[union-attr]

    wait_until("every job to finish", settled, timeout=90)
    ledger = blue.ledger()
    assert all(wait_for_job(job_id).state == "succeeded" for job_id in jobs)
    assert ledger["transactions"] == {"finalized": 4}
    assert (ledger["max_open"], ledger["overlaps"]) == (1, 0)  # one slot for both spellings
