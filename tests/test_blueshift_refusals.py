"""Bad Blueshift input is refused by `importq publish` before anything is enqueued."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from importq.cli import main
from importq.settings import load
from tests.helpers import nothing_enqueued

UUID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
GOOD = {"customer_id": "c-1", "email": "ann@example.com"}


def _jsonl(*records: Any) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


CASES: list[tuple[str, list[str], str | None, list[str]]] = [
    # (id, options, in.jsonl content or None for a bare trigger, phrases the message must hold)
    ("missing-uuid", [], None, ["blueshift needs the import's uuid", "--param uuid=<uuid>"]),
    ("bad-uuid", ["--param", "uuid=import-42"], None,
     ["'import-42' is not a UUID", "import_show/<uuid>"]),
    ("unknown-option", ["--param", f"uuid={UUID}", "--param", "uid=1"], None,
     ["unknown blueshift option 'uid': did you mean uuid?", "columns (list of names)",
      "s3_prefix (text)"]),
    ("operation-id-is-not-blueshift", ["--param", f"uuid={UUID}", "--operation-id", "x"], None,
     ["--operation-id is a sourcing_data option; blueshift has none"]),
    ("nested-object", ["--param", f"uuid={UUID}"],
     _jsonl(GOOD, {**GOOD, "address": {"city": "Oslo"}}), ["in.jsonl:2", "address", "got object"]),
    ("list-value", ["--param", f"uuid={UUID}"], _jsonl({**GOOD, "tags": ["a", "b"]}),
     ["in.jsonl:1", "tags", "got array"]),
    ("empty-record", ["--param", f"uuid={UUID}"], _jsonl(GOOD, {}), ["in.jsonl:2", "empty record"]),
    ("field-outside-columns", ["--param", f"uuid={UUID}", "--param", "columns=customer_id,email"],
     _jsonl(GOOD, {**GOOD, "tier": "gold"}), ["in.jsonl:2", "tier", "customer_id, email"]),
    ("duplicate-column", ["--param", f"uuid={UUID}", "--param", "columns=email,email"],
     _jsonl(GOOD), ["columns lists email more than once"]),
    ("no-records-in-file", ["--param", f"uuid={UUID}"], "", ["no records"]),
]  # fmt: skip


def _publish(
    tmp_path: Path, options: list[str], content: str | None, name: str = "in.jsonl"
) -> Any:
    args = ["publish", "blueshift", *options]
    if content is not None:
        (tmp_path / name).write_text(content)
        args.insert(2, str(tmp_path / name))
    return CliRunner().invoke(main, args)


@pytest.mark.parametrize(("options", "content", "phrases"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_input_is_refused_with_what_to_fix(
    tmp_path: Path,
    redis_client: redis.Redis,
    options: list[str],
    content: str | None,
    phrases: list[str],
) -> None:
    result = _publish(tmp_path, options, content)
    assert result.exit_code == 1, result.output
    for phrase in phrases:
        assert phrase in result.output
    nothing_enqueued(redis_client, "blueshift")


def test_csv_columns_become_the_customer_attributes(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    from workers.jobs import JobStore

    content = "email,first_name\na@example.com,Ada\n"
    result = _publish(tmp_path, ["--param", f"uuid={UUID}", "--json"], content, "in.csv")
    assert result.exit_code == 0, result.output
    job = json.loads(result.output[result.output.index("{") :])
    (unit_id,) = JobStore(redis_client).unit_ids(job["id"])
    assert JobStore(redis_client).payload(unit_id) == [
        {"email": "a@example.com", "first_name": "Ada"}
    ]


def test_input_over_the_byte_budget_is_refused_up_front(
    tmp_path: Path, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers import app

    small = load({**os.environ, "BLUESHIFT_MAX_IMPORT_BYTES": "200"})
    monkeypatch.setattr(app, "settings", lambda: small)
    records = [{**GOOD, "customer_id": f"c-{n}"} for n in range(10)]
    result = _publish(tmp_path, ["--param", f"uuid={UUID}"], _jsonl(*records))
    assert result.exit_code == 1
    assert "in.jsonl:5" in result.output and "BLUESHIFT_MAX_IMPORT_BYTES" in result.output
    nothing_enqueued(redis_client, "blueshift")
