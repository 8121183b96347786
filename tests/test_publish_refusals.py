"""Bad input is refused before anything is enqueued, with where and what is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from importq.cli import main
from tests.conftest import CANARY_TOKEN
from tests.helpers import jsonl, nothing_enqueued, publish_file

GOOD = {"entityId": "E", "recordId": "1", "data": {"Name": "x"}}


CASES: list[tuple[str, str, str, list[str]]] = [
    # (id, file name, content, phrases the message must hold)
    ("malformed-json-line", "in.jsonl", jsonl(GOOD, GOOD, '{"entityId": "E",'),
     ["in.jsonl:3", "not valid JSON"]),
    ("not-an-object", "in.jsonl", jsonl(GOOD, "[1, 2]"), ["in.jsonl:2"]),
    ("missing-record-id", "in.jsonl", jsonl(GOOD, {"entityId": "E"}), ["in.jsonl:2", "recordId"]),
    ("wrong-type", "in.jsonl", jsonl({**GOOD, "isDeleted": "maybe"}), ["in.jsonl:1", "isDeleted"]),
    ("unknown-field", "in.jsonl", jsonl({"entityId": "E", "recordID": "1"}),
     ["in.jsonl:1", "recordID"]),
    ("data-and-fields", "in.jsonl", jsonl({**GOOD, "fields": [{"key": "a", "value": 1}]}),
     ["in.jsonl:1", "data", "fields"]),
    ("reference-not-uuid", "in.jsonl", jsonl({**GOOD, "referenceId": "nope"}),
     ["in.jsonl:1", "referenceId"]),
    ("empty-jsonl", "in.jsonl", "", ["no records"]),
    ("empty-json-array", "in.json", "[]", ["no records"]),
    ("json-object-not-array", "in.json", json.dumps(GOOD), ["in.json:1"]),
    ("csv-unknown-column", "in.csv", "entityId,recordId,colour\nE,1,red\n", ["in.csv:1", "colour"]),
    ("csv-missing-record-id", "in.csv", "entityId,data.Name\nE,x\n", ["in.csv:1", "recordId"]),
    ("csv-bad-boolean", "in.csv", "entityId,recordId,isDeleted\nE,1,perhaps\n",
     ["in.csv:2", "isDeleted"]),
    ("csv-header-only", "in.csv", "entityId,recordId\n", ["no records"]),
    ("unknown-extension", "in.txt", "hello", ["in.txt"]),
    ("oversized-record", "in.jsonl", jsonl(GOOD, {**GOOD, "data": {"Blob": "x" * 3_100_000}}),
     ["in.jsonl:2", "byte"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "phrases"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_input_is_refused_with_its_location(
    tmp_path: Path, redis_client: redis.Redis, sim: Any, name: str, content: str, phrases: list[str]
) -> None:
    result = publish_file(tmp_path, "sourcing_data", name, content)
    assert result.exit_code == 1, result.output
    for phrase in phrases:
        assert phrase in result.output
    nothing_enqueued(redis_client, "sourcing_data")


@pytest.mark.parametrize(
    ("config", "phrase"),
    [
        ({"token": "a-different-token"}, "SOURCING_DATA_TOKEN was refused"),
        ({"forbidden_tokens": {CANARY_TOKEN}}, "may not publish"),
        ({"agents": {"another-agent"}}, "SOURCING_DATA_AGENT_ID"),
    ],
    ids=["bad-credentials", "forbidden", "unknown-agent"],
)
def test_target_refusal_is_found_before_enqueueing(
    tmp_path: Path, redis_client: redis.Redis, sim: Any, config: dict[str, Any], phrase: str
) -> None:
    sim.configure(**config)
    result = publish_file(tmp_path, "sourcing_data", "in.jsonl", jsonl(GOOD))
    assert result.exit_code == 1
    assert phrase in result.output
    assert CANARY_TOKEN not in result.output
    nothing_enqueued(redis_client, "sourcing_data")


def test_unknown_target_and_missing_file_are_refused(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    missing = CliRunner().invoke(main, ["publish", "sourcing_data", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code != 0 and "nope.jsonl" in missing.output
    (tmp_path / "in.jsonl").write_text(jsonl(GOOD))
    unknown = CliRunner().invoke(main, ["publish", "salesforce", str(tmp_path / "in.jsonl")])
    assert unknown.exit_code == 1 and "unknown target 'salesforce'" in unknown.output
    bad_param = publish_file(
        tmp_path, "sourcing_data", "in.jsonl", jsonl(GOOD), "--param", "novalue"
    )
    assert bad_param.exit_code == 2 and "key=value" in bad_param.output
    nothing_enqueued(redis_client, "sourcing_data")


def test_good_file_is_enqueued_and_status_reports_it(
    tmp_path: Path, redis_client: redis.Redis, sim: Any
) -> None:
    result = publish_file(
        tmp_path, "sourcing_data", "in.jsonl", jsonl(GOOD, {**GOOD, "recordId": "2"}), "--json"
    )
    assert result.exit_code == 0, result.output
    job = json.loads(result.output[result.output.index("{") :])
    assert job["records_total"] == 2 and job["state"] == "queued"
    assert redis_client.llen("sourcing_data") == 1
    status = CliRunner().invoke(main, ["status", job["id"], "--json"])
    assert status.exit_code == 3  # not finished: no worker runs in this test
    listed = CliRunner().invoke(main, ["jobs", "--json"])
    assert [j["id"] for j in json.loads(listed.stdout)] == [job["id"]]
