"""`importq jobs`: filtered by state, target and age; start, end, duration and records/s."""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from click.testing import CliRunner

from importq.cli import main
from importq.errors import FinalError
from tests.helpers import publish_sourcing, sample_records
from tests.scripted import TARGET, MakeRunner, ScriptedSink, staged_unit
from workers import keys
from workers.jobs import JobStore


def listed(*args: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(main, ["jobs", "--json", *args])
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def backdate(redis_client: redis.Redis, job_id: str, seconds: float) -> None:
    created = time.time() - seconds
    redis_client.zadd(keys.JOBS, {job_id: created})
    redis_client.hset(keys.job(job_id), "created_at", created)


def test_jobs_filter_by_state_target_and_since(
    sink: ScriptedSink, make_runner: MakeRunner, redis_client: redis.Redis
) -> None:
    runner, store = make_runner()
    succeeded = staged_unit(store)
    runner.run(TARGET, succeeded)
    sink.error = FinalError("422: refused", target=TARGET)
    failed = staged_unit(store)
    runner.run(TARGET, failed)
    queued = publish_sourcing(sample_records(10))  # no worker: it stays queued
    old = keys.job_of(succeeded)
    backdate(redis_client, old, 3 * 3600)

    def ids(*args: str) -> set[str]:
        return {row["id"] for row in listed(*args)}

    assert ids("--state", "succeeded") == {old}
    assert ids("--state", "failed", "--state", "queued") == {keys.job_of(failed), queued}
    assert ids("--target", "sourcing_data") == {queued}
    assert ids("--since", "2h") == {keys.job_of(failed), queued}
    assert ids("--since", "90m", "--target", TARGET) == {keys.job_of(failed)}
    an_hour_ago = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - 3600))
    assert ids("--since", an_hour_ago) == {keys.job_of(failed), queued}
    assert len(listed("--limit", "2")) == 2


def test_jobs_show_start_end_duration_and_records_per_second(
    sink: ScriptedSink, make_runner: MakeRunner, redis_client: redis.Redis
) -> None:
    runner, store = make_runner()
    unit_id = staged_unit(store, count=50)
    runner.run(TARGET, unit_id)
    job_id = keys.job_of(unit_id)
    started = (time.time() - 100) * 1000
    redis_client.hset(keys.job(job_id), mapping={"started_at": started,
                                                 "finished_at": started + 25_000})  # fmt: skip
    row = listed()[0]
    assert row["id"] == job_id and row["state"] == "succeeded"
    assert row["duration_seconds"] == 25.0 and row["records_per_second"] == 2.0
    assert row["finished_at"] - row["started_at"] == 25.0
    text = CliRunner().invoke(main, ["jobs"]).stdout.splitlines()
    assert text[0].split()[:8] == ["JOB", "TARGET", "STATE", "START", "END", "DURATION",
                                   "REC/S", "DELIVERED"]  # fmt: skip
    line = next(x for x in text if x.startswith(job_id))
    start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started / 1000))
    end = time.strftime("%H:%M:%S", time.localtime(started / 1000 + 25))
    assert f"{start} {end}" in " ".join(line.split())
    assert line.split()[6:9] == ["25.0s", "2", "50/50,"]
    queued = publish_sourcing(sample_records(10))
    waiting = next(x for x in CliRunner().invoke(main, ["jobs"]).stdout.splitlines()
                   if x.startswith(queued))  # fmt: skip
    assert waiting.split()[2:6] == ["queued", "-", "-", "-"]


def test_jobs_refuse_a_bad_since_or_an_unknown_target() -> None:
    bad_since = CliRunner().invoke(main, ["jobs", "--since", "yesterday"])
    assert bad_since.exit_code == 2 and "neither a duration (90s, 30m, 2h, 7d)" in bad_since.output
    unknown = CliRunner().invoke(main, ["jobs", "--target", "salesforce"])
    assert unknown.exit_code == 2 and "no target 'salesforce'" in unknown.output


def test_a_running_job_counts_its_duration_to_now(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    job_id = publish_sourcing(sample_records(10))
    redis_client.hset(keys.job(job_id), "started_at", (time.time() - 10) * 1000)
    job = store.get(job_id)
    assert job is not None and job.state == "running"
    assert 9.5 < (job.duration() or 0) < 30 and job.records_per_second() == 0.0
