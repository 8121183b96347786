"""The attempt and crash budgets end to end: a real worker, the session Redis, the simulator.

IMPORTQ_MAX_ATTEMPTS bounds the attempts of a unit that fails every time;
IMPORTQ_MAX_CRASHES bounds the worker deaths one unit may cause (a poison pill).
Both end with the unit failed and its records in the dead-letter store, after
exactly as many attempts or crashes as the setting allows.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from importq.cli import main
from tests.conftest import Worker
from tests.helpers import publish_sourcing, sample_records, wait_for_job, wait_until
from workers.jobs import JobStore


def store() -> JobStore:
    from workers import app

    return JobStore(app.redis_client())


def dead_letters(job_id: str) -> list[dict[str, Any]]:
    shown = CliRunner().invoke(main, ["dlq", "show", job_id, "--json"])
    assert shown.exit_code == 0, shown.output
    letters: list[dict[str, Any]] = json.loads(shown.stdout)
    return letters


def test_a_unit_failing_every_time_gets_exactly_max_attempts(sim: Any, start_worker: Any) -> None:
    sim.configure(fault_rate=1.0, fault_statuses=(504,))  # outcome unknown: never resent in place
    start_worker(concurrency=1, IMPORTQ_MAX_ATTEMPTS="3")
    job_id = publish_sourcing(sample_records(10))
    job = wait_for_job(job_id, timeout=90)
    unit = store().unit(f"{job_id}:0")
    assert job.state == "failed", (job, unit)
    assert unit["state"] == "failed" and unit["attempts"] == "3", unit
    assert "gave up after 3 attempts" in unit["last_error"]
    assert job.records_dead == 10 and job.records_delivered == 0
    letters = dead_letters(job_id)
    assert sorted(entry["record"]["recordId"] for entry in letters) == sorted(
        f"r-{n}" for n in range(10)
    )
    assert all("504" in entry["reason"] or "Gateway" in entry["reason"] for entry in letters)
    assert sim.ledger()["committed_records"] == 0


def pool_children(worker: Worker) -> list[int]:
    """The pids of a Celery worker's pool processes (its main process's children)."""
    pid = worker.process.pid
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in found]


@pytest.fixture
def black_hole() -> Iterator[str]:
    """An address whose connections are accepted (by the kernel) and never answered."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_unit_that_kills_its_worker_each_time_is_poisoned_after_max_crashes(
    sim: Any, start_worker: Any, black_hole: str
) -> None:
    max_crashes = 2
    # Every request of the unit hangs, so the unit is always caught mid-request; nothing
    # reaches the simulator, whose ledger must stay empty. A short lease only makes each
    # crash noticed sooner: a live lease that lapsed on a slow machine would not add one
    # (the worker is busy with the hanging unit; only a claim after a death counts).
    # The start may have opened an item, so the unit's end asks the (silent) vendor once
    # more: a read timeout well inside the wait below bounds that.
    worker = start_worker(concurrency=1, IMPORTQ_MAX_CRASHES=str(max_crashes),
                          IMPORTQ_LEASE_SECONDS="2", SOURCING_DATA_TIMEOUT="20",
                          SOURCING_DATA_URL=f"{black_hole}/api/asol/ds")  # fmt: skip
    job_id = publish_sourcing(sample_records(10))
    unit_id = f"{job_id}:0"

    def running_after(crashes: int) -> bool:
        unit = store().unit(unit_id)
        return unit.get("state") == "running" and int(unit.get("crashes") or 0) == crashes

    for crash in range(max_crashes):
        wait_until(f"the unit to run after {crash} crashes", lambda c=crash: running_after(c))
        (child,) = wait_until("the pool process", lambda: pool_children(worker))
        os.kill(child, signal.SIGKILL)  # what the OOM killer does to the process of a bad unit
    job = wait_for_job(job_id, timeout=60)
    unit = store().unit(unit_id)
    assert job.state == "failed", (job, unit)
    assert unit["crashes"] == str(max_crashes), unit
    assert f"died {max_crashes} times" in unit["last_error"]
    assert job.records_dead == 10 and job.crashes == max_crashes
    letters = dead_letters(job_id)
    assert len(letters) == 10
    assert all(f"died {max_crashes} times" in entry["reason"] for entry in letters)
    assert sim.ledger()["requests"] == 0


def test_a_unit_that_never_ends_is_cut_at_the_unit_time_limit_and_counts_attempts(
    sim: Any, start_worker: Any, black_hole: str
) -> None:
    # The vendor never answers and the read timeout is far away: only the time limit ends
    # a run. Each cut run is an attempt; the last one dead-letters the records.
    # The read timeout bounds the unit's end, which looks for the item a cut start may
    # have opened (the time limit cuts runs, not that settlement): three times the limit
    # keeps the limit first, and the test waits that long once, at the end.
    start_worker(concurrency=1, IMPORTQ_UNIT_TIME_LIMIT="2", IMPORTQ_MAX_ATTEMPTS="2",
                 SOURCING_DATA_TIMEOUT="6",
                 SOURCING_DATA_URL=f"{black_hole}/api/asol/ds")  # fmt: skip
    job_id = publish_sourcing(sample_records(10))
    job = wait_for_job(job_id, timeout=90)
    unit = store().unit(f"{job_id}:0")
    assert job.state == "failed", (job, unit)
    assert unit["attempts"] == "2" and unit.get("crashes", "0") == "0", unit
    assert "IMPORTQ_UNIT_TIME_LIMIT" in unit["last_error"]
    assert job.records_dead == 10
