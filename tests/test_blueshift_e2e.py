"""Blueshift end to end: real Redis, real Celery workers, the simulator over HTTP, moto's S3."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import redis
from click.testing import CliRunner
from moto.server import ThreadedMotoServer

from importq.cli import main
from producers.publish import locate
from producers.publish import publish as publish_job
from tests.conftest import free_port
from tests.helpers import wait_for_job, wait_for_pause
from tests.test_sourcing_data_e2e import _dump as redis_dump
from workers import keys

UUID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
CANARY_KEY = "canary-blueshift-key-5d2e8a"
CANARY_AWS_SECRET = "canary-aws-secret-91c4f7"
BUCKET = "importq-blueshift-test"
FAKE_AWS = {"aws_access_key_id": "fake-access-key-id", "region_name": "us-east-1"}
WORKER_ENV = {"BLUESHIFT_API_KEY": CANARY_KEY, "BLUESHIFT_405_RETRY_SECONDS": "0.2"}
CAUSES = ("not Amazon S3", "not launched", "still processing an earlier run")
CUSTOMERS = [
    {"customer_id": "c-1", "email": "ann@example.com", "firstname": "Ann"},
    {"customer_id": "c-2", "email": "bo@example.com", "vip": True, "score": 4.5},
    {"customer_id": "c-3", "firstname": 'Cy, "the" third', "vip": False},
]


@pytest.fixture
def blueshift(fresh_simulators: dict[str, Any]) -> Any:
    sim = fresh_simulators["blueshift"]
    sim.configure(api_key=CANARY_KEY, imports={UUID: "launched"})
    return sim


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    """moto's S3 in server mode on 127.0.0.1, holding the test bucket."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    s3_client(url).create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


def s3_client(url: str) -> Any:
    return boto3.client("s3", endpoint_url=url, aws_secret_access_key="fake", **FAKE_AWS)


def s3_env(url: str, prefix: str) -> dict[str, str]:
    """A worker's S3 staging settings: moto's address and obviously fake credentials."""
    return {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": FAKE_AWS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": CANARY_AWS_SECRET, "AWS_DEFAULT_REGION": "us-east-1",
            "BLUESHIFT_S3_BUCKET": BUCKET, "BLUESHIFT_S3_PREFIX": prefix}  # fmt: skip


def start(start_worker: Any, concurrency: int = 2, **env: str) -> Any:
    return start_worker(queues="blueshift", concurrency=concurrency, **{**WORKER_ENV, **env})


def publish(records: list[dict[str, Any]] | None = None, uuid: str = UUID) -> str:
    from workers import app
    from workers.jobs import JobStore

    return publish_job("blueshift", None if records is None else locate(records), {"uuid": uuid},
                       settings=app.settings(), store=JobStore(app.redis_client()),
                       publish_unit=app.publish_unit)  # fmt: skip


def only_unit(job_id: str) -> dict[str, str]:
    from workers import app
    from workers.jobs import JobStore

    [(_, fields)] = list(JobStore(app.redis_client()).units(job_id))
    return fields


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def test_bare_trigger_from_the_command_line(blueshift: Any, start_worker: Any) -> None:
    start(start_worker)
    result = cli("publish", "blueshift", "--param", f"uuid={UUID}", "--wait", "--json")
    assert result.exit_code == 0, result.output
    job = json.loads(result.output[result.output.index("{") :])
    assert (job["state"], job["records_total"], job["units_total"]) == ("succeeded", 0, 1)
    assert blueshift.ledger()["accepted"] == {UUID: 1}
    assert "triggered_at=" in cli("status", job["id"], "--units").output


def test_import_still_processing_is_triggered_again_after_the_wait(
    blueshift: Any, start_worker: Any
) -> None:
    blueshift.configure(busy_triggers={UUID: 2})
    start(start_worker)
    job = wait_for_job(publish())
    ledger = blueshift.ledger()
    assert job.state == "succeeded" and job.retries == 2
    assert (ledger["triggers"], ledger["refused_405"], ledger["accepted"]) == (
        {UUID: 3}, {UUID: 2}, {UUID: 1})  # fmt: skip


def test_import_that_cannot_be_triggered_fails_with_the_three_causes(
    blueshift: Any, start_worker: Any
) -> None:
    blueshift.configure(imports={UUID: "not_launched"})
    start(start_worker)
    unit = only_unit(wait_for_job(publish()).id)
    assert blueshift.ledger()["refused_405"] == {UUID: 3}
    assert (unit["state"], unit["attempts"]) == ("failed", "3")
    assert "Action not supported" in unit["last_error"] and UUID in unit["last_error"]
    for cause in CAUSES:
        assert cause in unit["last_error"]


def test_a_failed_bare_trigger_fails_its_job(blueshift: Any) -> None:
    from importq.settings import load
    from workers import app
    from workers.jobs import JobStore
    from workers.runner import Runner

    blueshift.configure(imports={}, api_key=app.settings().get("BLUESHIFT_API_KEY"))
    store = JobStore(app.redis_client())
    job_id = publish_job("blueshift", None, {"uuid": UUID}, settings=app.settings(), store=store,
                         publish_unit=lambda *_: None)  # fmt: skip
    runner = Runner(load(dict(os.environ)), store, lambda *_: None)  # the core, in-process
    assert runner.run("blueshift", store.unit_ids(job_id)[0]) == "failed"
    assert wait_for_job(job_id).state == "failed"


def test_bad_key_and_unknown_import_fail_at_once_with_what_to_fix(
    blueshift: Any, start_worker: Any
) -> None:
    start(start_worker)
    blueshift.configure(imports={})
    unknown = only_unit(wait_for_job(publish()).id)
    blueshift.configure(imports={UUID: "launched"}, api_key="the-account-now-has-another-key")
    refused_job = publish()
    wait_for_pause("blueshift")  # a refused key pauses the target instead of failing the job
    refused = only_unit(refused_job)
    assert blueshift.ledger()["triggers"] == {UUID: 2}  # one attempt each: nothing retried
    assert (unknown["state"], refused["state"]) == ("failed", "waiting")
    assert "HTTP 404" in unknown["last_error"] and f"no customer import {UUID}" in unknown[
        "last_error"]  # fmt: skip
    assert "HTTP 401" in refused["last_error"]
    assert "BLUESHIFT_API_KEY was refused" in refused["last_error"]


def test_gateway_error_after_an_accepted_trigger_is_not_resent_while_the_import_runs(
    blueshift: Any, start_worker: Any
) -> None:
    # Blueshift accepted the trigger and runs the import; the gateway answered 502.
    blueshift.configure(lose_next=1, lost_answer="502", processing_seconds=600)
    start(start_worker)
    job = wait_for_job(publish())
    ledger = blueshift.ledger()
    assert ledger["accepted"] == {UUID: 1}  # never a second run
    assert ledger["triggers"] == {UUID: 2}  # one more trigger, which found it processing
    unit = only_unit(job.id)
    assert (job.state, unit["state"]) == ("failed", "failed")
    for phrase in ("502", "may have started the import", "does not trigger it again",
                   unit["remote.trigger_unknown_at"], f"import_show/{UUID}"):  # fmt: skip
        assert phrase in unit["last_error"]


@pytest.mark.parametrize("lost", ["502", "504"])
def test_trigger_sent_again_after_an_unknown_outcome_warns_that_the_import_may_run_twice(
    lost: str, blueshift: Any, start_worker: Any
) -> None:
    # The import finished before the next attempt: Blueshift accepts the trigger again.
    blueshift.configure(lose_next=1, lost_answer=lost)
    start(start_worker)
    job = wait_for_job(publish())
    ledger = blueshift.ledger()
    assert ledger["accepted"] == {UUID: 2}  # the documented double-trigger window
    assert (ledger["triggers"], ledger["lost_answers"]) == ({UUID: 2}, 1)
    unit = only_unit(job.id)
    assert job.state == "succeeded"
    warnings = json.loads(unit["warnings"])
    assert len(warnings) == 1 and f"HTTP {lost}" in warnings[0]
    assert "may have run twice" in warnings[0]


def test_rate_limit_is_waited_out_as_retry_after_says(blueshift: Any, start_worker: Any) -> None:
    blueshift.configure(answers={UUID: [429]}, retry_after_seconds=1)
    start(start_worker)
    job = wait_for_job(publish())
    ledger = blueshift.ledger()
    assert job.state == "succeeded"
    assert ledger["statuses"] == {"200": 1, "429": 1}
    assert ledger["early_triggers"] == {}  # no trigger came back before Retry-After passed


def test_one_trigger_per_import_at_a_time_across_processes(
    blueshift: Any, start_worker: Any
) -> None:
    blueshift.configure(latency_seconds=0.2)
    start(start_worker, concurrency=4)
    jobs = [wait_for_job(job_id) for job_id in [publish() for _ in range(4)]]
    ledger = blueshift.ledger()
    assert [job.state for job in jobs] == ["succeeded"] * 4
    assert ledger["accepted"] == {UUID: 4}
    assert ledger["max_concurrent"] == {UUID: 1}


def test_records_are_staged_as_csv_before_the_trigger(
    blueshift: Any, start_worker: Any, s3_url: str
) -> None:
    s3 = s3_client(s3_url)
    seen_at_trigger: list[dict[str, bytes]] = []
    blueshift.trigger_hooks.append(lambda uuid: seen_at_trigger.append(objects(s3, "staged/")))
    blueshift.configure(busy_triggers={UUID: 1})  # a 405 first: the retry must not stage twice
    start(start_worker, **s3_env(s3_url, "staged/"))
    job = wait_for_job(publish(CUSTOMERS))
    key = f"staged/{job.id}.csv"
    assert job.state == "succeeded" and job.records_delivered == 3
    assert only_unit(job.id)["remote.staged"] == f"s3://{BUCKET}/{key}"
    assert list(seen_at_trigger[0]) == [key]  # the file was in place when Blueshift was told
    rows = list(csv.reader(io.StringIO(seen_at_trigger[0][key].decode())))
    assert rows == [
        ["customer_id", "email", "firstname", "vip", "score"],
        ["c-1", "ann@example.com", "Ann", "", ""],
        ["c-2", "bo@example.com", "", "true", "4.5"],
        ["c-3", "", 'Cy, "the" third', "false", ""],
    ]
    assert blueshift.ledger()["triggers"] == {UUID: 2}


def test_a_large_file_goes_up_in_parts(blueshift: Any, start_worker: Any, s3_url: str) -> None:
    records = [{"customer_id": f"c-{n:07d}", "email": f"customer-{n:07d}@example.com",
                "segment": "returning-customer"} for n in range(90_000)]  # fmt: skip
    parts = {"BLUESHIFT_S3_MULTIPART_THRESHOLD": "1048576",
             "BLUESHIFT_S3_MULTIPART_CHUNKSIZE": "5242880"}  # fmt: skip
    start(start_worker, **parts, **s3_env(s3_url, "big"))
    job = wait_for_job(publish(records))
    head = s3_client(s3_url).head_object(Bucket=BUCKET, Key=f"big/{job.id}.csv")
    assert job.state == "succeeded"
    assert head["ContentLength"] > 5 * 1024 * 1024  # over S3's smallest part: at least 2 parts
    assert head["ETag"].strip('"').endswith("-2")  # a multipart upload of two parts
    body = s3_client(s3_url).get_object(Bucket=BUCKET, Key=f"big/{job.id}.csv")["Body"].read()
    lines = body.decode().splitlines()
    assert len(lines) == 90_001 and lines[-1].startswith("c-0089999,")


def test_api_key_and_aws_secret_never_leave_the_worker(
    blueshift: Any, start_worker: Any, s3_url: str, redis_client: redis.Redis
) -> None:
    blueshift.configure(api_key="the-account-now-has-another-key")
    worker = start(start_worker, **s3_env(s3_url, "canary"))
    job_id = publish(CUSTOMERS)
    # Staged, then 401: the target pauses with the reason; nothing is dead-lettered.
    assert "BLUESHIFT_API_KEY was refused" in wait_for_pause("blueshift").reason
    assert redis_client.llen(keys.dead_letters(job_id)) == 0
    worker.stop()
    log = worker.log_path.read_bytes()
    assert b"401" in log and b"records staged as CSV" in log  # the log did record both steps
    for canary in (CANARY_KEY, CANARY_AWS_SECRET):
        assert canary.encode() not in log
        assert canary.encode() not in redis_dump(redis_client)


def objects(s3: Any, prefix: str) -> dict[str, bytes]:
    """Every object under `prefix` with its content, as Blueshift would find them now."""
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}
