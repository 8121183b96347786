"""One import per Blue instance, through the slot: held for a whole long prepare, spaced by a gap.

Real Celery workers on the `blue` queue, the session Redis, the simulator over
HTTP. The slot is the first line: a unit that finds it taken never talks to
Blue. The check of GetCurrentImportingDataSourceProcess behind it would keep a
second import from opening too, so these tests look at what Blue is asked
while another import runs, not only at the imports it opened.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import wait_for_job, wait_until
from workers.jobs import JobStore

# What a second import would ask Blue before and while registering.
SECOND_IMPORT_CALLS = (
    "GetDataSourceList",
    "GetDataBlockInformation",
    "GetCurrentImportingDataSourceProcess",
    "RegisterImport",
)
BLUE_ENV = {"BLUE_FOREIGN_RETRY": "0.5", "BLUE_BUSY_RETRY": "0.2"}


def users(count: int, start: int = 0) -> Iterator[dict[str, Any]]:
    for n in range(start, start + count):
        yield {"USER_ID": f"u{n:05d}", "FIRST_NAME": f"First {n}", "LAST_NAME": f"Last {n}",
               "EMAIL": f"u{n:05d}@example.edu"}  # fmt: skip


def publish_blue(records: Any) -> str:
    from producers.publish import locate, publish
    from workers import app

    return publish("blue", locate(records), {"datasource": "Users"}, settings=app.settings(),
                   store=JobStore(app.redis_client()), publish_unit=app.publish_unit)  # fmt: skip


def unit_of(job_id: str) -> dict[str, str]:
    from workers import app

    return JobStore(app.redis_client()).unit(f"{job_id}:0")


@pytest.fixture
def blue(fresh_simulators: dict[str, Any]) -> Any:
    return fresh_simulators["blue"]


def preparing(blue: Any) -> dict[str, Any] | None:
    """The ledger, if an import is preparing right now (one lock: requests match the state)."""
    ledger: dict[str, Any] = blue.ledger()
    return ledger if ledger["transactions"].get("preparing") else None


def test_a_unit_waiting_for_the_slot_asks_blue_nothing_during_a_prepare_of_many_leases(
    blue: Any, start_worker: Any
) -> None:
    from workers import app

    lease = app.settings().lease_seconds
    # A prepare three leases long: the slot lives only as long as the heartbeat renews it.
    blue.configure(prepare_seconds=3 * lease)
    for _ in range(2):  # two machines: the second unit has a worker of its own
        start_worker(queues="blue", concurrency=1, **BLUE_ENV)
    first = publish_blue(users(20))
    wait_until("the first import to prepare", lambda: preparing(blue))
    time.sleep(1.5 * lease)  # an unrenewed slot, or one with room for two, would be free now
    second = publish_blue(users(20, start=20))
    before = preparing(blue)
    assert before is not None, "the prepare ended before the second job was published"
    # The second unit was claimed, found the slot taken and went back to wait.
    wait_until("the second unit to wait", lambda: unit_of(second).get("state") == "waiting")
    during = preparing(blue)
    assert during is not None, "the prepare ended too soon to judge the second unit"
    asked = {op: during["requests"].get(op, 0) - before["requests"].get(op, 0)
             for op in SECOND_IMPORT_CALLS}  # fmt: skip
    assert asked == dict.fromkeys(SECOND_IMPORT_CALLS, 0), (asked, unit_of(second))
    assert "open on Blue" not in unit_of(second).get("last_error", "")
    blue.configure(prepare_seconds=0.05)  # the second import need not be as slow

    for job_id in (first, second):
        assert wait_for_job(job_id, timeout=120).state == "succeeded"
    ledger = blue.ledger()
    assert ledger["transactions"] == {"finalized": 2}
    assert (ledger["max_open"], ledger["overlaps"]) == (1, 0)
    assert ledger["committed_rows"] == 40 and ledger["duplicates"] == 0


def test_the_import_gap_keeps_the_instance_closed_between_two_imports(
    blue: Any, start_worker: Any
) -> None:
    gap = 2.0
    start_worker(queues="blue", concurrency=1, BLUE_IMPORT_GAP=str(gap), **BLUE_ENV)
    jobs = [publish_blue(users(10, start=10 * n)) for n in range(2)]
    for job_id in jobs:
        assert wait_for_job(job_id, timeout=60).state == "succeeded"
    timeline = sorted(blue.ledger()["timeline"], key=lambda t: t["registered_at"])
    assert [t["state"] for t in timeline] == ["finalized", "finalized"]
    closed_for = timeline[1]["registered_at"] - timeline[0]["ended_at"]
    assert closed_for >= gap - 0.01, closed_for  # a lower bound: a slow machine only adds
