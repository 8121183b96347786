"""Unit tests of the lease scripts and the derived job state, against the real test Redis."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis

from workers import keys
from workers.jobs import (
    JobState,
    JobStore,
    JobView,
    UnitState,
    as_text,
    decode_records,
    encode_records,
    unit_fields,
)
from workers.leases import Finish, Leases, now_ms

TARGET = "sourcing_data"
# Two kinds of lease, so no test depends on a machine being quick. A SHORT lease is only
# ever waited out (a slow machine sleeps longer: it is gone all the more); whatever must
# still be alive when it is checked holds a LONG lease (the `leases` fixture), and a test
# that needs such a lease to end makes it run out at once (lapse_lease, lapse_slot).
SHORT = 0.15  # seconds: a lease that expires within a test
EXPIRED = 0.2  # seconds to sleep so a SHORT lease is surely gone
LONG = 60  # seconds: a lease nothing in a test outlives
RESCUE_MS = 60_000  # staged units stay out of the reaper's way unless a test says otherwise


def records(count: int, first: int = 0) -> list[dict[str, Any]]:
    return [{"entityId": "E", "recordId": f"r-{n}"} for n in range(first, first + count)]


def staged_job(store: JobStore, *sizes: int, rescue_ms: int = RESCUE_MS) -> tuple[str, list[str]]:
    """An open job with one staged unit per size."""
    job_id = store.create(TARGET, {"operation_id": "op"})
    first = 0
    unit_ids = []
    for number, size in enumerate(sizes):
        unit_ids.append(
            store.stage_unit(job_id, TARGET, number, records(size, first), rescue_ms=rescue_ms)
        )
        first += size
    store.open(job_id)
    return job_id, unit_ids


def snapshot(client: redis.Redis) -> dict[Any, Any]:
    """Every key's value (not its TTL), to prove that a refused write changed nothing."""
    state: dict[Any, Any] = {}
    for key in sorted(client.keys("*")):
        kind = client.type(key)
        if kind == b"string":
            state[key] = client.get(key)
        elif kind == b"hash":
            state[key] = client.hgetall(key)
        elif kind == b"list":
            state[key] = client.lrange(key, 0, -1)
        elif kind == b"zset":
            state[key] = client.zrange(key, 0, -1, withscores=True)
        else:
            raise AssertionError(f"unexpected key type {kind!r} of {key!r}")
    return state


def done(state: str, **kw: Any) -> Finish:
    return Finish(state, terminal=True, **kw)


def lapse_lease(client: redis.Redis, unit_id: str) -> None:
    """The unit's lease runs out now, as when its holder stopped renewing it a lease ago."""
    client.pexpire(keys.lease(unit_id), 1)
    while client.exists(keys.lease(unit_id)):
        time.sleep(0.005)


def lapse_slot(client: redis.Redis, slot_key: str, member: str) -> None:
    """The member's place in the slot runs out now (its expiry score is in the past)."""
    client.zadd(slot_key, {member: now_ms() - 1}, xx=True)


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client)


@pytest.fixture
def leases(redis_client: redis.Redis) -> Leases:
    return Leases(redis_client, lease_seconds=LONG, grace_seconds=5)


@pytest.fixture
def short(redis_client: redis.Redis) -> Leases:
    return Leases(redis_client, lease_seconds=SHORT, grace_seconds=5)


# --- claim -------------------------------------------------------------------------------------


def test_first_claim_takes_the_lease_and_marks_the_unit_running(
    store: JobStore, leases: Leases, redis_client: redis.Redis
) -> None:
    job_id, (unit,) = staged_job(store, 3)
    claim = leases.claim(unit, max_crashes=5)
    assert claim.status == "claimed"
    assert (claim.epoch, claim.attempts, claim.crashes) == (1, 1, 0)
    assert claim.token
    assert redis_client.get(keys.lease(unit)) == claim.token.encode()
    fields = store.unit(unit)
    assert fields["state"] == UnitState.RUNNING
    assert fields["owner"] == claim.token
    assert redis_client.hexists(keys.job(job_id), "started_at")


def test_second_claim_while_the_lease_lives_is_held_and_changes_nothing(
    store: JobStore, leases: Leases, redis_client: redis.Redis
) -> None:
    _, (unit,) = staged_job(store, 3)
    first = leases.claim(unit, max_crashes=5)
    before = snapshot(redis_client)
    second = leases.claim(unit, max_crashes=5)
    assert second.status == "held"
    assert second.token == ""
    assert snapshot(redis_client) == before
    assert redis_client.get(keys.lease(unit)) == first.token.encode()


def test_claim_after_the_lease_expired_succeeds_and_counts_a_crash(
    store: JobStore, short: Leases
) -> None:
    job_id, (unit,) = staged_job(store, 3)
    first = short.claim(unit, max_crashes=5)
    time.sleep(EXPIRED)
    second = short.claim(unit, max_crashes=5)
    assert second.status == "claimed"
    assert second.token != first.token
    assert (second.epoch, second.attempts, second.crashes) == (2, 2, 1)
    assert store.unit(unit)["crashes"] == "1"
    job = store.get(job_id)
    assert job is not None
    assert job.crashes == 1


def test_unit_is_poisoned_once_it_crashed_max_crashes_times(store: JobStore, short: Leases) -> None:
    _, (unit,) = staged_job(store, 3)
    statuses = [short.claim(unit, max_crashes=2)]
    for _ in range(2):
        time.sleep(EXPIRED)  # the holder died: its lease runs out
        statuses.append(short.claim(unit, max_crashes=2))
    assert [c.status for c in statuses] == ["claimed", "claimed", "poisoned"]
    poisoned = statuses[-1]
    assert poisoned.crashes == 2
    assert poisoned.token  # the runner must be able to fail the unit under this lease


def test_claim_of_a_finished_or_unknown_unit_reports_it(store: JobStore, leases: Leases) -> None:
    _, (unit,) = staged_job(store, 1)
    claim = leases.claim(unit, max_crashes=5)
    assert leases.finish(unit, claim.token, done(UnitState.SUCCEEDED, delivered=1))
    assert leases.claim(unit, max_crashes=5).status == "done"
    assert leases.claim("nojob:0", max_crashes=5).status == "missing"


# --- fencing -----------------------------------------------------------------------------------


def test_stale_token_cannot_finish(
    store: JobStore, short: Leases, leases: Leases, redis_client: redis.Redis
) -> None:
    job_id, (unit,) = staged_job(store, 4)
    stale = short.claim(unit, max_crashes=5)
    time.sleep(EXPIRED)
    leases.claim(unit, max_crashes=5)  # the successor's lease lives through the test
    before = snapshot(redis_client)
    outcome = done(
        UnitState.FAILED,
        dead=4,
        dead_letters=[json.dumps({"record": r, "reason": "x"}) for r in records(4)],
        fields={"last_error": "x"},
    )
    assert short.finish(unit, stale.token, outcome) == 0
    assert snapshot(redis_client) == before
    assert redis_client.llen(keys.dead_letters(job_id)) == 0


def test_finish_without_any_lease_is_refused(
    store: JobStore, leases: Leases, redis_client: redis.Redis
) -> None:
    _, (unit,) = staged_job(store, 2)
    before = snapshot(redis_client)
    assert leases.finish(unit, "not-a-token", done(UnitState.SUCCEEDED, delivered=2)) == 0
    assert snapshot(redis_client) == before


def test_stale_token_cannot_renew(
    store: JobStore, short: Leases, leases: Leases, redis_client: redis.Redis
) -> None:
    _, (unit,) = staged_job(store, 1)
    stale = short.claim(unit, max_crashes=5)
    time.sleep(EXPIRED)
    live = leases.claim(unit, max_crashes=5)
    assert leases.renew(unit, stale.token) is False
    assert redis_client.get(keys.lease(unit)) == live.token.encode()
    assert leases.renew(unit, live.token) is True


def test_renew_pushes_the_lease_expiry_and_the_watch_deadline_forward(
    store: JobStore, leases: Leases, redis_client: redis.Redis
) -> None:
    _, (unit,) = staged_job(store, 1)
    claim = leases.claim(unit, max_crashes=5)
    redis_client.pexpire(keys.lease(unit), 5_000)  # as if most of the lease had gone by
    redis_client.zadd(keys.WATCH, {unit: now_ms()})
    before = now_ms()
    assert leases.renew(unit, claim.token)
    assert redis_client.pttl(keys.lease(unit)) > leases.lease_ms - 10_000
    score = redis_client.zscore(keys.WATCH, unit)
    assert score is not None
    assert score >= before + leases.lease_ms


def test_remember_is_fenced_on_the_lease(
    store: JobStore, leases: Leases, redis_client: redis.Redis
) -> None:
    _, (unit,) = staged_job(store, 1)
    stale = leases.claim(unit, max_crashes=5)
    assert leases.remember(unit, stale.token, {"remote.queue_item_id": "q-1"})
    lapse_lease(redis_client, unit)
    live = leases.claim(unit, max_crashes=5)
    assert leases.remember(unit, stale.token, {"remote.queue_item_id": "q-stale"}) is False
    assert store.unit(unit)["remote.queue_item_id"] == "q-1"
    assert leases.remember(unit, live.token, {"remote.queue_item_id": "q-2"})
    assert store.unit(unit)["remote.queue_item_id"] == "q-2"


# --- finish ------------------------------------------------------------------------------------


def test_terminal_finish_counts_records_and_drops_payload_lease_and_watch_entry(
    store: JobStore, leases: Leases, redis_client: redis.Redis
) -> None:
    job_id, (first, second) = staged_job(store, 3, 2)
    claim = leases.claim(first, max_crashes=5)
    outcome = done(UnitState.SUCCEEDED, delivered=3, fields={"delivered": "3"})
    assert leases.finish(first, claim.token, outcome) == 1  # recorded; the job goes on

    job = store.get(job_id)
    assert job is not None
    assert (job.units_total, job.units_done, job.records_delivered, job.records_dead) == (
        2,
        1,
        3,
        0,
    )
    assert job.state == JobState.RUNNING
    assert store.payload(first) is None
    assert store.payload(second) == records(2, 3)
    assert redis_client.zscore(keys.WATCH, first) is None
    assert redis_client.zscore(keys.WATCH, second) is not None
    assert redis_client.exists(keys.lease(first)) == 0
    fields = store.unit(first)
    assert (fields["state"], fields["owner"], fields["delivered"]) == ("succeeded", "", "3")
    assert not redis_client.hexists(keys.job(job_id), "finished_at")

    claim = leases.claim(second, max_crashes=5)
    assert leases.finish(second, claim.token, done(UnitState.FAILED, dead=2)) == 2  # job done
    job = store.get(job_id)
    assert job is not None
    assert (job.units_done, job.records_delivered, job.records_dead) == (2, 3, 2)
    assert job.state == JobState.PARTIAL
    assert redis_client.hexists(keys.job(job_id), "finished_at")


def test_the_finish_that_ends_a_job_answers_with_the_job_and_sets_its_expiry(
    store: JobStore, leases: Leases, redis_client: redis.Redis
) -> None:
    job_id, (first, second) = staged_job(store, 1, 1)
    claim = leases.claim(first, max_crashes=5)
    recorded = leases.record(first, claim.token, done(UnitState.SUCCEEDED, delivered=1), 600)
    assert (recorded.status, recorded.job) == (1, {})  # the job goes on
    assert redis_client.ttl(keys.job(job_id)) == -1
    claim = leases.claim(second, max_crashes=5)
    recorded = leases.record(second, claim.token, done(UnitState.SUCCEEDED, delivered=1), 600)
    # The job as it ended, read in the same step, and let go after the job TTL.
    assert recorded.status == 2 and recorded.job["records_delivered"] == "2"
    assert recorded.job["finished_at"]
    for key in (keys.job(job_id), keys.job_units(job_id), keys.unit(first), keys.unit(second)):
        assert 0 < redis_client.ttl(key) <= 600, key


@pytest.mark.parametrize(
    "outcome",
    [
        done(UnitState.FAILED, dead=1, dead_letters=['{"record": null}']),
        done(UnitState.SUCCEEDED, delivered=0, dead=1, dead_letters=['{"record": null}']),
        done(UnitState.FAILED),  # a failed bare trigger: no records, no letter of its own
    ],
    ids=["failed with a letter", "succeeded with a letter", "failed without letters"],
)
def test_a_job_with_dead_letters_stays_past_its_finish(
    outcome: Finish, store: JobStore, leases: Leases, redis_client: redis.Redis
) -> None:
    job_id, (unit,) = staged_job(store, 1)
    claim = leases.claim(unit, max_crashes=5)
    assert leases.record(unit, claim.token, outcome, 600).status == 2
    assert redis_client.ttl(keys.job(job_id)) == -1  # until its dead letters are replayed
    assert redis_client.ttl(keys.unit(unit)) == -1


def test_non_terminal_finish_keeps_the_payload_and_watches_the_retry_deadline(
    store: JobStore, leases: Leases, redis_client: redis.Redis
) -> None:
    job_id, (unit,) = staged_job(store, 2)
    claim = leases.claim(unit, max_crashes=5)
    deadline = now_ms() + 7_000
    outcome = Finish(UnitState.WAITING, terminal=False, retry=True, deadline_ms=deadline)
    assert leases.finish(unit, claim.token, outcome)
    assert store.payload(unit) == records(2)
    assert redis_client.zscore(keys.WATCH, unit) == deadline
    job = store.get(job_id)
    assert job is not None
    assert (job.units_done, job.retries) == (0, 1)
    assert store.unit(unit)["state"] == UnitState.WAITING
    assert leases.claim(unit, max_crashes=5).status == "claimed"  # the retry may claim it


def test_deferral_gives_back_the_attempt_without_counting_a_retry(
    store: JobStore, leases: Leases
) -> None:
    job_id, (unit,) = staged_job(store, 1)
    claim = leases.claim(unit, max_crashes=5)
    outcome = Finish(UnitState.WAITING, terminal=False, attempts_delta=-1, deadline_ms=now_ms())
    assert leases.finish(unit, claim.token, outcome)
    assert store.unit(unit)["attempts"] == "0"
    job = store.get(job_id)
    assert job is not None
    assert job.retries == 0


def test_split_creates_children_with_payloads_and_grows_units_total(
    store: JobStore, leases: Leases, redis_client: redis.Redis
) -> None:
    job_id, (unit,) = staged_job(store, 4)
    claim = leases.claim(unit, max_crashes=5)
    parts = (records(2), records(2, 2))
    children = [
        (f"{unit}.{i}", unit_fields(job_id, TARGET, len(part), unit), encode_records(part))
        for i, part in enumerate(parts)
    ]
    before = now_ms()
    outcome = done(UnitState.SPLIT, fields={"last_error": "bad record"}, children=children)
    assert leases.finish(unit, claim.token, outcome)

    job = store.get(job_id)
    assert job is not None
    assert (job.units_total, job.units_done, job.records_delivered) == (3, 1, 0)
    assert job.state == JobState.RUNNING
    assert store.unit_ids(job_id) == [unit, f"{unit}.0", f"{unit}.1"]
    assert store.payload(unit) is None
    for (child_id, _, _), part in zip(children, parts, strict=True):
        assert store.payload(child_id) == part
        fields = store.unit(child_id)
        assert (fields["state"], fields["parent"], fields["records"]) == ("queued", unit, "2")
        score = redis_client.zscore(keys.WATCH, child_id)
        assert score is not None
        assert before + leases.grace_ms <= score <= now_ms() + leases.grace_ms
        assert leases.claim(child_id, max_crashes=5).status == "claimed"


def test_dead_letters_land_in_the_list_and_index_with_the_finish(
    store: JobStore, leases: Leases, redis_client: redis.Redis
) -> None:
    job_id, (unit,) = staged_job(store, 2)
    claim = leases.claim(unit, max_crashes=5)
    letters = [json.dumps({"record": r, "reason": "refused"}) for r in records(2)]
    before = now_ms()
    outcome = done(UnitState.FAILED, dead=2, dead_letters=letters)
    assert leases.finish(unit, claim.token, outcome)
    stored = redis_client.lrange(keys.dead_letters(job_id), 0, -1)
    assert [as_text(x) for x in stored] == letters
    score = redis_client.zscore(keys.DLQ_INDEX, job_id)
    assert score is not None
    assert before <= score <= now_ms()
    job = store.get(job_id)
    assert job is not None
    assert (job.records_dead, job.state) == (2, JobState.FAILED)


def test_finish_without_dead_letters_leaves_the_dlq_index_alone(
    store: JobStore, leases: Leases, redis_client: redis.Redis
) -> None:
    _, (unit,) = staged_job(store, 1)
    claim = leases.claim(unit, max_crashes=5)
    assert leases.finish(unit, claim.token, done(UnitState.SUCCEEDED, delivered=1))
    assert redis_client.zcard(keys.DLQ_INDEX) == 0


# --- reaper ------------------------------------------------------------------------------------


def test_reap_returns_a_unit_whose_lease_expired_once_per_grace(
    store: JobStore, short: Leases, leases: Leases, redis_client: redis.Redis
) -> None:
    _, (lives, dies) = staged_job(store, 1, 1)
    leases.claim(lives, max_crashes=5)
    short.claim(dies, max_crashes=5)
    time.sleep(EXPIRED)  # the lease of `dies` and its watch deadline have passed
    assert short.reap() == [dies]  # `lives`: lease alive, deadline not reached
    score = redis_client.zscore(keys.WATCH, dies)
    assert score is not None
    assert score > now_ms() + short.grace_ms - 1_000  # pushed a grace period ahead
    assert short.reap() == []  # not re-published on every sweep


def test_reap_returns_a_waiting_unit_whose_deadline_passed(store: JobStore, leases: Leases) -> None:
    _, (overdue, pending) = staged_job(store, 1, 1)
    for unit, deadline in ((overdue, now_ms() - 1), (pending, now_ms() + 60_000)):
        claim = leases.claim(unit, max_crashes=5)
        outcome = Finish(UnitState.WAITING, terminal=False, retry=True, deadline_ms=deadline)
        assert leases.finish(unit, claim.token, outcome)
    assert leases.reap() == [overdue]


def test_reap_skips_a_unit_with_a_live_lease_even_when_its_deadline_passed(
    store: JobStore, leases: Leases, redis_client: redis.Redis
) -> None:
    _, (unit,) = staged_job(store, 1)
    leases.claim(unit, max_crashes=5)
    redis_client.zadd(keys.WATCH, {unit: 0})  # as if the deadline had passed
    assert leases.reap() == []
    score = redis_client.zscore(keys.WATCH, unit)
    assert score is not None
    assert score > now_ms()


def test_reap_rescues_a_unit_never_claimed_and_forgets_finished_ones(
    store: JobStore, leases: Leases, redis_client: redis.Redis
) -> None:
    _, (lost, finished) = staged_job(store, 1, 1, rescue_ms=0)
    claim = leases.claim(finished, max_crashes=5)
    assert leases.finish(finished, claim.token, done(UnitState.SUCCEEDED, delivered=1))
    redis_client.zadd(keys.WATCH, {finished: 0})  # a stale entry of a finished unit
    time.sleep(0.01)
    assert leases.reap() == [lost]
    assert redis_client.zscore(keys.WATCH, finished) is None


# --- in-flight slots ---------------------------------------------------------------------------


def test_slot_semaphore_admits_at_most_cap_holders(leases: Leases) -> None:
    slot = keys.slots(TARGET, "operation:op")
    assert leases.acquire_slot(slot, "u1", cap=2)
    assert leases.acquire_slot(slot, "u2", cap=2)
    assert not leases.acquire_slot(slot, "u3", cap=2)
    assert leases.acquire_slot(slot, "u1", cap=2)  # a holder renews its own slot
    leases.release_slot(slot, "u2")
    assert leases.acquire_slot(slot, "u3", cap=2)
    assert not leases.acquire_slot(slot, "u4", cap=2)


def test_slot_of_a_holder_that_stopped_renewing_expires(
    short: Leases, leases: Leases, redis_client: redis.Redis
) -> None:
    slot = keys.slots(TARGET, "operation:op")
    assert short.acquire_slot(slot, "dead", cap=1)
    time.sleep(EXPIRED)  # "dead" never renews its place
    assert leases.acquire_slot(slot, "next", cap=1)
    assert redis_client.zrange(slot, 0, -1) == [b"next"]
    assert not short.renew_slot(slot, "dead")  # the expired holder learns it lost its place
    assert leases.renew_slot(slot, "next")  # at once, maybe in the acquire's millisecond


def test_a_live_holder_keeps_others_out_until_its_place_runs_out(
    leases: Leases, redis_client: redis.Redis
) -> None:
    slot = keys.slots(TARGET, "operation:op")
    assert leases.acquire_slot(slot, "holder", cap=1)
    assert not leases.acquire_slot(slot, "next", cap=1)
    lapse_slot(redis_client, slot, "holder")  # its holder stopped renewing a lease ago
    assert leases.acquire_slot(slot, "next", cap=1)
    assert redis_client.zrange(slot, 0, -1) == [b"next"]
    assert not leases.renew_slot(slot, "holder")


def test_a_renewed_slot_outlives_its_first_lease(leases: Leases, redis_client: redis.Redis) -> None:
    slot = keys.slots(TARGET, "operation:op")
    assert leases.acquire_slot(slot, "holder", cap=1)
    # As if most of the first lease had gone by: the holder's place and the key's TTL both
    # end in 5 s (a renewal must push both, or the key takes the place away with it).
    redis_client.zadd(slot, {"holder": now_ms() + 5_000})
    redis_client.pexpire(slot, 5_000)
    before = now_ms()
    assert leases.renew_slot(slot, "holder")
    score = redis_client.zscore(slot, "holder")
    assert score is not None and score >= before + leases.lease_ms
    assert redis_client.pttl(slot) > leases.lease_ms - 10_000
    assert not leases.acquire_slot(slot, "other", cap=1)


def test_a_renewal_in_the_acquires_millisecond_keeps_the_slot(
    leases: Leases, monkeypatch: pytest.MonkeyPatch
) -> None:
    slot = keys.slots(TARGET, "operation:op")
    frozen = now_ms()
    monkeypatch.setattr("workers.leases.now_ms", lambda: frozen)  # renewal changes no score
    assert leases.acquire_slot(slot, "holder", cap=1)
    assert leases.renew_slot(slot, "holder")  # not "lost" because its score did not change
    assert not leases.acquire_slot(slot, "other", cap=1)


def test_slot_gap_keeps_the_key_closed_after_release(
    leases: Leases, redis_client: redis.Redis
) -> None:
    slot = keys.slots(TARGET, "instance:blue")
    assert leases.acquire_slot(slot, "first", cap=1)
    leases.release_slot(slot, "first", gap_seconds=LONG)
    assert not leases.acquire_slot(slot, "second", cap=1)  # closed for the gap
    assert LONG * 1000 - 10_000 < redis_client.pttl(slot + ":cooldown") <= LONG * 1000
    other = keys.slots(TARGET, "instance:blue-2")
    assert leases.acquire_slot(other, "first", cap=1)
    leases.release_slot(other, "first", gap_seconds=SHORT)  # a gap that is waited out
    time.sleep(EXPIRED)
    assert leases.acquire_slot(other, "second", cap=1)


def test_only_the_holder_releases_a_slot(leases: Leases) -> None:
    slot = keys.slots(TARGET, "instance:blue")
    assert leases.acquire_slot(slot, "holder", cap=1)
    leases.release_slot(slot, "someone-else", gap_seconds=60)
    assert not leases.acquire_slot(slot, "third", cap=1)
    leases.release_slot(slot, "holder")
    assert leases.acquire_slot(slot, "third", cap=1)


# --- job state ---------------------------------------------------------------------------------


def view(**kw: Any) -> JobView:
    base: dict[str, Any] = {
        "id": "j",
        "target": TARGET,
        "params": {},
        "created_at": 0.0,
        "units_total": 2,
        "units_done": 0,
        "records_total": 10,
        "records_delivered": 0,
        "records_dead": 0,
        "units_failed": 0,
        "retries": 0,
        "crashes": 0,
        "staging": False,
        "started": False,
        "cancelled": False,
        "cancel_reason": "",
    }
    base.update(kw)
    return JobView(**base)


@pytest.mark.parametrize(
    ("counters", "state"),
    [
        ({"staging": True}, JobState.STAGING),
        ({"staging": True, "cancelled": True}, JobState.STAGING),
        ({"staging": True, "started": True}, JobState.STAGING),
        ({}, JobState.QUEUED),
        ({"started": True}, JobState.RUNNING),
        ({"started": True, "units_done": 1, "records_delivered": 5}, JobState.RUNNING),
        ({"started": True, "units_done": 1, "records_dead": 5}, JobState.RUNNING),
        ({"started": True, "units_done": 2, "records_delivered": 10}, JobState.SUCCEEDED),
        (
            {"started": True, "units_done": 2, "records_delivered": 6, "records_dead": 4},
            JobState.PARTIAL,
        ),
        ({"started": True, "units_done": 2, "records_dead": 10}, JobState.FAILED),
        ({"cancelled": True}, JobState.CANCELLED),
        ({"cancelled": True, "started": True}, JobState.CANCELLED),
        (
            {"cancelled": True, "started": True, "units_done": 2, "records_delivered": 10},
            JobState.CANCELLED,
        ),
    ],
)
def test_job_state_is_derived_from_counters(counters: dict[str, Any], state: JobState) -> None:
    job = view(**counters)
    assert job.state == state
    assert job.finished == (state not in (JobState.STAGING, JobState.QUEUED, JobState.RUNNING))
    shown = job.as_dict()
    assert shown["state"] == state.value
    assert not {"staging", "started", "cancelled"} & set(shown)  # flags show only as the state


def test_job_state_follows_the_store_from_staging_to_cancelled(store: JobStore) -> None:
    job_id = store.create(TARGET, {})
    store.stage_unit(job_id, TARGET, 0, records(2), rescue_ms=RESCUE_MS)
    staging = store.get(job_id)
    assert staging is not None
    assert (staging.state, staging.records_total, staging.units_total) == ("staging", 2, 1)
    assert store.recent() == []  # not listed before it is open
    store.open(job_id)
    assert [j.state for j in store.recent()] == [JobState.QUEUED]
    store.cancel(job_id, "operator asked")
    cancelled = store.get(job_id)
    assert cancelled is not None
    assert (cancelled.state, cancelled.cancel_reason) == ("cancelled", "operator asked")


def test_job_whose_first_unit_is_claimed_reads_running(store: JobStore, leases: Leases) -> None:
    job_id, (unit, _) = staged_job(store, 1, 1)
    queued = store.get(job_id)
    assert queued is not None
    assert (queued.started, queued.state) == (False, JobState.QUEUED)
    assert leases.claim(unit, max_crashes=5).status == "claimed"
    job = store.get(job_id)
    assert job is not None
    assert (job.started, job.units_done, job.state) == (True, 0, JobState.RUNNING)
    assert [j.state for j in store.recent()] == [JobState.RUNNING]


def test_job_stays_running_while_a_claimed_unit_waits_for_its_retry(
    store: JobStore, leases: Leases
) -> None:
    job_id, (unit,) = staged_job(store, 1)
    claim = leases.claim(unit, max_crashes=5)
    outcome = Finish(UnitState.WAITING, terminal=False, retry=True, deadline_ms=now_ms() + 1_000)
    assert leases.finish(unit, claim.token, outcome)
    job = store.get(job_id)
    assert job is not None
    assert (job.units_done, job.state) == (0, JobState.RUNNING)  # started once: never queued again


def test_payload_round_trips_through_the_claim_check() -> None:
    data = [*records(3), {"entityId": "É", "recordId": "ünï", "data": {"n": 1.5}}]
    assert decode_records(encode_records(data)) == data


def test_waiters_for_a_slot_are_woken_first_come_first_served(short: Leases) -> None:
    slot = keys.slots(TARGET, "instance:blue")
    short.wait_for_slot(slot, "second")
    short.wait_for_slot(slot, "third")
    short.wait_for_slot(slot, "second")  # waiting again keeps its place
    short.stop_waiting(slot, "third")  # it got the slot meanwhile
    assert short.next_waiter(slot) == "second"
    assert short.next_waiter(slot) is None
