"""The `importq` command's own log lines: on stderr, in importq's format, redacted.

Commands such as `purge`, `release` and `publish --manifest` run the runner and the
pipeline code in-process, and those log. Their lines must not land on stdout (where
people and `--json` readers look) nor show a configured secret.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from importq.cli import main
from importq.logging import CLI_HANDLER_NAME
from tests.helpers import jsonl, publish_sourcing, sample_records
from workers import keys

FAKE_BLUE_KEY = "fake-blue-api-key-7d41c09e-logging-test"


def _importq(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "importq.cli", *args],
        env={**os.environ, "IMPORTQ_LOG_FORMAT": "json", **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _log_lines(stderr: str) -> list[dict[str, Any]]:
    """The JSON log lines among stderr's lines (the others are said to people)."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_purge_logs_on_stderr_redacted_and_json_stdout_stays_json(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    users = tmp_path / "users.jsonl"
    users.write_text(jsonl({"USER_ID": "u1", "NAME": "One"}))
    manifest = tmp_path / "steps.yaml"
    manifest.write_text("steps:\n  - file: users.jsonl\n    params: {datasource: Users}\n"
                        "  - file: users.jsonl\n    params: {datasource: Courses}\n")  # fmt: skip
    published = _importq("publish", "blue", "--manifest", str(manifest), "--no-check", "--json",
                         BLUE_API_KEY=FAKE_BLUE_KEY)  # fmt: skip
    assert published.returncode == 0, published.stderr
    pipeline = json.loads(published.stdout)  # nothing but the JSON document
    first, second = (job["id"] for job in pipeline["jobs"])
    assert "pipeline step released" in [line["event"] for line in _log_lines(published.stderr)]

    # An earlier attempt's error that quotes the key (a vendor echoing it back, say).
    redis_client.hset(keys.unit(f"{first}:0"), "last_error",
                      f"blue: HTTP 401: the API key {FAKE_BLUE_KEY} is not valid")  # fmt: skip
    purged = _importq("purge", "blue", "--yes", BLUE_API_KEY=FAKE_BLUE_KEY)
    assert purged.returncode == 0, purged.stderr
    assert FAKE_BLUE_KEY not in purged.stdout + purged.stderr
    said = purged.stdout.splitlines()
    assert said[0].startswith("purged blue: 2 jobs cancelled")
    assert said[1:] == [line for line in said[1:] if line.startswith("  job ")]  # no log line
    logged = {line["event"]: line for line in _log_lines(purged.stderr)}
    assert {"job finished", "pipeline stopped"} <= logged.keys()
    assert logged["job finished"]["level"] == "info" and logged["job finished"]["timestamp"]
    assert "the API key *** is not valid" in logged["pipeline stopped"]["reason"]
    assert {first, second} <= {line.get("job") for line in _log_lines(purged.stderr)}


def test_in_process_commands_leave_pytests_log_capture_in_place(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    publish_sourcing(sample_records(10))
    caplog.set_level(logging.INFO)
    for _ in range(2):  # configured once however often a command runs
        purged = CliRunner().invoke(main, ["purge", "sourcing_data", "--yes"])
        assert purged.exit_code == 0, purged.output
        publish_sourcing(sample_records(10))
    assert "job finished" not in purged.output  # CliRunner's stdout holds only what is said
    assert "job finished" in caplog.text  # pytest's handler still sees every line
    ours = [h for h in logging.getLogger().handlers if h.get_name() == CLI_HANDLER_NAME]
    assert len(ours) == 1
