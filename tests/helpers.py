"""Small helpers the integration tests share: sample records, publishing, waiting."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from workers.jobs import JobStore, JobView


def sample_records(
    count: int, entity: str = "ORG_DEPT", start: int = 0
) -> Iterator[dict[str, Any]]:
    for number in range(start, start + count):
        yield {
            "entityId": entity,
            "recordId": f"r-{number}",
            "data": {"Code": f"C{number}", "Name": f"Department {number}"},
        }


def publish_sourcing(records: Any, operation_id: str = "op-test") -> str:
    from producers.publish import locate, publish
    from workers import app

    return publish(
        "sourcing_data",
        locate(records),
        {"operation_id": operation_id},
        settings=app.SETTINGS,
        store=JobStore(app.redis_client()),
        publish_unit=app.publish_unit,
    )


def wait_for_job(job_id: str, timeout: float = 120) -> JobView:
    from workers import app

    store = JobStore(app.redis_client())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get(job_id)
        if job is not None and job.finished:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {store.get(job_id)}")
