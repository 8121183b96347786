"""The heartbeat of running units: one thread per process renews every lease it holds."""

from __future__ import annotations

import threading
import time

import redis

from tests.scripted import TARGET
from workers import keys
from workers.heartbeat import Heartbeat
from workers.jobs import JobStore
from workers.leases import Leases


def _claimed(store: JobStore, leases: Leases, number: int) -> tuple[str, str]:
    job_id = store.create(TARGET, {})
    unit_id = store.stage_unit(job_id, TARGET, number, [{"n": number}])
    store.open(job_id)
    return unit_id, leases.claim(unit_id, max_crashes=5).token


def test_a_units_heartbeat_starts_no_thread_of_its_own(redis_client: redis.Redis) -> None:
    store, leases = JobStore(redis_client), Leases(redis_client, 30, 5)
    first, second = (_claimed(store, leases, n) for n in range(2))
    with Heartbeat(leases, *first, None):
        pass  # the process's beat thread is running from here on
    threads = threading.active_count()
    with Heartbeat(leases, *second, None):
        assert threading.active_count() == threads


def test_units_running_at_once_each_keep_their_lease_and_stop_renewing_when_ended(
    redis_client: redis.Redis,
) -> None:
    store, leases = JobStore(redis_client), Leases(redis_client, 1.5, 5)  # renewed every 0.5 s
    first, second = (_claimed(store, leases, n) for n in range(2))
    with Heartbeat(leases, *first, None) as one, Heartbeat(leases, *second, None) as two:
        deadline = time.monotonic() + 3.0  # twice the lease: only renewals keep it
        while time.monotonic() < deadline:
            assert all(redis_client.exists(keys.lease(unit)) for unit, _ in (first, second))
            time.sleep(0.05)
        for beat in (one, two):
            beat.check_lease()
    deadline = time.monotonic() + 5.0
    while redis_client.exists(keys.lease(first[0])):  # not renewed once ended: it runs out
        assert time.monotonic() < deadline, "the lease was still renewed after its unit ended"
        time.sleep(0.05)
