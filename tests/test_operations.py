"""Operating importq: shared rate limits, producer backpressure, graceful shutdown."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

from importq.settings import load
from tests.helpers import publish_sourcing, sample_records, wait_for_job


def test_rate_limit_is_shared_by_every_worker(sim: Any, start_worker: Any) -> None:
    limit = 10
    for _ in range(4):  # four worker processes, one pool process each
        start_worker(concurrency=1, IMPORTQ_RATE_LIMIT_SOURCING_DATA=f"{limit}/second")
    job = wait_for_job(publish_sourcing(sample_records(16_000)))
    ledger = sim.ledger()
    assert job.state == "succeeded"
    requests, span = ledger["requests"], ledger["requests_span_seconds"]
    assert requests > 3 * limit  # enough traffic that the limit had to bite
    # The window is exact where requests take their place (the limiter, in Redis): N
    # requests need at least (N - limit) / limit seconds. Unlimited, these four workers
    # send all of them within a second.
    assert span >= (requests - limit) / limit - 0.5
    # The simulator counts on arrival, after a transit that a busy 2-core machine can
    # stretch by a few hundred milliseconds, so requests may bunch across a window edge.
    assert ledger["max_requests_per_second"] <= limit * 1.5


def test_sigterm_hands_the_unit_back_at_its_position(sim: Any, start_worker: Any) -> None:
    sim.configure(latency_seconds=0.25)
    first = start_worker(concurrency=1)
    job_id = publish_sourcing(sample_records(4_000))  # one queue item: start + 7 appends
    deadline = time.monotonic() + 60
    while sim.ledger()["requests_by_kind"]["append"] < 2:
        assert time.monotonic() < deadline, "the worker never got going"
        time.sleep(0.02)
    os.kill(first.process.pid, signal.SIGTERM)  # what `docker stop` sends the main process
    first.process.wait(timeout=60)  # it stops at the next checkpoint, not after the item
    assert sim.ledger()["committed_records"] == 0
    start_worker(concurrency=1)
    job = wait_for_job(job_id)
    ledger = sim.ledger()
    assert job.state == "succeeded"
    assert ledger["committed_records"] == 4_000 and ledger["duplicates"] == 0
    assert ledger["requests_by_kind"]["start"] == 1  # the second worker carried on the item
    assert ledger["items"]["Canceled"] == 0
    assert "goes back to the queue" in first.log_path.read_text()


def test_producer_waits_while_the_queue_is_full(sim: Any, start_worker: Any) -> None:
    from producers.publish import locate, publish
    from workers import app
    from workers.jobs import JobStore

    settings = load({**os.environ, "IMPORTQ_MAX_QUEUED_UNITS_SOURCING_DATA": "2"})
    store = JobStore(app.redis_client())
    first = publish_sourcing(sample_records(12_000))  # three units wait in the queue
    said: list[str] = []
    second: list[str] = []

    def publish_more() -> None:
        records = locate(sample_records(100, start=20_000))
        second.append(publish("sourcing_data", records, {"operation_id": "op"},
                              settings=settings, store=store, publish_unit=app.publish_unit,
                              notify=said.append))  # fmt: skip

    producer = threading.Thread(target=publish_more)
    producer.start()
    deadline = time.monotonic() + 30
    while not said:
        assert time.monotonic() < deadline, "the producer did not say it waits"
        time.sleep(0.05)
    assert not second  # still holding: nothing staged or sent
    assert "waiting: the sourcing_data queue holds 3 units (limit 2)" in said[0]
    start_worker(concurrency=2)
    producer.join(timeout=60)
    assert wait_for_job(first).state == "succeeded"
    assert wait_for_job(second[0]).state == "succeeded"
