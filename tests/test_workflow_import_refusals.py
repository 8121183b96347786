"""Bad Workflow Import input is refused by `importq publish` before anything is enqueued."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import redis

from tests.helpers import jsonl, nothing_enqueued, publish_file

GOOD = {"EmployeeId": "E1", "Name": "Ada"}


CASES: list[tuple[str, str, str, list[str]]] = [
    # (id, file name, content, phrases the message must hold)
    ("empty-record", "in.jsonl", jsonl(GOOD, {}), ["in.jsonl:2", "non-empty"]),
    ("nested-object", "in.jsonl", jsonl({"Address": {"City": "Oslo"}}),
     ["in.jsonl:1", "Address", "expected string or number or boolean or null, got object"]),
    ("list-value", "in.jsonl", jsonl(GOOD, {"Tags": ["a", "b"]}), ["in.jsonl:2", "Tags", "array"]),
    ("overlong-cell", "in.jsonl", jsonl({"Note": "x" * 40_000}),
     ["in.jsonl:1", "Note", "too long", "32767"]),
    ("empty-column-name", "in.jsonl", jsonl({"": "x"}), ["in.jsonl:1", "must not be empty"]),
    ("malformed-line", "in.jsonl", jsonl(GOOD, '{"EmployeeId": "E2",'),
     ["in.jsonl:2", "not valid JSON"]),
    ("not-an-object", "in.jsonl", jsonl(GOOD, '"E2"'), ["in.jsonl:2", "expected a JSON object"]),
    ("object-not-array", "in.json", json.dumps(GOOD), ["in.json:1", "JSON array"]),
    ("csv-duplicate-column", "in.csv", "EmployeeId,EmployeeId\nE1,E2\n",
     ["in.csv:1", "EmployeeId"]),
    ("empty-file", "in.jsonl", "", ["no records"]),
]  # fmt: skip

PARAMS: list[tuple[str, list[str], list[str]]] = [
    ("api-key-as-param", ["--param", "apikey=abc"], ["credentials do not travel"]),
    ("bad-param-name", ["--param", "import type=x"], ["unknown workflow_import option"]),
    ("empty-creation-path", ["--param", "creationPath="], ["creationPath", "1 to 1000"]),
    ("operation-id", ["--operation-id", "op1"], ["sourcing_data option"]),
]


@pytest.mark.parametrize(("name", "content", "phrases"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_records_are_refused_with_their_location(
    tmp_path: Path, redis_client: redis.Redis, name: str, content: str, phrases: list[str]
) -> None:
    result = publish_file(tmp_path, "workflow_import", name, content)
    assert result.exit_code == 1, result.output
    for phrase in phrases:
        assert phrase in result.output
    nothing_enqueued(redis_client, "workflow_import")


@pytest.mark.parametrize(("options", "phrases"), [c[1:] for c in PARAMS],
                         ids=[c[0] for c in PARAMS])  # fmt: skip
def test_bad_options_are_refused(
    tmp_path: Path, redis_client: redis.Redis, options: list[str], phrases: list[str]
) -> None:
    result = publish_file(tmp_path, "workflow_import", "in.jsonl", jsonl(GOOD), *options)
    assert result.exit_code == 1, result.output
    for phrase in phrases:
        assert phrase in result.output
    assert "abc" not in result.output  # a would-be credential is not echoed back
    nothing_enqueued(redis_client, "workflow_import")


def test_good_file_with_params_is_enqueued_in_batches(
    tmp_path: Path, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers import app

    env = {**app.settings().env, "WORKFLOW_IMPORT_QUERY_PARAMS": "importType"}
    changed = dataclasses.replace(app.settings(), env=env)
    monkeypatch.setattr(app, "settings", lambda: changed)
    content = jsonl(*({"EmployeeId": f"E{n}", "Active": n % 2 == 0} for n in range(2500)))
    result = publish_file(
        tmp_path,
        "workflow_import",
        "in.jsonl",
        content,
        "--param",
        "importType=Onboarding",
        "--json",
    )
    assert result.exit_code == 0, result.output
    job = json.loads(result.output[result.output.index("{") :])
    assert (job["records_total"], job["units_total"]) == (2500, 3)
    assert job["params"] == {"importType": "Onboarding"}
    assert redis_client.llen("workflow_import") == 3
