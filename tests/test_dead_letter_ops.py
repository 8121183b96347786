"""Dead letters as an operator handles them: a failed trigger listed and replayed, `dlq show`
never cutting silently, and `dlq export` writing JSON Lines for a spreadsheet or a republish.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from importq.cli import main
from tests.helpers import publish_sourcing, sample_records, wait_for_job
from tests.test_blueshift_e2e import CANARY_KEY, UUID, WORKER_ENV
from tests.test_blueshift_e2e import publish as publish_trigger
from workers import keys
from workers.jobs import JobStore

EXPORTED = {"record", "reason", "unit", "target", "attempts", "at"}


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


# --- a failed record-less job: listed with its params, replayed as the same trigger -----------


def test_a_failed_bare_trigger_is_listed_with_its_params_and_replayed(
    fresh_simulators: dict[str, Any], start_worker: Any, redis_client: redis.Redis
) -> None:
    blueshift = fresh_simulators["blueshift"]
    blueshift.configure(api_key=CANARY_KEY, imports={})  # the import does not exist yet
    start_worker(queues="blueshift", concurrency=1, **WORKER_ENV)
    failed = wait_for_job(publish_trigger())
    assert (failed.state, failed.records_total, failed.records_dead) == ("failed", 0, 0)
    assert redis_client.ttl(keys.job(failed.id)) == -1  # kept, like any job with dead letters

    listed = cli("dlq", "list")
    assert f"{failed.id} blueshift: failed without records" in listed.output
    assert f'params: {{"uuid": "{UUID}"}}' in listed.output
    assert f"no customer import {UUID}" in listed.output
    [summary] = json.loads(cli("dlq", "list", "--json").stdout)
    assert (summary["job_id"], summary["params"], summary["count"], summary["records"]) == (
        failed.id, {"uuid": UUID}, 1, 0)  # fmt: skip
    assert "(no record: a trigger)" in cli("dlq", "show", failed.id).output

    blueshift.configure(imports={UUID: "launched"})  # the operator created the import
    replayed = cli("dlq", "replay", failed.id)
    assert replayed.exit_code == 0, replayed.output
    assert f"replayed the failed job {failed.id} (no records) as job" in replayed.output
    again = wait_for_job(replayed.stdout.split()[-1])
    assert (again.state, again.params, again.records_total) == ("succeeded", {"uuid": UUID}, 0)
    assert blueshift.ledger()["accepted"] == {UUID: 1}
    assert cli("dlq", "list").stdout.strip() == "no dead letters"


# --- dlq show and dlq export ---------------------------------------------------------------


@pytest.fixture
def no_workers(monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis) -> None:
    from workers import app

    monkeypatch.setattr(app, "publish_unit", lambda *args: None)


def dead_lettered(client: redis.Redis, count: int, ages: list[float] | None = None) -> str:
    """A sourcing_data job with `count` dead letters written `ages` seconds ago (default 0)."""
    job_id = publish_sourcing(sample_records(count))
    for number, record in enumerate(sample_records(count)):
        age = (ages or [0.0] * count)[number]
        entry = {"record": record, "reason": f"400: field Code refused ({number})",
                 "unit": f"{job_id}:0", "target": "sourcing_data", "attempts": 2,
                 "at": time.time() - age}  # fmt: skip
        client.rpush(keys.dead_letters(job_id), json.dumps(entry))
    client.zadd(keys.DLQ_INDEX, {job_id: time.time()})
    return job_id


def test_dlq_show_says_when_it_shows_only_part(no_workers: None, redis_client: redis.Redis) -> None:
    job_id = dead_lettered(redis_client, 25)
    shown = cli("dlq", "show", job_id)
    assert shown.output.count("\n    {") == 20  # the default limit
    assert f"showing 20 of 25 dead letters of {job_id}: --limit 0 shows all" in shown.output
    assert f"`importq dlq export {job_id}`" in shown.output

    everything = cli("dlq", "show", job_id, "--limit", "0")
    assert everything.output.count("\n    {") == 25 and "showing" not in everything.output

    as_json = CliRunner().invoke(main, ["dlq", "show", job_id, "--limit", "5", "--json"])
    assert len(json.loads(as_json.stdout)) == 5  # stdout stays JSON...
    assert "showing 5 of 25" in as_json.stderr  # ...and the notice goes to stderr


def test_dlq_export_writes_json_lines_and_says_how_many(
    no_workers: None, redis_client: redis.Redis, tmp_path: Path
) -> None:
    job_id = dead_lettered(redis_client, 30)
    out = tmp_path / "dead.jsonl"
    exported = CliRunner().invoke(main, ["dlq", "export", job_id, "-o", str(out)])
    assert exported.exit_code == 0, exported.output
    assert f"wrote 30 dead letters of job {job_id} to {out}" in exported.stderr.splitlines()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 30 and all(set(row) == EXPORTED for row in rows)
    assert rows[7]["record"]["recordId"] == "r-7" and rows[7]["reason"].endswith("(7)")
    assert (rows[0]["unit"], rows[0]["target"], rows[0]["attempts"]) == (
        f"{job_id}:0", "sourcing_data", 2)  # fmt: skip

    to_stdout = CliRunner().invoke(main, ["dlq", "export", job_id])
    assert len(to_stdout.stdout.splitlines()) == 30  # the count goes to stderr, not the data


def test_dlq_export_by_target_since_a_duration_or_a_time(
    no_workers: None, redis_client: redis.Redis, tmp_path: Path
) -> None:
    old = dead_lettered(redis_client, 4, ages=[7200, 7200, 60, 60])  # two 2 h old, two 1 min
    new = dead_lettered(redis_client, 3)

    def exported(*options: str) -> list[dict[str, Any]]:
        result = CliRunner().invoke(main, ["dlq", "export", *options])
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in result.stdout.splitlines()]

    assert len(exported("--target", "sourcing_data")) == 7
    recent = exported("--target", "sourcing_data", "--since", "1h")
    assert [row["unit"] for row in recent] == [f"{old}:0"] * 2 + [f"{new}:0"] * 3
    an_hour_ago = datetime.fromtimestamp(time.time() - 3600).isoformat(timespec="seconds")
    assert len(exported(old, "--since", an_hour_ago)) == 2
    assert exported("--target", "sourcing_data", "--since", "30s") == exported(new)

    refused = cli("dlq", "export", old, "--since", "yesterday")
    assert (
        refused.exit_code == 2
        and "neither a duration (90s, 30m, 2h, 7d) nor a time" in refused.output
    )
    assert cli("dlq", "export").exit_code == 2  # JOB_ID or --target
    assert "no target 'salesforce'" in cli("dlq", "export", "--target", "salesforce").output


def test_exported_records_publish_again_once_fixed(
    no_workers: None, redis_client: redis.Redis, tmp_path: Path
) -> None:
    job_id = dead_lettered(redis_client, 12)
    out = tmp_path / "to-fix.jsonl"
    assert cli("dlq", "export", job_id, "--records", "-o", str(out)).exit_code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records == list(sample_records(12))  # the records alone, as they were published
    republished = cli("publish", "sourcing_data", str(out), "--operation-id", "op-fixed",
                      "--no-check", "--json")  # fmt: skip
    assert republished.exit_code == 0, republished.output
    new_job = json.loads(republished.output[republished.output.index("{") :])
    assert JobStore(redis_client).get(new_job["id"]) is not None
    assert new_job["records_total"] == 12
