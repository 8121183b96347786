"""A Redis lost while `importq status --wait` follows a job: one line and exit 5, no traceback.

The client rides out an outage of about 45 s (broker.OUTAGE_SECONDS) before giving up, so
this runs in `make chaos` only; tests/test_cli_faults.py covers Redis down at the start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from importq import broker
from importq.cli.common import ExitCode
from tests.chaos.harness import ROUNDS
from tests.test_cli_faults import _importq, _one_error_line

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.skipif(ROUNDS < 4, reason="make chaos runs it: it waits out the client's ~45 s"),
]


def test_redis_lost_during_a_wait_is_one_line_and_exit_5(tmp_path: Path) -> None:
    server, url = broker.start_private(tmp_path)
    try:
        records = tmp_path / "in.jsonl"
        records.write_text(json.dumps({"entityId": "e", "recordId": "1"}) + "\n")
        published = _importq("publish", "sourcing_data", str(records), "--no-check", "--json",
                             REDIS_URL=url)  # fmt: skip
        job_id = json.loads(published.stdout)["id"]
        waiting = subprocess.Popen(
            [sys.executable, "-m", "importq.cli", "status", job_id, "--wait"],
            env={**os.environ, "REDIS_URL": url}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert waiting.stderr is not None
        said = [waiting.stderr.readline(), waiting.stderr.readline()]  # following the job now
        assert said[0].startswith("redis: ") and said[1].startswith("["), said
    finally:
        server.terminate()
        server.wait(timeout=10)
    # The client rides out an outage of about 45 s (broker.OUTAGE_SECONDS) before giving up.
    stdout, stderr = waiting.communicate(timeout=120)
    assert waiting.returncode == ExitCode.REDIS_UNAVAILABLE, stderr
    result = subprocess.CompletedProcess(waiting.args, waiting.returncode, stdout, stderr)
    assert _one_error_line(result).startswith("Error: lost Redis (")
