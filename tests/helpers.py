"""Small helpers the integration tests share: sample records, publishing, waiting."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

from workers.breaker import Breaker, Pause
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
        settings=app.settings(),
        store=JobStore(app.redis_client()),
        publish_unit=app.publish_unit,
    )


def wait_for_job(job_id: str, timeout: float = 120) -> JobView:
    from workers import app

    return finished_job(job_id, JobStore(app.redis_client()).get, timeout)


def finished_job(job_id: str, read: Callable[[str], JobView | None], timeout: float) -> JobView:
    """The job once `read` shows it finished; fails with its last state after `timeout` s."""

    def finished() -> JobView | None:
        job = read(job_id)
        return job if job is not None and job.finished else None

    try:
        found: JobView = wait_until(f"job {job_id} to finish", finished, timeout)
    except AssertionError:
        last = read(job_id)
        raise AssertionError(f"job {job_id} did not finish in {timeout:.0f} s: {last}") from None
    return found


def jsonl(*records: Any) -> str:
    """JSON Lines of the records; a string is written as it is (a deliberately bad line)."""
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"


def publish_file(tmp_path: Path, target: str, name: str, content: str, *options: str) -> Any:
    """`importq publish TARGET FILE OPTIONS...` through the CLI, FILE holding `content`."""
    from click.testing import CliRunner

    from importq.cli import main

    path = tmp_path / name
    path.write_text(content)
    return CliRunner().invoke(main, ["publish", target, str(path), *options])


def nothing_enqueued(client: redis.Redis, target: str) -> None:
    """No job staged or listed and no message queued: a refusal left no trace."""
    assert client.keys("importq:*") == []
    assert client.llen(target) == 0


def wait_for_pause(target: str, timeout: float = 60) -> Pause:
    """The target's pause (workers/breaker.py), once a worker has paused it."""
    from workers import app

    breaker = Breaker(app.redis_client(), app.settings())
    deadline = time.monotonic() + timeout
    while (pause := breaker.pause(target)) is None:
        assert time.monotonic() < deadline, f"{target} was not paused"
        time.sleep(0.05)
    return pause


# A paused target probes this often in tests, so fixed credentials resume it at once.
QUICK_PROBES = {"IMPORTQ_BREAKER_PROBE_SECONDS": "0.3", "IMPORTQ_BREAKER_PROBE_MAX_SECONDS": "1"}


def wait_until(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    """What `check` returns once it is truthy; fails naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
