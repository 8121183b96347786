"""kill -9 of the worker at random moments during a job, for four targets."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.chaos.harness import (
    ROUNDS,
    Fleet,
    Site,
    TargetJob,
    blue_job,
    datasource_job,
    mid_job,
    sourcing_data_job,
    sourcing_whole_job,
    workflow_job,
)

pytestmark = pytest.mark.chaos

# Each job outlasts ROUNDS kills: every kill costs the unit its progress so far.
JOBS: dict[str, Callable[[], TargetJob]] = {
    "sourcing_data": lambda: sourcing_data_job(4000 * (2 + ROUNDS // 2), latency=0.1),
    # Items of one request, each sent whole in its start (a kill may lose its answer).
    "sourcing_data_whole": lambda: sourcing_whole_job(50 * (40 + 12 * ROUNDS), 50, latency=0.5),
    "workflow_import": lambda: workflow_job(200 * (8 + 4 * ROUNDS), latency=0.4),
    "datasource": lambda: datasource_job(6000, latency=0.15),  # 12 requests
    "blue": lambda: blue_job(2000, latency=0.03),  # 20 pushes
}


@pytest.mark.parametrize("target", list(JOBS))
def test_kill_9_at_random_moments_loses_nothing_and_commits_nothing_twice(
    target: str,
    fresh_simulators: dict[str, Any],
    session_site: Site,
    fleets: Callable[[str], Fleet],
    figure: Callable[[str], None],
) -> None:
    spec = JOBS[target]()
    # Every kill is a worker death on the unit: past IMPORTQ_MAX_CRASHES (5) a unit counts as
    # a poison pill and fails, by design. This scenario is about recovery, so the cap is lifted.
    spec.worker_env["IMPORTQ_MAX_CRASHES"] = str(ROUNDS + 5)
    spec.prepare(fresh_simulators)
    fleet = fleets(session_site.url)
    began = time.monotonic()
    worker = fleet.start(spec.target, spec.concurrency, spec.worker_env)
    job_id = session_site.publish_job(spec)
    # A spare worker boots while the first works, so a kill does not wait for a start.
    spare = fleet.launch(spec.target, spec.concurrency, spec.worker_env)
    landed = 0
    for _ in range(ROUNDS):
        if not mid_job(spec, fresh_simulators, session_site, job_id, fleet):
            break
        fleet.kill(worker)
        landed += 1
        spare.wait_ready()
        worker, spare = spare, fleet.launch(spec.target, spec.concurrency, spec.worker_env)
    job = session_site.wait_job(job_id, fleet=fleet)
    verdict = spec.verdict(fresh_simulators, job, session_site)
    figure(f"chaos {target} kill -9 x{landed}: {verdict.line()}, {job.crashes} crashes "
           f"recovered, job {job.state}, {time.monotonic() - began:.0f} s")  # fmt: skip
    assert (verdict.lost, verdict.twice) == (0, 0), verdict
    # Workflow Import cannot look a batch up: a kill during its POST holds the batch for
    # review (a possible duplicate), by design; nothing else may keep the job from succeeding.
    assert job.state == "succeeded" or job.records_dead == verdict.review > 0, job
