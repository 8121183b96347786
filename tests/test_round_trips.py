"""Redis round trips per unit: what the core costs on each side, pinned so it cannot creep back.

A round trip is one request the client sends (a command, a pipeline, a script), counted
at redis-py's connection. README's Performance section lists what each one is for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import redis
from celery.exceptions import Retry
from redis.connection import AbstractConnection

from importq import settings as importq_settings
from importq.errors import FinalError, VendorBusy
from producers.publish import locate, publish
from tests.scripted import TARGET, Published, ScriptedSink, register
from workers import keys
from workers.jobs import JobStore
from workers.runner import Runner
from workers.targets.base import Delivered, Located, Record, RunContext
from workers.task_states import UnitFailed, end_of_task

# The worker's core, per unit delivered: the claim (which reads the unit, the job, the
# records and whether the target is paused), the finish; with an in-flight slot, taking
# it (and leaving its waiting list) and handing it on to the longest waiter.
WORKER_ROUND_TRIPS = 2
WORKER_ROUND_TRIPS_WITH_SLOT = 4
# The producer, per unit: staging it (one transaction); the job's own steps are fixed.
PRODUCER_ROUND_TRIPS_PER_UNIT = 1
# The job's own: create, then open with its units watched (a one-pass input, staged whole
# then sent), or create, expect and released (input read twice, each unit sent as soon as
# it is staged).
PRODUCER_ROUND_TRIPS_PER_JOB = {False: 2, True: 3}


WORKER = "w1@localhost:1234"  # the worker's shutdown id (workers.app.shutdown_id)


class Counter:
    def __init__(self) -> None:
        self.sent = 0


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Counter:
    counter = Counter()
    send = AbstractConnection.send_packed_command

    def counted(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        counter.sent += 1
        send(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return counter


class SlottedSink(ScriptedSink):
    """Every record a unit of its own; at most two units in flight."""

    def plan(
        self, records: Iterable[Located], limits: None, params: dict[str, Any]
    ) -> Iterator[list[Record]]:
        for record, _ in records:
            yield [record]

    def slot(self, params: dict[str, Any], limits: None) -> tuple[str, int] | None:
        return ("all", 2) if params.get("slot") else None

    def run(self, ctx: RunContext[None, None]) -> Delivered:
        ctx.checkpoint()  # whether this worker shuts down: the claim said so already
        return super().run(ctx)


@pytest.fixture
def slotted(monkeypatch: pytest.MonkeyPatch) -> SlottedSink:
    sink = SlottedSink()
    register(monkeypatch, sink)
    # The scripted target has no record schema; checking records asks Redis nothing.
    monkeypatch.setattr("producers.publish.validate", lambda target, records: records)
    return sink


def _publish(store: JobStore, units: int, params: dict[str, Any], read_twice: bool = False) -> str:
    settings = importq_settings.load({})
    records = locate({"n": n} for n in range(units))
    return publish(TARGET, list(records) if read_twice else records, params, settings=settings,
                   store=store, publish_unit=Published())  # fmt: skip


def _store_and_runner(redis_client: redis.Redis) -> tuple[JobStore, Runner]:
    store = JobStore(redis_client)
    return store, Runner(importq_settings.load({}), store, Published())


@pytest.mark.parametrize(
    ("params", "expected"), [({}, WORKER_ROUND_TRIPS), ({"slot": 1}, WORKER_ROUND_TRIPS_WITH_SLOT)]
)
def test_a_delivered_unit_costs_the_worker_a_fixed_number_of_round_trips(
    params: dict[str, Any],
    expected: int,
    slotted: SlottedSink,
    round_trips: Counter,
    redis_client: redis.Redis,
) -> None:
    store, runner = _store_and_runner(redis_client)
    job_id = _publish(store, 3, params)
    first, second, _ = store.unit_ids(job_id)
    assert runner.run(TARGET, first, WORKER) == "succeeded"  # loads the scripts: not counted
    before = round_trips.sent
    assert runner.run(TARGET, second, WORKER) == "succeeded"
    assert round_trips.sent - before == expected


@pytest.mark.parametrize(
    ("error", "ends_in"),
    [
        (VendorBusy("another import is open", target=TARGET), Retry),
        (FinalError("refused", target=TARGET), UnitFailed),
    ],
    ids=["waits", "fails"],
)
def test_the_tasks_end_asks_redis_nothing_after_the_units_finish(
    error: Exception,
    ends_in: type[Exception],
    slotted: SlottedSink,
    round_trips: Counter,
    redis_client: redis.Redis,
) -> None:
    store, runner = _store_and_runner(redis_client)
    first, second = store.unit_ids(_publish(store, 2, {}))
    assert runner.run(TARGET, first, WORKER) == "succeeded"  # loads the scripts
    slotted.error = error
    after_run: list[int] = []

    def run_unit() -> str:
        status = runner.run(TARGET, second, WORKER)
        after_run.append(round_trips.sent)
        return status

    with pytest.raises(ends_in):  # Flower's RETRY or FAILURE, told by the finish's own answer
        end_of_task(run_unit, second)
    assert round_trips.sent == after_run[0]


def test_a_worker_shutting_down_at_the_claim_hands_the_unit_back_at_its_checkpoint(
    slotted: SlottedSink, redis_client: redis.Redis
) -> None:
    store, runner = _store_and_runner(redis_client)
    (unit_id,) = store.unit_ids(_publish(store, 1, {}))
    redis_client.set(keys.shutdown(WORKER), "1")
    assert runner.run(TARGET, unit_id, WORKER) == "waiting"
    assert store.unit(unit_id)["handed_back"] == "1"


@pytest.mark.parametrize("read_twice", [False, True], ids=["generator", "list"])
def test_publishing_costs_one_round_trip_per_unit(
    read_twice: bool, slotted: SlottedSink, round_trips: Counter, redis_client: redis.Redis
) -> None:
    store = JobStore(redis_client)
    _publish(store, 2, {}, read_twice)  # connections made, scripts loaded
    counts = []
    for units in (10, 30):
        before = round_trips.sent
        job_id = _publish(store, units, {}, read_twice)
        counts.append(round_trips.sent - before)
        assert len(store.unit_ids(job_id)) == units
    assert counts[1] - counts[0] == 20 * PRODUCER_ROUND_TRIPS_PER_UNIT
    assert (
        counts[0] - 10 * PRODUCER_ROUND_TRIPS_PER_UNIT == PRODUCER_ROUND_TRIPS_PER_JOB[read_twice]
    )


# A one-record SourcingData job without --operation-id, sent whole in its start (which the
# vendor answers committed): the claim, the note before the start, the finish (which records
# the item's id too, and, as it ends the job, reads the job and sets its expiry).
ONE_RECORD_JOB_ROUND_TRIPS = 3


def test_a_one_record_job_sent_whole_costs_the_worker_a_fixed_number_of_round_trips(
    sim: Any, round_trips: Counter, redis_client: redis.Redis
) -> None:
    settings = importq_settings.load()
    store = JobStore(redis_client)
    runner = Runner(settings, store, Published())
    costs = []
    for number in range(2):  # the first loads the scripts and connects
        record = {"entityId": "ORG_DEPT", "recordId": f"r-{number}", "data": {"Code": "C"}}
        job_id = publish("sourcing_data", locate([record]), {}, settings=settings, store=store,
                         publish_unit=lambda unit, target, countdown: None)  # fmt: skip
        (unit_id,) = store.unit_ids(job_id)
        before = round_trips.sent
        assert runner.run("sourcing_data", unit_id, WORKER) == "succeeded"
        costs.append(round_trips.sent - before)
        assert store.unit(unit_id)["remote.queue_item_id"]  # recorded with the finish
    assert costs[1] == ONE_RECORD_JOB_ROUND_TRIPS
    assert sim.ledger()["requests"] == 2  # type: ignore[attr-defined]
