"""Worker processes with their own node names (as on several machines) share a target's queue."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from producers.publish import locate, publish
from simulators import load
from tests.conftest import Worker
from tests.helpers import sample_records, wait_for_job
from workers.jobs import JobStore
from workers.targets import TARGETS

StartWorkers = Callable[[str, list[str], int], list[Worker]]


@pytest.fixture
def start_workers(tmp_path: Path, simulators: dict[str, Any]) -> Iterator[StartWorkers]:
    """Start workers named like nodes on separate machines; all stopped after the test."""
    started: list[Worker] = []

    def start(queue: str, nodes: list[str], concurrency: int) -> list[Worker]:
        workers = [
            Worker(tmp_path / f"{node}.log", queue, concurrency, node, dict(os.environ))
            for node in nodes
        ]
        started.extend(workers)
        for worker in workers:  # started together, so they boot in parallel
            worker.wait_ready()
        return workers

    yield start
    for worker in started:
        worker.stop()


def _units_delivered(worker: Worker) -> int:
    """Units this worker delivered, from its JSON log lines."""
    count = 0
    for line in worker.log_path.read_text().splitlines():
        if line.startswith("{") and json.loads(line).get("event") == "unit delivered":
            count += 1
    return count


def test_three_sourcing_workers_on_three_hosts_share_the_work(
    sim: Any, start_workers: StartWorkers
) -> None:
    from workers import app

    sim.configure(latency_seconds=0.1)  # a unit lasts long enough for the others to take theirs
    nodes = [f"sourcing@host-{name}" for name in ("a", "b", "c")]
    workers = start_workers("sourcing_data", nodes, 1)
    # 500-record queue items: nine units for three single-process workers.
    env = {**app.settings().env, "SOURCING_DATA_RECORDS_PER_ITEM": "500"}
    settings = dataclasses.replace(app.settings(), env=env)
    store = JobStore(app.redis_client())
    job_id = publish("sourcing_data", locate(sample_records(4_500)), {"operation_id": "scale"},
                     settings=settings, store=store, publish_unit=app.publish_unit)  # fmt: skip
    job = wait_for_job(job_id)
    assert job.state == "succeeded" and job.units_total == 9
    for worker in workers:
        worker.stop()
    delivered = {worker.log_path.stem: _units_delivered(worker) for worker in workers}
    assert sum(delivered.values()) == 9
    assert all(count >= 1 for count in delivered.values()), delivered
    ledger = sim.ledger()
    assert ledger["committed_records"] == 4_500 and ledger["duplicates"] == 0


def test_two_blue_workers_never_run_two_imports_at_once(
    fresh_simulators: dict[str, Any], start_workers: StartWorkers
) -> None:
    if "blue" not in TARGETS:
        pytest.skip("blue target not registered yet")
    from workers import app

    blue = fresh_simulators["blue"]
    blue.configure(latency_seconds=0.05)  # imports long enough to overlap if they could
    start_workers("blue", ["blue@host-a", "blue@host-b"], 1)
    store = JobStore(app.redis_client())
    jobs = []
    for _ in range(3):  # three imports queued at once for two workers
        params, records = load("blue").demo_job(50)
        located = None if records is None else locate(records, "blue demo")
        jobs.append(publish("blue", located, params, settings=app.settings(), store=store,
                            publish_unit=app.publish_unit))  # fmt: skip
    for job_id in jobs:
        assert wait_for_job(job_id, timeout=120).state == "succeeded"
    ledger = blue.ledger()
    assert ledger["transactions"].get("finalized") == 3
    # The simulator counts a RegisterImport it refused because one was open, so both
    # figures can fail: Blue saw one import at a time, and no worker tried a second.
    assert ledger["max_open"] == 1
    assert ledger["overlaps"] == 0
