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
    store, leases = JobStore(redis_client), Leases(redis_client, 0.6, 5)  # renewed every 0.2 s
    first, second = (_claimed(store, leases, n) for n in range(2))
    with Heartbeat(leases, *first, None) as one, Heartbeat(leases, *second, None) as two:
        time.sleep(1.0)  # past the lease: only renewals keep it
        for beat, (unit_id, _) in ((one, first), (two, second)):
            beat.check_lease()
            assert redis_client.pttl(keys.lease(unit_id)) > 300
    time.sleep(0.45)
    assert redis_client.pttl(keys.lease(first[0])) < 200  # not renewed once ended
