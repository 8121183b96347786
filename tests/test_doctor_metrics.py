"""`importq doctor` says what is wrong and how to fix it; the metrics count every worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest

from importq.cli import main
from tests.conftest import CANARY_TOKEN, REDIS_URL, free_port
from tests.helpers import publish_sourcing, sample_records, wait_for_job


def test_doctor_reports_redis_and_a_refused_token_with_the_fix(sim: Any) -> None:
    sim.configure(token="the-vendor-wants-another-token")
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 1
    assert "[WARN] redis AOF: appendonly no" in result.output  # the test Redis runs without AOF
    assert "[FAIL] sourcing_data" in result.output
    assert "SOURCING_DATA_TOKEN was refused" in result.output
    assert "fix:" in result.output
    assert CANARY_TOKEN not in result.output


def test_doctor_passes_when_the_target_accepts_the_token(sim: Any) -> None:
    result = CliRunner().invoke(main, ["doctor"])
    assert "[ok  ] sourcing_data: credentials accepted" in result.output
    assert "[FAIL]" not in result.output
    assert result.exit_code == 0


def test_metrics_count_what_the_workers_did(sim: Any, start_worker: Any) -> None:
    from workers import app
    from workers.metrics import ImportqCollector

    sim.configure(poison_record_ids={"r-7"})
    start_worker(concurrency=2)
    wait_for_job(publish_sourcing(sample_records(600)))
    registry = CollectorRegistry()
    registry.register(ImportqCollector(app.redis_client(), ["sourcing_data"]))
    text = generate_latest(registry).decode()
    assert 'importq_records_delivered_total{target="sourcing_data"} 599.0' in text
    assert 'importq_records_dead_lettered_total{target="sourcing_data"} 1.0' in text
    assert 'importq_units_total{state="split",target="sourcing_data"}' in text
    assert 'importq_queue_units{target="sourcing_data"} 0.0' in text


def test_metrics_command_serves_prometheus_text() -> None:
    port = free_port()
    env = {**os.environ, "REDIS_URL": REDIS_URL}
    command = [sys.executable, "-m", "importq.cli", "metrics", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/metrics").text
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "metrics server did not start"
                time.sleep(0.1)
        assert "importq_records_delivered_total" in body
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
