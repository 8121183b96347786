"""Bad Data Source input is refused by `importq publish` before anything is enqueued."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from importq.cli import main
from tests.helpers import nothing_enqueued

PARAMS = ["mode=replace", "external_id=sports", "name=Sports", "headers=Code:Title,Name,Info"]


def _jsonl(*vals: Any) -> str:
    return "".join(json.dumps({"Vals": v}) + "\n" for v in vals)


GOOD = ["K1", "Air hockey", "fast"]
CASES: list[tuple[str, str, str, list[str], list[str]]] = [
    # (id, file name, content, params instead of PARAMS' ones, phrases the message must hold)
    ("no-mode", "in.jsonl", _jsonl(GOOD), ["mode="], ["param mode", "replace", "delete"]),
    ("no-headers", "in.jsonl", _jsonl(GOOD), ["headers="], ["param headers", "Code:Title"]),
    ("id-not-a-guid", "in.jsonl", _jsonl(GOOD), ["id=SPORTS-1"], ["param id", "GUID"]),
    ("one-val", "in.jsonl", _jsonl(GOOD, ["K2"]), [],
     ["in.jsonl:2", "1 Val(s) but 3 headers", "at least 2"]),
    ("wrong-count", "in.jsonl", _jsonl(GOOD, GOOD[:2]), ["mode=upsert"],
     ["in.jsonl:2", "2 Val(s) but 3 headers (Code, Name, Info)"]),
    ("repeated-key", "in.jsonl", _jsonl(GOOD, GOOD), [], ["in.jsonl:2", "repeats", "in.jsonl:1"]),
    ("val-not-a-string", "in.jsonl", _jsonl(["K1", 7, "x"]), [],
     ["in.jsonl:1", "Vals[1]", "expected string"]),
    ("delete-a-full-row", "in.jsonl", _jsonl(GOOD), ["mode=delete"],
     ["in.jsonl:1", "key alone", "not 3"]),
    ("csv-unknown-plain-header", "in.csv", "Code,Colour\nK1,red\n", [],
     ["in.csv:2", "Colour: not a header"]),
    ("csv-unknown-header", "in.csv", "Vals.Code,Vals.Colour\nK1,red\n", [],
     ["in.csv:2", "Vals.Colour: not a header"]),
    ("csv-empty-key", "in.csv", "Vals.Code,Vals.Name\n,x\n", [], ["in.csv:2", "Val 1 is empty"]),
    ("over-50000-rows", "in.jsonl", _jsonl(*([f"K{n}", "x", "y"] for n in range(50_001))), [],
     ["in.jsonl:50001", "more than 50000 rows"]),
]  # fmt: skip


def _publish(tmp_path: Path, name: str, content: str, params: list[str]) -> Any:
    path = tmp_path / name
    path.write_text(content)
    given = {p.partition("=")[0]: p for p in [*PARAMS, *params]}  # the case's own win
    options = [arg for param in given.values() for arg in ("--param", param)]
    return CliRunner().invoke(main, ["publish", "datasource", str(path), *options])


@pytest.mark.parametrize(("name", "content", "params", "phrases"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_input_is_refused_with_where_and_what_to_fix(
    tmp_path: Path,
    redis_client: redis.Redis,
    name: str,
    content: str,
    params: list[str],
    phrases: list[str],
) -> None:
    result = _publish(tmp_path, name, content, params)
    assert result.exit_code == 1, result.output
    for phrase in phrases:
        assert phrase in result.output
    nothing_enqueued(redis_client, "datasource")


def test_a_csv_with_vals_columns_is_enqueued_as_one_publish(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    content = "Vals.Code,Vals.Name,Vals.Info\nK1,Air hockey,fast\nK2,Chess,\n"
    result = _publish(tmp_path, "in.csv", content, [])
    assert result.exit_code == 0, result.output
    from workers import app
    from workers.jobs import JobStore

    store = JobStore(app.redis_client())
    (job,) = store.recent()
    assert (job.records_total, job.units_total) == (2, 1)
    assert job.params["headers"] == "Code:Title,Name,Info"
    (unit_id,) = store.unit_ids(job.id)
    assert store.payload(unit_id) == [
        {"Vals": ["K1", "Air hockey", "fast"]},
        {"Vals": ["K2", "Chess", ""]},
    ]
    assert redis_client.llen("datasource") == 1
