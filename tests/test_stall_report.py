"""The chaos harness's stall report (tests/chaos/diagnose.py) says what a human needs."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import redis

from importq import broker
from importq.processes import Process
from tests.chaos.diagnose import quick_client, stall_report
from tests.helpers import publish_sourcing, sample_records
from workers.breaker import Breaker


def test_a_stall_report_names_the_dead_worker_its_log_the_queue_units_and_pauses(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    from workers import app

    job_id = publish_sourcing(sample_records(10))  # queued, and no worker consumes it
    Breaker(redis_client, app.settings()).hold("blue", "vendor maintenance until 14:00")
    said = "consumer: Connection to broker lost (the worker's last words)"
    worker = Process([sys.executable, "-c", f"print({said!r}); raise SystemExit(3)"],
                     {}, tmp_path / "worker.log")  # fmt: skip
    worker.process.wait(timeout=30)
    report = stall_report(redis_client, job_id, [worker])
    worker.stop()
    assert f"pid {worker.process.pid} EXITED with 3" in report
    assert said in report
    assert "sourcing_data 1," in report  # the unit's message waits in its queue
    assert f"{job_id}:0: state=queued" in report and "no lease" in report
    assert "reaper looks in" in report
    assert "blue PAUSED" in report and "vendor maintenance until 14:00" in report


def test_a_stall_report_of_a_redis_that_is_down_says_so_at_once(tmp_path: Path) -> None:
    client = quick_client(f"redis://127.0.0.1:{broker.free_port()}/0")
    began = time.monotonic()
    report = stall_report(client, "0nosuchjob")
    assert time.monotonic() - began < 30  # each part tries once; no outage is waited out
    assert "--- queues\n  (could not read: ConnectionError" in report
    assert "--- workers\n  (none started)" in report
