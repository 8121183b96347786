"""What the runner promises whoever sends the message: due times, resume points, budgets.

The runner runs in this process against the session Redis with a scripted sink
(tests/scripted.py); a second message for a unit is simply a second
`runner.run` call, which is all a duplicate Celery message amounts to.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from importq.cli import main
from importq.errors import RetryableError, VendorBusy
from tests.faults import StallableProxy
from tests.scripted import TARGET, MakeRunner, Published, ScriptedSink, register, staged_unit
from workers import keys
from workers.heartbeat import Heartbeat
from workers.jobs import JobStore, UnitState
from workers.leases import Finish, Leases
from workers.routing import FREE_HANDBACKS
from workers.runner import MISSING_PAYLOAD
from workers.signals import HandBack, LeaseUnconfirmed

LATER = 40.0  # seconds: a due time far enough ahead that no test run reaches it


def test_an_early_message_reschedules_the_unit_without_running_it(
    sink: ScriptedSink, make_runner: MakeRunner, published: Published
) -> None:
    runner, store = make_runner()
    unit_id = staged_unit(store)
    sink.error = RetryableError("503", target=TARGET, retry_after=LATER)
    assert runner.run(TARGET, unit_id) == "waiting"
    due = float(store.unit(unit_id)["next_attempt_at"])
    published.calls.clear()
    sink.error = None
    assert runner.run(TARGET, unit_id) == "early"  # a reaper copy, a woken waiter...
    assert sink.runs == 1
    unit = store.unit(unit_id)
    assert unit["attempts"] == "1" and unit["state"] == "waiting"
    assert float(unit["next_attempt_at"]) == due  # the due time stands
    ((again, _, countdown),) = published.calls  # sent once more, for when it is due
    assert again == unit_id and countdown is not None and countdown >= LATER - 1


def test_a_unit_is_claimed_once_its_due_time_has_come(
    sink: ScriptedSink, make_runner: MakeRunner, redis_client: redis.Redis
) -> None:
    runner, store = make_runner()
    unit_id = staged_unit(store)
    sink.error = RetryableError("503", target=TARGET, retry_after=LATER)
    runner.run(TARGET, unit_id)
    redis_client.hset(keys.unit(unit_id), "next_attempt_at", time.time() - 1)
    sink.error = None
    assert runner.run(TARGET, unit_id) == "succeeded"


def test_waking_a_waiter_makes_it_due_only_for_what_it_waits_for(
    store_and_leases: tuple[JobStore, Leases],
) -> None:
    store, leases = store_and_leases
    unit_id = staged_unit(store)
    claim = leases.claim(unit_id, max_crashes=5)
    due = time.time() + LATER
    fields = {"next_attempt_at": str(due), "waits_for": "slot"}
    waiting = Finish(UnitState.WAITING, terminal=False, fields=fields, attempts_delta=-1)
    assert leases.finish(unit_id, claim.token, waiting)
    assert leases.claim(unit_id, max_crashes=5).status == "early"
    assert not leases.wake(unit_id, "turn")  # it waits for a slot, not a turn
    assert leases.claim(unit_id, max_crashes=5).status == "early"
    assert leases.wake(unit_id, "slot")
    assert leases.claim(unit_id, max_crashes=5).status == "claimed"


def test_a_hand_back_is_trusted_by_one_claim_only(
    store_and_leases: tuple[JobStore, Leases], redis_client: redis.Redis
) -> None:
    store, _ = store_and_leases
    leases = Leases(redis_client, lease_seconds=0.3, grace_seconds=5)
    unit_id = staged_unit(store)
    first = leases.claim(unit_id, max_crashes=5)
    back = Finish(UnitState.WAITING, terminal=False, fields={"handed_back": "1"})
    assert leases.finish(unit_id, first.token, back)
    resumed = leases.claim(unit_id, max_crashes=5)
    assert resumed.status == "claimed" and resumed.handed_back
    time.sleep(0.5)  # the resuming worker is SIGKILLed: its lease runs out, no finish
    after_crash = leases.claim(unit_id, max_crashes=5)
    assert after_crash.status == "claimed" and after_crash.crashes == 1
    assert not after_crash.handed_back  # its checkpoint may have been overtaken


def test_a_unit_whose_records_are_missing_fails_with_that_reason(
    sink: ScriptedSink, make_runner: MakeRunner, redis_client: redis.Redis
) -> None:
    runner, store = make_runner()
    unit_id = staged_unit(store)
    redis_client.delete(keys.payload(unit_id))  # evicted, or deleted by hand
    assert runner.run(TARGET, unit_id) == "failed"
    assert sink.runs == 0  # no empty batch, no bare trigger
    assert store.unit(unit_id)["last_error"] == MISSING_PAYLOAD.format(key=keys.payload(unit_id))
    job = store.get(keys.job_of(unit_id))
    assert job is not None and job.state == "failed"
    # Listed among the dead letters, but not replayed as if it were a bare trigger.
    assert f"{job.id} {TARGET}: failed without records" in cli("dlq", "list").output
    refused = cli("dlq", "replay", job.id)
    assert refused.exit_code == 1 and "failed without records to replay" in refused.output
    assert f"publish its records again with `importq publish {TARGET}`" in refused.output
    assert redis_client.llen(keys.dead_letters(job.id)) == 1  # nothing dropped


def test_a_unit_whose_records_cannot_be_read_fails_with_that_reason(
    sink: ScriptedSink, make_runner: MakeRunner, redis_client: redis.Redis
) -> None:
    runner, store = make_runner()
    unit_id = staged_unit(store)
    redis_client.set(keys.payload(unit_id), b"overwritten by hand")
    assert runner.run(TARGET, unit_id) == "failed"  # not a crash retried until poisoned
    assert sink.runs == 0
    reason = store.unit(unit_id)["last_error"]
    assert "staged records cannot be read" in reason and "publish the records again" in reason
    aside = keys.unreadable_payload(unit_id)
    assert aside in reason  # kept for a look (the failing finish deletes the payload)
    assert redis_client.get(aside) == b"overwritten by hand"


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def test_hand_backs_stop_being_free_and_end_within_the_attempt_budget(
    sink: ScriptedSink, make_runner: MakeRunner
) -> None:
    runner, store = make_runner(IMPORTQ_MAX_ATTEMPTS="2")
    unit_id = staged_unit(store)
    sink.error = HandBack("the worker is shutting down")
    outcomes = [runner.run(TARGET, unit_id) for _ in range(FREE_HANDBACKS + 3)]
    assert outcomes[:FREE_HANDBACKS] == ["waiting"] * FREE_HANDBACKS
    assert store.unit(unit_id)["state"] == "failed"
    assert sink.runs == FREE_HANDBACKS + 2  # two counted hand-backs, then the budget is out
    assert "handed back" in store.unit(unit_id)["last_error"]


def test_a_wait_that_costs_no_attempt_has_a_ceiling(
    sink: ScriptedSink, make_runner: MakeRunner, redis_client: redis.Redis
) -> None:
    runner, store = make_runner(IMPORTQ_MAX_WAIT_SECONDS_SCRIPTED="600")
    unit_id = staged_unit(store)
    sink.error = VendorBusy("another import is open", target=TARGET)
    assert runner.run(TARGET, unit_id) == "waiting"
    since = float(store.unit(unit_id)["waiting_since"])
    # Ten minutes later, still the same answer: the ceiling is reached.
    redis_client.hset(keys.unit(unit_id), mapping={"waiting_since": since - 601,
                                                   "next_attempt_at": time.time() - 1})  # fmt: skip
    assert runner.run(TARGET, unit_id) == "failed"
    reason = store.unit(unit_id)["last_error"]
    assert "another import is open" in reason and "IMPORTQ_MAX_WAIT_SECONDS" in reason


def test_a_lease_that_redis_cannot_confirm_stops_the_next_vendor_request(
    store_and_leases: tuple[JobStore, Leases], redis_client: redis.Redis
) -> None:
    from importq import broker

    store, _ = store_and_leases
    address = redis_client.connection_pool.connection_kwargs
    proxy = StallableProxy(address["host"], address["port"])
    try:
        through = broker.impatient(
            redis.Redis(host="127.0.0.1", port=proxy.port, db=address.get("db", 0)), 0.2
        )
        leases = Leases(through, lease_seconds=1.2, grace_seconds=5)
        unit_id = staged_unit(store)
        claim = leases.claim(unit_id, max_crashes=5)
        with Heartbeat(leases, unit_id, claim.token, None, leased_at=claim.sent_at) as beat:
            beat.check_lease()  # renewed: fine
            proxy.stall()  # this worker is cut off from Redis; the lease still runs out
            deadline = time.monotonic() + 10
            with pytest.raises(LeaseUnconfirmed):
                while time.monotonic() < deadline:
                    beat.check_lease()
                    time.sleep(0.05)
            # It stopped within the lease: nobody else could have claimed the unit yet.
            assert redis_client.pttl(keys.lease(unit_id)) > 0
    finally:
        proxy.close()


@pytest.fixture
def store_and_leases(redis_client: redis.Redis) -> tuple[JobStore, Leases]:
    return JobStore(redis_client), Leases(redis_client, lease_seconds=30, grace_seconds=5)


def test_a_job_whose_producer_died_while_staging_is_discarded(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    dead = store.create(TARGET, {})  # the producer died before open(): nobody will open it
    store.stage_unit(dead, TARGET, 0, [{"n": 1}])
    alive = store.create(TARGET, {})  # still staging, just now
    opened = staged_unit(store)
    redis_client.zadd(keys.STAGING, {dead: time.time() - 7200})
    assert store.forget_abandoned_staging(3600) == [dead]
    assert redis_client.keys(f"importq:*{dead}*") == []
    assert store.get(alive) is not None and store.get(keys.job_of(opened)) is not None
    assert store.forget_abandoned_staging(3600) == []


class OrderedSink(ScriptedSink):
    """Jobs of this target run one after the other, in publish order."""

    def order_key(self, params: dict[str, object]) -> str | None:
        return "one-line"


def test_a_job_waiting_for_its_turn_is_woken_when_the_job_before_it_finishes(
    make_runner: MakeRunner, published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers import ordering

    register(monkeypatch, OrderedSink())
    runner, store = make_runner()
    first, second = staged_unit(store), staged_unit(store)
    for unit_id in (first, second):
        ordering.enqueue(store.redis, TARGET, "one-line", keys.job_of(unit_id))
    assert runner.run(TARGET, second) == "waiting"  # its turn has not come
    assert store.unit(second)["waits_for"] == "turn"
    published.calls.clear()
    assert runner.run(TARGET, first) == "succeeded"
    assert (second, TARGET, None) in published.calls  # woken at once, not after its backoff
    assert runner.run(TARGET, second) == "succeeded"


def test_a_lease_that_ran_out_unclaimed_is_still_the_holders(
    store_and_leases: tuple[JobStore, Leases], redis_client: redis.Redis
) -> None:
    store, _ = store_and_leases
    leases = Leases(redis_client, lease_seconds=0.2, grace_seconds=5)
    starved, taken = staged_unit(store), staged_unit(store)
    late = leases.claim(starved, max_crashes=5)
    time.sleep(0.4)  # its heartbeat was starved past the TTL; nobody claimed the unit
    assert leases.renew(starved, late.token)  # still its own: no crash to count
    assert leases.finish(starved, late.token, Finish(UnitState.SUCCEEDED, terminal=True))
    first = leases.claim(taken, max_crashes=5)
    time.sleep(0.4)
    second = leases.claim(taken, max_crashes=5)  # a successor took it over
    assert second.status == "claimed" and second.crashes == 1
    assert not leases.renew(taken, first.token)
    assert not leases.remember(taken, first.token, {"remote.x": "1"})
    assert not leases.finish(taken, first.token, Finish(UnitState.SUCCEEDED, terminal=True))
