"""The peer: what a team writes without importq, one plain Celery task per queue item.

Each message carries its item's records; the task posts them to SourcingData exactly as
the httpx baseline does (start + appends, then polls until Success). No staging, no
lease, no rate limit, no dead letters: the figure importq must at least match with all of
its guarantees.

    celery -A bench.peer worker -Q bench_peer -c C    (started by the benchmark)

Nothing is read at import: the worker takes its broker from CELERY_BROKER_URL and
CELERY_RESULT_BACKEND (Celery's own variables) and the vendor from SOURCING_DATA_URL.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from celery import Celery

from bench import env
from importq.processes import Process

QUEUE = "bench_peer"
RESULT_TIMEOUT_SECONDS = 600.0

app = Celery("bench_peer")
app.conf.update(task_default_queue=QUEUE, worker_hijack_root_logger=False)

_client: dict[str, httpx.Client] = {}  # one client per pool process, opened on first use


@app.task(name="bench.peer.send_records")
def send_records(records: list[dict[str, Any]], per_request: int, poll_interval: float) -> int:
    """Send one queue item's records; returns how many."""
    from bench.sourcing_throughput import send_item, vendor_client

    client = _client.get("vendor")
    if client is None:
        client = _client["vendor"] = vendor_client(os.environ["SOURCING_DATA_URL"])
    send_item(client, records, per_request, poll_interval)
    return len(records)


def use_broker(redis_url: str) -> dict[str, str]:
    """Point this process's peer app at `redis_url`'s db 1; the worker's environment."""
    url = urlsplit(redis_url)._replace(path="/1").geturl()
    app.conf.update(broker_url=url, result_backend=url)
    return {"CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url}


def worker(
    environ: dict[str, str], log_path: Path, concurrency: int
) -> AbstractContextManager[Process]:
    """A started `celery -A bench.peer worker`, its whole group stopped when the block ends."""
    log_path.write_bytes(b"")
    command = [sys.executable, "-m", "celery", "-A", "bench.peer", "worker", "-Q", QUEUE,
               "-c", str(concurrency), "-n", f"peer-{os.getpid()}@localhost",
               "--without-gossip", "--without-mingle", "--loglevel", "INFO"]  # fmt: skip
    return env.ready(Process(command, environ, log_path))


def run(items: list[list[dict[str, Any]]], per_request: int, poll_interval: float) -> float:
    """Send every item as one task and wait for all of them: the seconds it took."""
    started = time.perf_counter()
    results = [send_records.delay(item, per_request, poll_interval) for item in items]
    for result in results:
        result.get(timeout=RESULT_TIMEOUT_SECONDS)
    return time.perf_counter() - started
