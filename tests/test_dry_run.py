"""`importq publish --dry-run` validates and plans the whole input without touching Redis, and
reports up to IMPORTQ_DRY_RUN_MAX_ERRORS errors (not just the first), exiting 1 if any."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import redis

from tests.helpers import jsonl, publish_file

GOOD = {"entityId": "E", "recordId": "1"}
# The dry run's credential check asks the SourcingData simulator: `sim` sets it to take the
# tests' token, whatever an earlier test left it configured with.
pytestmark = pytest.mark.usefixtures("sim")


def nothing_in_redis(client: redis.Redis) -> None:
    assert client.keys("*") == [], client.keys("*")


def test_a_good_file_is_planned_and_nothing_is_staged(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    content = jsonl(*({"EmployeeId": f"E{n}"} for n in range(2500)))
    result = publish_file(tmp_path, "workflow_import", "in.jsonl", content, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "2500 records in 3 units" in result.output
    assert "nothing was staged" in result.output
    nothing_in_redis(redis_client)


def test_every_bad_record_is_reported_up_to_the_default_of_twenty(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    lines: list[object] = []
    for n in range(30):
        lines += [GOOD, '{"entityId": ' if n % 2 else {"entityId": "E"}]
    result = publish_file(tmp_path, "sourcing_data", "in.jsonl", jsonl(*lines), "--dry-run")
    assert result.exit_code == 1, result.output
    reported = [line for line in result.output.splitlines() if "in.jsonl:" in line]
    assert len(reported) == 20, result.output
    assert "in.jsonl:2:" in reported[0] and "recordId" in reported[0]
    assert "in.jsonl:4:" in reported[1] and "not valid JSON" in reported[1]
    assert "stopped after 20 errors" in result.output
    assert "IMPORTQ_DRY_RUN_MAX_ERRORS" in result.output
    nothing_in_redis(redis_client)


def test_the_error_budget_is_a_setting(
    tmp_path: Path, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMPORTQ_DRY_RUN_MAX_ERRORS", "2")
    content = "entityId,recordId,isDeleted\nE,1,maybe\nE,2,true\nE,3,perhaps\nE,,no\nE,5,x\n"
    result = publish_file(tmp_path, "sourcing_data", "in.csv", content, "--dry-run")
    assert result.exit_code == 1
    reported = [line for line in result.output.splitlines() if "in.csv:" in line]
    assert [line.split(": ")[0].rsplit(":", 1)[1] for line in reported] == ["2", "4"]
    nothing_in_redis(redis_client)


def test_fewer_errors_than_the_budget_are_all_reported_with_their_lines(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    content = 'entityId,recordId,isDeleted\nE,1,maybe\nE,"2\nb",true\nE,,no\nE,4,1,extra\n'
    result = publish_file(tmp_path, "sourcing_data", "in.csv", content, "--dry-run", "--json")
    assert result.exit_code == 1
    report = json.loads(result.output[result.output.index("{") :])
    assert [e.split(": ")[0].rsplit(":", 1)[1] for e in report["errors"]] == ["2", "5", "6"]
    assert report["records"] == 1 and report["staged"] is False
    nothing_in_redis(redis_client)


def test_a_stray_quote_ends_the_dry_run_at_its_line(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    content = 'EmployeeId,Name\nE1,Ann\nE2,"Bob\nE3,Cid\nE4,Dee\n'
    result = publish_file(tmp_path, "workflow_import", "q.csv", content, "--dry-run")
    assert result.exit_code == 1
    assert "q.csv:3:" in result.output and "never closed" in result.output
    nothing_in_redis(redis_client)


def test_a_planning_refusal_is_reported_after_the_record_errors(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    rows = jsonl({"Vals": ["A", "a"]}, {"Vals": 5}, {"Vals": ["A", "again"]})
    result = publish_file(tmp_path, "datasource", "in.jsonl", rows, "--dry-run",
                          "--param", "mode=upsert", "--param", "external_id=SPORTS-001",
                          "--param", "name=Sports", "--param", "headers=Code,Name")  # fmt: skip
    assert result.exit_code == 1
    assert "in.jsonl:2:" in result.output  # the record's own error, then the planner's
    assert "in.jsonl:3:" in result.output and "repeats the row at" in result.output
    nothing_in_redis(redis_client)


def test_a_gzipped_file_dry_runs_too(tmp_path: Path, redis_client: redis.Redis) -> None:
    path = tmp_path / "in.jsonl.gz"
    path.write_bytes(gzip.compress(jsonl(*([GOOD] * 10)).encode()))
    from click.testing import CliRunner

    from importq.cli import main

    result = CliRunner().invoke(main, ["publish", "sourcing_data", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "10 records in 1 unit" in result.output
    nothing_in_redis(redis_client)
