"""A vendor outage far longer than every unit's attempt budget dead-letters nothing.

The SourcingData stand-in answers every request with 503 for CHAOS_OUTAGE_SECONDS
(a few seconds in `make test`, five minutes in `make chaos`) while the workers
have two attempts and sub-second backoff: without the circuit breaker the whole
job would be dead-lettered within the first seconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.chaos.harness import Fleet, Site, sourcing_data_job, wait_until
from workers import keys

OUTAGE = float(os.environ.get("CHAOS_OUTAGE_SECONDS", "6"))
pytestmark = [pytest.mark.chaos, pytest.mark.timeout(OUTAGE + 300)]
PAUSING = {"IMPORTQ_MAX_ATTEMPTS": "2", "IMPORTQ_BREAKER_FAILURES": "2",
           "IMPORTQ_BREAKER_PROBE_SECONDS": "0.5", "IMPORTQ_BREAKER_PROBE_MAX_SECONDS": "5",
           "SOURCING_DATA_RESEND_ATTEMPTS": "2"}  # fmt: skip


def test_a_vendor_outage_pauses_the_target_and_dead_letters_nothing(
    fresh_simulators: dict[str, Any],
    session_site: Site,
    fleets: Callable[[str], Fleet],
    figure: Callable[[str], None],
) -> None:
    spec = sourcing_data_job(4000 * 4, latency=0.0, concurrency=2)
    sim = spec.prepare(fresh_simulators)
    sim.configure(fault_rate=1.0, fault_statuses=(503,), retry_after_seconds=0)
    fleet = fleets(session_site.url)
    fleet.start(spec.target, spec.concurrency, {**spec.worker_env, **PAUSING})
    job_id = session_site.publish_job(spec)
    began = time.monotonic()
    wait_until("the target to pause", lambda: session_site.redis.exists(
        keys.breaker(spec.target)))  # fmt: skip
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - began)))
    during = session_site.job(job_id)
    assert during is not None and during.records_dead == 0 and not during.finished
    sim.configure(fault_rate=0.0)  # the vendor is back
    job = session_site.wait_job(job_id, fleet=fleet)
    resumed = time.monotonic() - began - OUTAGE
    verdict = spec.verdict(fresh_simulators, job, session_site)
    figure(f"chaos sourcing_data vendor outage {OUTAGE:.0f} s (2 attempts per unit): "
           f"{verdict.line()}, {job.records_dead} dead-lettered, job {job.state} "
           f"{resumed:.0f} s after the vendor came back")  # fmt: skip
    assert (verdict.lost, verdict.twice) == (0, 0), verdict
    assert job.state == "succeeded" and job.records_dead == 0, job
