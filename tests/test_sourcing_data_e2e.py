"""SourcingData end to end: real Redis, real Celery worker processes, the simulator over HTTP."""

from __future__ import annotations

from typing import Any

from tests.helpers import publish_sourcing, sample_records, wait_for_job


def test_twenty_thousand_records_each_committed_once_within_limits(
    sim: Any, start_worker: Any
) -> None:
    start_worker(concurrency=4)
    job_id = publish_sourcing(sample_records(20_000))
    job = wait_for_job(job_id)
    ledger = sim.ledger()
    assert job.state == "succeeded", job
    assert job.records_delivered == 20_000
    assert ledger["committed_records"] == 20_000
    assert len(ledger["commits"]) == 20_000
    assert ledger["duplicates"] == 0
    assert ledger["max_records_in_request"] <= 500
    assert ledger["max_records_in_item"] <= 4000
