"""A worker cut off from Redis (a stalled proxy) for longer than the lease, mid-unit, while a
second worker takes the unit over: its vendor requests must stop (defect 7)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from importq.processes import Process
from tests.chaos.harness import (
    Fleet,
    Site,
    TargetJob,
    datasource_job,
    sourcing_data_job,
    wait_until,
)
from tests.faults import StallableProxy

pytestmark = pytest.mark.chaos

LATENCY = 0.3
JOBS: dict[str, Callable[[], TargetJob]] = {
    # One queue item: start, 7 appends, then polls.
    "sourcing_data": lambda: sourcing_data_job(4000, latency=LATENCY, concurrency=1),
    # One replace of 16 requests (a Rows, then NewRows) on one data source.
    "datasource": lambda: datasource_job(8000, per_request=500, latency=LATENCY),
}


@pytest.mark.parametrize("target", list(JOBS))
def test_a_worker_stalled_past_its_lease_sends_nothing_once_another_took_its_unit(
    target: str,
    fresh_simulators: dict[str, Any],
    session_site: Site,
    proxies: Callable[[str], StallableProxy],  # closed after the workers stopped
    fleets: Callable[[str], Fleet],
    figure: Callable[[str], None],
) -> None:
    spec = JOBS[target]()
    sim = spec.prepare(fresh_simulators)

    def attempts() -> int:
        """Attempts the vendor has seen begin: starts of a queue item, or replaces."""
        ledger = sim.ledger()
        if target == "sourcing_data":
            return int(ledger["requests_by_kind"]["start"])
        return sum(1 for op in ledger["operations"] if op["kind"] == "Rows")

    # Two workers, each reaching Redis through a proxy of its own.
    pairs: list[tuple[Process, StallableProxy]] = []
    for _ in range(2):
        proxy = proxies(session_site.url)
        pairs.append((fleets(proxy.url()).launch(target, 1, spec.worker_env), proxy))
    for worker, _ in pairs:
        worker.wait_ready()
    began = time.monotonic()
    job_id = session_site.publish_job(spec)
    worker, proxy = wait_until("a worker to take the unit", lambda: _taker(pairs))
    wait_until("it to be mid-unit", lambda: spec.progress(fresh_simulators) >= 3)
    proxy.stall()
    stalled_at = time.monotonic()
    try:
        # Its lease runs out; the other worker takes the unit and starts it over.
        wait_until("the other worker to take the unit over", lambda: attempts() >= 2, timeout=120)
        # Cut off for longer than a whole lease, whenever its last renewal was.
        time.sleep(max(0.0, float(_lease()) + 0.5 - (time.monotonic() - stalled_at)))
    finally:
        proxy.resume()  # the first worker hears from Redis again while the other one works
    stalled = time.monotonic() - stalled_at
    job = session_site.wait_job(job_id)
    _quiet(spec, fresh_simulators)  # let any late request of the first worker land
    verdict = spec.verdict(fresh_simulators, job, session_site)
    lease = _lease()
    figure(f"chaos {target} Redis stall {stalled:.1f} s (lease {lease} s) of one of two workers: "
           f"{verdict.line()}, job {job.state}, {time.monotonic() - began:.0f} s")  # fmt: skip
    assert (verdict.lost, verdict.twice) == (0, 0), verdict
    assert job.state == "succeeded", job


def _lease() -> str:
    """The lease the workers run with (tests/conftest.py's TEST_ENV)."""
    from tests.conftest import TEST_ENV

    return TEST_ENV["IMPORTQ_LEASE_SECONDS"]


def _taker(
    pairs: list[tuple[Process, StallableProxy]],
) -> tuple[Process, StallableProxy] | None:
    """The worker whose log shows it received the unit's message."""
    for worker, proxy in pairs:
        if b"] received" in worker.log_path.read_bytes():
            return worker, proxy
    return None


def _quiet(spec: TargetJob, sims: dict[str, Any], seconds: float = 1.0) -> None:
    """Wait until the vendor has seen no request for `seconds` (at most a minute)."""
    deadline = time.monotonic() + 60
    last, since = spec.progress(sims), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < seconds:
        time.sleep(0.1)
        now = spec.progress(sims)
        if now != last:
            last, since = now, time.monotonic()
