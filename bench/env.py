"""What the benchmarks run against: a private Redis, the simulator, a celery worker, records.

Everything listens on 127.0.0.1 only, and every context manager here stops what it
started when its block ends, on error too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from importq import broker
from importq.processes import Process, celery_worker_command

AGENT = "bench-agent"
TOKEN = "bench-fake-token"  # the simulator's own; not a real credential
OPERATION = "bench-operation"

ProcessT = TypeVar("ProcessT", bound=Process)


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `finally` blocks stop what the benchmark started."""

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)


free_port = broker.free_port  # the benchmarks and the tests share one way to pick ports


def _stop_process(process: subprocess.Popen[bytes], *, group: bool, timeout: float) -> None:
    """SIGTERM `process` (its whole group if `group`), then SIGKILL if it does not exit."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(process.pid, signal.SIGTERM)
        else:
            process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A throwaway Redis (no persistence) on a free port; yields its URL."""
    data_dir = Path(tempfile.mkdtemp(prefix="importq-bench-redis-"))
    process, url = broker.start_private(data_dir)
    try:
        yield url
    finally:
        _stop_process(process, group=False, timeout=10)
        shutil.rmtree(data_dir, ignore_errors=True)


class Worker(Process):
    """One `celery -A workers.app worker` process with its pool, in its own process group."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        concurrency: int,
        queue: str = "sourcing_data",
        name: str = "",
    ) -> None:
        log_path.write_bytes(b"")
        name = name or f"bench-{os.getpid()}@localhost"
        super().__init__(celery_worker_command(queue, concurrency, name), env, log_path)


@contextlib.contextmanager
def ready(process: ProcessT) -> Iterator[ProcessT]:
    """`process` once ready, stopped (its whole process group) when the block ends."""
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def worker(
    env: dict[str, str], log_path: Path, concurrency: int, name: str = ""
) -> contextlib.AbstractContextManager[Worker]:
    """A started and ready importq worker, stopped when the block ends; `name`: its node name
    (default: one per benchmark process)."""
    return ready(Worker(env, log_path, concurrency, name=name))


def sample_record(number: int) -> dict[str, Any]:
    """One SourcingData record of typical shape (about 300 bytes as JSON, as in issue 15)."""
    return {
        "entityId": "ORG_DEPT",
        "recordId": f"dept-{number:07d}",
        "data": {
            "Code": f"D{number:07d}",
            "Name": f"Department {number}",
            "Type": "Workroom",
            "Description": f"Workroom {number % 1000} of the north building, floor {number % 7}",
            "Manager": f"employee-{number % 5003:05d}",
            "ValidFrom": "2026-01-01",
        },
        "customData": {"CostCentre": f"CC{number % 97:02d}", "Region": "EMEA"},
    }


def sample_records(count: int) -> list[dict[str, Any]]:
    return [sample_record(n) for n in range(count)]


def write_jsonl(path: Path, count: int) -> Path:
    """A JSON Lines file of `count` sample records, written in blocks."""
    with path.open("w") as out:
        block: list[str] = []
        for n in range(count):
            block.append(json.dumps(sample_record(n)))
            if len(block) == 10_000:
                out.write("\n".join(block) + "\n")
                block.clear()
        if block:
            out.write("\n".join(block) + "\n")
    return path
