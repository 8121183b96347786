"""Redis restarts (SIGTERM, SIGKILL) with AOF, and CLIENT KILL of every connection, mid-job."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.chaos.harness import (
    RANDOM,
    ROUNDS,
    Fleet,
    Site,
    mid_job,
    sourcing_data_job,
    wait_until,
)
from tests.faults import AofRedis

pytestmark = pytest.mark.chaos

# `docker stop`'s default grace before SIGKILL, and then some for a busy machine.
GRACE_SECONDS = 15


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_redis_restarts_with_aof_mid_job_lose_nothing_and_commit_nothing_twice(
    signum: signal.Signals,
    fresh_simulators: dict[str, Any],
    aof_redis: AofRedis,
    aof_site: Site,
    fleets: Callable[[str], Fleet],
    figure: Callable[[str], None],
) -> None:
    spec = sourcing_data_job(4000 * 3, latency=0.1, concurrency=2)
    spec.prepare(fresh_simulators)
    fleet = fleets(aof_redis.url)
    began = time.monotonic()
    fleet.start("sourcing_data", spec.concurrency)
    job_id = aof_site.publish_job(spec)
    for _ in range(max(1, ROUNDS // 4)):
        if not mid_job(spec, fresh_simulators, aof_site, job_id, fleet):
            break
        aof_redis.restart(signum, down_seconds=RANDOM.uniform(0.2, 2.0))
    job = aof_site.wait_job(job_id, fleet=fleet)
    verdict = spec.verdict(fresh_simulators, job, aof_site)
    figure(f"chaos sourcing_data Redis {signum.name} restart x{aof_redis.restarts} (AOF): "
           f"{verdict.line()}, {job.crashes} crashes recovered, job {job.state}, "
           f"{time.monotonic() - began:.0f} s")  # fmt: skip
    assert (verdict.lost, verdict.twice) == (0, 0), verdict
    assert job.state == "succeeded", job


def test_a_worker_polling_for_more_work_keeps_consuming_across_a_redis_restart(
    fresh_simulators: dict[str, Any],
    aof_redis: AofRedis,
    aof_site: Site,
    fleets: Callable[[str], Fleet],
) -> None:
    """One unit runs and the worker's free process waits on the queue (a BRPOP in flight)
    when Redis goes away. kombu 5.7 used to end the worker ("'NoneType' object has no
    attribute 'hostname'") while closing the lost connection, or else when the running
    unit's message was acknowledged; nothing consumed after."""
    running = sourcing_data_job(4000, latency=0.3, concurrency=2)  # 8 requests: seconds
    running.prepare(fresh_simulators)
    fleet = fleets(aof_redis.url)
    worker = fleet.start("sourcing_data", running.concurrency)
    first = aof_site.publish_job(running)
    wait_until("the unit's first request", lambda: running.progress(fresh_simulators) >= 1)
    aof_redis.restart(signal.SIGTERM, down_seconds=0.5)
    jobs = [aof_site.wait_job(first, timeout=60, fleet=fleet)]
    # Its message, delivered before the restart, is acknowledged: gone from kombu's hash.
    wait_until("the unit's message to be acknowledged", lambda: not _unacked(aof_site), 30)
    after = aof_site.publish_job(sourcing_data_job(500, latency=0.0))
    jobs.append(aof_site.wait_job(after, timeout=60, fleet=fleet))
    assert [job.state for job in jobs] == ["succeeded", "succeeded"], jobs
    assert worker.process.poll() is None, "the worker exited after the restart"


def _unacked(site: Site) -> int:
    """Messages kombu delivered to a worker that no one acknowledged yet."""
    return int(site.redis.hlen("unacked"))


def test_client_kill_of_every_connection_mid_job_loses_nothing_and_commits_nothing_twice(
    fresh_simulators: dict[str, Any],
    session_site: Site,
    fleets: Callable[[str], Fleet],
    figure: Callable[[str], None],
) -> None:
    spec = sourcing_data_job(4000 * 3, latency=0.1, concurrency=2)
    spec.prepare(fresh_simulators)
    fleet = fleets(session_site.url)
    began = time.monotonic()
    fleet.start("sourcing_data", spec.concurrency)
    job_id = session_site.publish_job(spec)
    kills, dropped = 0, 0
    for _ in range(ROUNDS):
        if not mid_job(spec, fresh_simulators, session_site, job_id, fleet):
            break
        dropped += kill_every_client(session_site.redis)
        kills += 1
    job = session_site.wait_job(job_id, fleet=fleet)
    verdict = spec.verdict(fresh_simulators, job, session_site)
    figure(f"chaos sourcing_data CLIENT KILL x{kills} ({dropped} connections): "
           f"{verdict.line()}, job {job.state}, {time.monotonic() - began:.0f} s")  # fmt: skip
    assert (verdict.lost, verdict.twice) == (0, 0), verdict
    assert job.state == "succeeded", job


def kill_every_client(client: redis.Redis) -> int:
    """CLIENT KILL of every connection but the caller's; how many were dropped."""
    mine = int(client.client_id())
    dropped = 0
    for entry in client.client_list():
        if int(entry["id"]) != mine:
            with contextlib.suppress(redis.ResponseError):  # it went away by itself
                dropped += int(client.client_kill_filter(_id=str(entry["id"])))
    return dropped


def test_a_worker_asked_to_stop_while_redis_is_down_exits_within_a_containers_grace(
    aof_redis: AofRedis, fleets: Callable[[str], Fleet]
) -> None:
    """`docker stop` gives a worker 10 s before SIGKILL. Its shutdown signal and consumer
    heartbeat writes used to ride out the Redis client's ~45 s outage window first."""
    worker = fleets(aof_redis.url).start("sourcing_data", 1)
    aof_redis.signal_stop(signal.SIGKILL)
    os.kill(worker.process.pid, signal.SIGTERM)
    try:
        worker.process.wait(timeout=GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker was still stopping after {GRACE_SECONDS} s with Redis down")
    assert "could not" in worker.log_path.read_text()  # it said what it could not do
