"""`status --wait` / `publish --wait`: `--timeout`, and a word when no worker consumes the queue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from importq import progress
from importq.cli.common import ExitCode
from importq.progress import IdleWatch
from tests.helpers import publish_sourcing, sample_records
from workers import consumers, keys
from workers.jobs import JobStore

QUICK = {"IMPORTQ_NO_WORKER_SECONDS": "1"}


def _importq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "importq.cli", *args],
        env={**os.environ, **QUICK}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_wait_without_a_consumer_says_so_and_times_out_with_exit_3(
    redis_client: redis.Redis, sim: Any, start_worker: Any
) -> None:
    start_worker("workflow_import", concurrency=1)  # a worker, but not for sourcing_data
    job_id = publish_sourcing(sample_records(50))
    started = time.monotonic()
    # Three times IMPORTQ_NO_WORKER_SECONDS: counting consumers reads Redis, asks no worker.
    waited = _importq("status", job_id, "--timeout", "3")
    assert 3 <= time.monotonic() - started < 30
    assert waited.returncode == ExitCode.STILL_RUNNING == 3, waited.stderr
    assert waited.stderr.count("no worker is consuming sourcing_data: nothing moved for ") == 1
    assert "start one with `importq worker --targets sourcing_data`" in waited.stderr
    assert f"still queued after 3 s; `importq status {job_id} --wait` follows it on" in (
        waited.stderr
    )
    assert f"job {job_id}  target=sourcing_data  state=queued" in waited.stdout

    worker = start_worker("sourcing_data", concurrency=2)
    # Counted from the worker's own heartbeat, written before Celery logs "ready."
    assert consumers.live(redis_client, "sourcing_data") == [f"{worker.name}:{worker.process.pid}"]
    finished = _importq("status", job_id, "--wait", "--timeout", "90")
    assert finished.returncode == 0, finished.stderr
    assert "no worker is consuming" not in finished.stderr
    assert sim.ledger()["committed_records"] == 50


def test_publish_wait_timeout_returns_the_job_unfinished(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in sample_records(20)))
    published = _importq("publish", "sourcing_data", str(data), "--no-check", "--json",
                         "--timeout", "2")  # fmt: skip
    assert published.returncode == ExitCode.STILL_RUNNING, published.stderr
    job = json.loads(published.stdout)
    assert job["state"] == "queued" and job["records_total"] == 20
    assert "no worker is consuming sourcing_data" in published.stderr


def test_idle_watch_asks_the_workers_only_when_nothing_moved_and_no_lease_is_held(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client)
    job_id = store.create("sourcing_data", {})
    unit_id = store.stage_unit(job_id, "sourcing_data", 0, [{"recordId": "1"}])
    store.open(job_id)
    asked: list[str] = []
    consumers = {"count": 1}

    def ask(target: str) -> int:
        asked.append(target)
        return consumers["count"]

    watch = IdleWatch(store, 0.2, ask)

    def notice(paused: bool = False, in_flight: float = 0.0) -> str | None:
        job = store.get(job_id)
        assert job is not None
        return watch.notice(job, in_flight, paused)

    assert notice() is None and asked == []  # just started: too early to ask
    redis_client.set(keys.lease(unit_id), "token", px=10_000)  # a worker holds the unit
    time.sleep(0.25)
    assert notice() is None and asked == []
    redis_client.delete(keys.lease(unit_id))
    time.sleep(0.25)
    assert notice() is None and asked == ["sourcing_data"]  # a worker consumes the queue
    assert notice() is None and asked == ["sourcing_data"]  # asked once per idle period
    consumers["count"] = 0
    time.sleep(0.25)
    said = notice()
    assert said is not None and said.startswith("no worker is consuming sourcing_data")
    time.sleep(0.25)
    assert notice() is None  # said once while nothing moves
    time.sleep(0.25)
    assert notice(paused=True) is None  # a paused target is idle on purpose
    assert notice(in_flight=0.5) is None  # moving again: the clock starts over
    assert len(asked) == 2


def _wait_briefly(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    """`--wait` in this process for 1 s on a queued job; what it said on stderr."""
    monkeypatch.setattr(progress, "no_worker_seconds", lambda: 0.3)
    store = JobStore(redis_client)
    job_id = store.create("sourcing_data", {})
    store.stage_unit(job_id, "sourcing_data", 0, [{"recordId": "1"}])
    store.open(job_id)
    progress.wait_for_job(store, job_id, quiet=True, timeout=1.0)
    return capsys.readouterr().err


def test_wait_counts_consumers_from_the_workers_heartbeats(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A worker's live heartbeat for the queue: the job is waiting its turn, nothing to say.
    consumers.beat(redis_client, "w-live@host:4242", ["sourcing_data"], ttl=60)
    assert "no worker is consuming" not in _wait_briefly(redis_client, monkeypatch, capsys)

    # A killed worker's heartbeat, past its `until`, and a live one for another queue only.
    redis_client.flushdb()
    redis_client.zadd(keys.consumers("sourcing_data"), {"w-killed@host:4243": 1})
    consumers.beat(redis_client, "w-other@host:4244", ["workflow_import"], ttl=60)
    said = _wait_briefly(redis_client, monkeypatch, capsys)
    assert said.count("no worker is consuming sourcing_data: nothing moved for ") == 1
