"""SIGTERM hands a unit back; the worker that resumed it is then killed mid-append (defect 1)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.chaos.harness import Fleet, Site, sourcing_data_job, wait_until

pytestmark = pytest.mark.chaos

LATENCY = 0.3  # long enough that the kill lands while an append is on the wire
# While the second worker boots, the vendor answers this slowly, so the queue item is still
# open when the first worker is told to stop, however long the boot takes on a busy machine.
BOOTING_LATENCY = 2.0


def test_sigterm_then_sigkill_of_the_resuming_worker_commits_each_record_once(
    fresh_simulators: dict[str, Any],
    session_site: Site,
    fleets: Callable[[str], Fleet],
    figure: Callable[[str], None],
) -> None:
    spec = sourcing_data_job(4000, latency=LATENCY, concurrency=1)  # one item: start + 7 appends
    sim = spec.prepare(fresh_simulators)

    def appends() -> int:
        return int(sim.ledger()["requests_by_kind"]["append"])

    fleet = fleets(session_site.url)
    began = time.monotonic()
    first = fleet.start("sourcing_data", 1)
    job_id = session_site.publish_job(spec)
    second = fleet.launch("sourcing_data", 1)  # idle until the unit comes back
    wait_until("the first append", lambda: appends() >= 1)
    sim.configure(latency_seconds=BOOTING_LATENCY)
    second.wait_ready()
    sim.configure(latency_seconds=LATENCY)
    os.kill(first.process.pid, signal.SIGTERM)  # hands the unit back at its next checkpoint
    wait_until("the second worker to resume the unit",
               lambda: b"earlier queue item found" in second.log_path.read_bytes())  # fmt: skip
    spare = fleet.launch("sourcing_data", 1)  # idle: the one unit is the second's
    resumed = appends()
    wait_until("the resuming worker to append", lambda: appends() > resumed)
    time.sleep(LATENCY / 2)  # its next append is in flight: the vendor will take it
    fleet.kill(second)
    spare.wait_ready()
    first.process.wait(timeout=60)
    job = session_site.wait_job(job_id, fleet=fleet)
    verdict = spec.verdict(fresh_simulators, job, session_site)
    figure(f"chaos sourcing_data SIGTERM then kill -9 of the resuming worker: {verdict.line()}, "
           f"job {job.state}, {time.monotonic() - began:.0f} s")  # fmt: skip
    assert (verdict.lost, verdict.twice) == (0, 0), verdict
    assert job.state == "succeeded", job
