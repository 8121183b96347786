"""Warm shutdown belongs to one worker process, even when node names are shared."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import redis

from tests.conftest import Worker
from tests.helpers import publish_sourcing, sample_records, wait_for_job

HAND_BACK = "goes back to the queue"


def test_workers_sharing_a_node_name_do_not_stop_each_other(
    sim: Any, tmp_path: Path, redis_client: redis.Redis
) -> None:
    sim.configure(latency_seconds=0.1)
    # Requests of 100 records: an item is a start and 39 appends, about 4 s of them, so
    # the SIGTERM below lands between two appends however busy the machine is.
    env = {**os.environ, "SOURCING_DATA_RECORDS_PER_REQUEST": "100"}
    # Two `celery -n twin@localhost` on one host: what two Procfile copies look like.
    twins = [Worker(tmp_path / f"twin{n}.log", "sourcing_data", 1, "twin@localhost", env)
             for n in range(2)]  # fmt: skip
    try:
        for twin in twins:
            twin.wait_ready()
        job_id = publish_sourcing(sample_records(8_000))  # two items, one for each twin
        deadline = time.monotonic() + 60
        while "queue item opened" not in twins[0].log_path.read_text():
            assert time.monotonic() < deadline, "the first twin never opened its item"
            time.sleep(0.02)
        stopping, staying = twins
        os.kill(stopping.process.pid, signal.SIGTERM)
        stopping.process.wait(timeout=60)
        job = wait_for_job(job_id, timeout=120)
        ledger = sim.ledger()
        assert job.state == "succeeded", job
        assert ledger["committed_records"] == 8_000 and ledger["duplicates"] == 0
        assert HAND_BACK in stopping.log_path.read_text()
        assert HAND_BACK not in staying.log_path.read_text()  # it was not asked to stop
        assert redis_client.keys("importq:shutdown:*") == []  # gone with its process
    finally:
        for twin in twins:
            twin.stop()
