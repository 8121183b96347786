"""A unit's Celery message deleted from its queue before any worker runs it (defect 4)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.chaos.harness import CHAOS_ENV, Fleet, Site, sourcing_data_job

pytestmark = pytest.mark.chaos

RESCUE = float(CHAOS_ENV["IMPORTQ_RESCUE_SECONDS"])


def test_a_message_deleted_from_its_queue_is_sent_again_and_the_job_finishes(
    fresh_simulators: dict[str, Any],
    session_site: Site,
    fleets: Callable[[str], Fleet],
    figure: Callable[[str], None],
) -> None:
    spec = sourcing_data_job(4000 * 2, latency=0.0, concurrency=2)
    spec.prepare(fresh_simulators)
    target, queue = spec.target, spec.target  # kombu's Redis transport: a list named the queue
    lost: list[str] = []

    def publish_then_lose(unit_id: str, unit_target: str, countdown: float | None = None) -> None:
        session_site.publish_unit(unit_id, unit_target, countdown)
        if not lost:  # the first unit's message vanishes (a BRPOP gap, a Redis SIGKILL)
            for message in session_site.redis.lrange(queue, 0, -1):
                if isinstance(message, bytes) and unit_id.encode() in message:
                    assert session_site.redis.lrem(queue, 0, message) == 1  # type: ignore[arg-type]
                    lost.append(unit_id)

    job_id = session_site.publish_job(spec, publish_unit=publish_then_lose)
    assert lost, "the message was not found in its queue"
    assert session_site.redis.llen(queue) == 1  # only the second unit's message is left
    fleet = fleets(session_site.url)
    began = time.monotonic()
    fleet.start(target, spec.concurrency)
    job = session_site.wait_job(job_id, timeout=20 * RESCUE + 30, fleet=fleet)
    took = time.monotonic() - began
    verdict = spec.verdict(fresh_simulators, job, session_site)
    figure(f"chaos sourcing_data message deleted from its queue: {verdict.line()}, job "
           f"{job.state} {took:.0f} s after the worker started "
           f"(IMPORTQ_RESCUE_SECONDS={RESCUE:g})")  # fmt: skip
    assert (verdict.lost, verdict.twice) == (0, 0), verdict
    assert job.state == "succeeded", job
