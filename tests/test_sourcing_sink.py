"""SourcingDataSink.run against the simulator in-process (httpx.MockTransport), no worker."""

from __future__ import annotations

import contextlib
import functools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis
import structlog

from importq.errors import (
    AuthError,
    FinalError,
    NotApplied,
    NotFoundError,
    RejectedError,
    RetryableError,
    VendorBusy,
)
from importq.settings import Secret, Settings
from simulators.sourcing_data import SimConfig, SourcingDataSimulator
from workers import keys
from workers.retry import resend
from workers.signals import LeaseLost
from workers.target_state import TargetState
from workers.targets.base import Delivered, Record, RunContext
from workers.targets.sourcing_data import sink as sink_module
from workers.targets.sourcing_data.client import SourcingDataClient
from workers.targets.sourcing_data.limits import SourcingDataLimits
from workers.targets.sourcing_data.sink import SourcingDataSink

BASE_URL = "http://sim/api/asol/ds"
TOKEN = "sink-test-token-0d3b7e"
AGENT = "demo-agent"
OPERATION = "op-sink-test"
LIMITS = SourcingDataLimits(poll_interval_seconds=0.005, poll_budget_seconds=5.0)
_ROUTE = re.compile(r"/EnqueueData(?:/(?P<start>start)|/(?P<kind>\w+)/(?P<item>[^/]+))?/?$")

Intercept = Callable[[str, httpx.Request], httpx.Response | None]


def records(count: int, first: int = 0) -> list[Record]:
    return [
        {"entityId": "ORG_DEPT", "recordId": f"r-{n}", "data": {"Code": f"C{n}"}}
        for n in range(first, first + count)
    ]


@dataclass
class Sent:
    """One request as it went out, and the status it got."""

    kind: str
    item: str | None
    params: dict[str, str]
    body: dict[str, Any] | None
    status: int


class Recorder:
    """Wraps the simulator's handler: records every request; `intercept` may answer instead."""

    def __init__(self, sim: SourcingDataSimulator) -> None:
        self.sim = sim
        self.intercept: Intercept | None = None
        self.sent: list[Sent] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        match = _ROUTE.search(request.url.path)
        assert match is not None, request.url.path
        kind = "start" if match["start"] else (match["kind"] or "list")
        response = self.intercept(kind, request) if self.intercept else None
        if response is None:
            response = self.sim(request)
        body = json.loads(request.content) if request.content else None
        self.sent.append(
            Sent(kind, match["item"], dict(request.url.params), body, response.status_code)
        )
        return response

    def kinds(self) -> list[str]:
        return [s.kind for s in self.sent]

    def chunks(self) -> list[tuple[str, int, bool]]:
        """(kind, records, incompleteData) of every start and append that went out."""
        return [
            (s.kind, len(s.body["items"]), s.body["incompleteData"])
            for s in self.sent
            if s.body is not None
        ]


@pytest.fixture(autouse=True)
def fast_resend(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same resend policy, millisecond backoff: these tests count requests, not seconds."""
    monkeypatch.setattr(sink_module, "resend", functools.partial(resend, base=0.001, cap=0.01))


@pytest.fixture
def sim() -> SourcingDataSimulator:
    return SourcingDataSimulator(SimConfig(token=TOKEN, agents={AGENT}, processing_seconds=0.0))


@pytest.fixture
def wire(sim: SourcingDataSimulator) -> Recorder:
    return Recorder(sim)


@contextlib.contextmanager
def make_client(
    wire: Recorder, token: str = TOKEN, agent: str = AGENT
) -> Iterator[SourcingDataClient]:
    client = SourcingDataClient(
        base_url=BASE_URL,
        token=Secret(token),
        agent_id=agent,
        transport=httpx.MockTransport(wire),
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def client(wire: Recorder) -> Iterator[SourcingDataClient]:
    with make_client(wire) as made:
        yield made


@dataclass
class Unit:
    """A RunContext and the unit's remembered remote state (what Redis would hold)."""

    ctx: RunContext[SourcingDataLimits, SourcingDataClient]
    remote: dict[str, str]

    def run(self) -> Delivered:
        return SourcingDataSink().run(self.ctx)


def unit(
    client: SourcingDataClient,
    data: list[Record],
    remote: dict[str, str] | None = None,
    limits: SourcingDataLimits = LIMITS,
    checkpoint: Callable[[], None] = lambda: None,
    remember: Callable[[dict[str, str]], None] | None = None,
    params: dict[str, str] | None = None,
) -> Unit:
    stored = dict(remote or {})
    ctx = RunContext(
        unit_id="job:0",
        attempt=1,
        records=data,
        params={"operation_id": OPERATION} if params is None else params,
        remote={k: v for k, v in stored.items() if v},
        client=client,
        limits=limits,
        settings=Settings(),
        log=structlog.get_logger("importq.test"),
        remember=remember or stored.update,
        checkpoint=checkpoint,
    )
    return Unit(ctx, stored)


def again(previous: Unit, client: SourcingDataClient, data: list[Record]) -> Unit:
    """The next attempt of a unit: it starts from the remote state the last one left."""
    return unit(client, data, previous.remote, previous.ctx.limits,
                params=previous.ctx.params)  # fmt: skip


def committed_once(sim: SourcingDataSimulator, data: list[Record]) -> bool:
    ledger = sim.ledger()
    expected = {f"{r['entityId']}/{r['recordId']}": 1 for r in data}
    return bool(ledger["commits"] == expected and ledger["duplicates"] == 0)


def process_now(sim: SourcingDataSimulator, item_id: str) -> None:
    """Make the vendor's processing of a Completed item due at its next request."""
    sim._items[item_id].due = 0.0


def fail_once(kind: str, status: int = 503) -> Intercept:
    """Answer the first request of `kind` with `status` before it reaches the vendor."""
    done: list[bool] = []

    def intercept(seen: str, request: httpx.Request) -> httpx.Response | None:
        if seen != kind or done:
            return None
        done.append(True)
        return httpx.Response(status, json={"title": "Service Unavailable", "status": status})

    return intercept


# --- the happy paths ---------------------------------------------------------------------------


def test_1234_records_go_out_as_500_500_234_in_one_queue_item(
    sim: SourcingDataSimulator, wire: Recorder, client: SourcingDataClient
) -> None:
    data = records(1234)
    run = unit(client, data)
    delivered = run.run()

    assert (delivered.count, delivered.rejected) == (1234, [])
    assert wire.chunks() == [("start", 500, True), ("append", 500, True), ("append", 234, False)]
    started = wire.sent[0]
    assert started.params == {"agentId": AGENT, "operationId": OPERATION}
    assert started.body is not None
    assert started.body["items"] == data[:500]
    item_id = run.remote["queue_item_id"]
    assert [s.item for s in wire.sent if s.kind == "append"] == [item_id, item_id]
    # the item's id and how many chunks it holds (a clean hand-back resumes from there)
    assert {k: v for k, v in run.remote.items() if v} == {
        "queue_item_id": item_id,
        "chunks_sent": "3",
    }
    assert set(wire.kinds()[3:]) == {"status"}  # then only polls until it is processed

    ledger = sim.ledger()
    assert ledger["requests_by_kind"]["start"] == 1
    assert ledger["requests_by_kind"]["append"] == 2
    assert ledger["max_records_in_request"] == 500
    assert ledger["items"]["Success"] == 1
    assert committed_once(sim, data)


def test_records_per_request_setting_sizes_the_chunks(
    sim: SourcingDataSimulator, wire: Recorder, client: SourcingDataClient
) -> None:
    data = records(450)
    unit(client, data, limits=replace(LIMITS, records_per_request=200)).run()
    assert wire.chunks() == [("start", 200, True), ("append", 200, True), ("append", 50, False)]
    assert committed_once(sim, data)


@pytest.mark.parametrize(
    ("count", "chunks"),
    [
        (1, [("start", 1, True), ("append", 0, False)]),
        (2, [("start", 1, True), ("append", 1, False)]),
        (10, [("start", 9, True), ("append", 1, False)]),
        (500, [("start", 499, True), ("append", 1, False)]),
        (501, [("start", 500, True), ("append", 1, False)]),
    ],
)
def test_unit_of_one_request_is_opened_incomplete_and_completed_by_an_append(
    count: int,
    chunks: list[tuple[str, int, bool]],
    sim: SourcingDataSimulator,
    wire: Recorder,
    client: SourcingDataClient,
) -> None:
    data = records(count)
    run = unit(client, data)
    assert run.run().count == count
    assert wire.chunks() == chunks
    item_id = run.remote["queue_item_id"]
    assert [(s.kind, s.item, s.status) for s in wire.sent[:2]] == [
        ("start", None, 202),  # Pending: nothing committed before the id is remembered
        ("append", item_id, 202),
    ]
    assert [s.body["items"] for s in wire.sent[:2] if s.body is not None] == [
        data[: len(data) - chunks[1][1]],
        data[len(data) - chunks[1][1] :],
    ]
    assert set(wire.kinds()[2:]) == {"status"}  # then polled until it is processed
    assert {k: v for k, v in run.remote.items() if v} == {
        "queue_item_id": item_id,
        "chunks_sent": "2",
    }
    assert sim.ledger()["items"]["Success"] == 1
    assert committed_once(sim, data)


def test_queue_item_id_is_remembered_before_the_completing_append(
    sim: SourcingDataSimulator, wire: Recorder, client: SourcingDataClient
) -> None:
    remembered: list[tuple[dict[str, str], list[str]]] = []
    data = records(10)
    run = unit(client, data, remember=lambda values: remembered.append((values, wire.kinds())))
    assert run.run().count == 10
    (note, sent_before), (values, sent_by_then), (progress, sent_later) = remembered
    assert sent_before == [] and set(note) == {"start_sent_at", "start_operation_id"}
    assert note["start_operation_id"] == OPERATION  # what finds the item if the answer is lost
    assert sent_by_then == ["start"]  # remembered while the item is still Pending
    assert values == {"queue_item_id": wire.sent[1].item, "chunks_sent": "1",
                      "start_sent_at": "", "start_operation_id": ""}  # fmt: skip
    assert (progress, sent_later) == ({"chunks_sent": "2"}, ["start", "append"])
    assert committed_once(sim, data)


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [10, 1234])  # one-request unit, and one of three requests
def test_poison_record_fails_the_item_with_the_vendor_message_and_commits_nothing(
    count: int, sim: SourcingDataSimulator, client: SourcingDataClient
) -> None:
    sim.configure(poison_record_ids={"r-7"})
    run = unit(client, records(count))
    with pytest.raises(RejectedError) as caught:
        run.run()
    error = caught.value
    assert isinstance(error, RejectedError)  # record-level: the core bisects the unit
    assert error.target == "sourcing_data"
    assert "Value 'r-7' doesn't fit to expected format" in str(error)
    assert run.remote["queue_item_id"] == ""  # a failed item holds nothing to resume
    ledger = sim.ledger()
    assert ledger["committed_records"] == 0
    assert ledger["items"]["Failed"] == 1


def test_wrong_token_is_an_auth_error_naming_the_setting(
    sim: SourcingDataSimulator, wire: Recorder
) -> None:
    with (
        make_client(wire, token="not-the-token-9f8e") as client,
        pytest.raises(AuthError) as caught,
    ):
        unit(client, records(3)).run()
    error = caught.value
    assert error.status == 401
    assert "SOURCING_DATA_TOKEN" in str(error)
    assert "The bearer token is not valid." in str(error)
    assert "not-the-token-9f8e" not in str(error)
    assert wire.kinds() == ["start"]  # final at once: not resent
    assert sim.ledger()["committed_records"] == 0


def test_unknown_agent_is_not_found_naming_the_agent(
    sim: SourcingDataSimulator, wire: Recorder
) -> None:
    with make_client(wire, agent="ghost-agent") as client, pytest.raises(NotFoundError) as caught:
        unit(client, records(3)).run()
    error = caught.value
    assert error.status == 404
    assert "Integration agent 'ghost-agent' was not found." in str(error)
    assert "SOURCING_DATA_AGENT_ID ('ghost-agent')" in str(error)
    assert wire.kinds() == ["start"]
    assert sim.ledger()["committed_records"] == 0


# --- resuming what an earlier attempt left ------------------------------------------------------


def test_resume_cancels_a_pending_item_and_sends_a_fresh_one(
    sim: SourcingDataSimulator, wire: Recorder, client: SourcingDataClient
) -> None:
    data = records(1234)
    left = client.start(data[:500], operation_id=OPERATION, incomplete=True)
    assert left.status == "Pending"
    wire.sent.clear()

    run = unit(client, data, {"queue_item_id": left.id})
    assert run.run().count == 1234

    assert wire.kinds()[:3] == ["status", "cancel", "start"]
    assert wire.sent[1].item == left.id
    assert run.remote["queue_item_id"] not in ("", left.id)
    assert client.status(left.id).status == "Canceled"
    ledger = sim.ledger()
    assert (ledger["items"]["Canceled"], ledger["items"]["Success"]) == (1, 1)
    assert committed_once(sim, data)


@pytest.mark.parametrize("count", [10, 1234])
def test_resume_of_a_processed_item_sends_nothing_again(
    count: int, sim: SourcingDataSimulator, wire: Recorder, client: SourcingDataClient
) -> None:
    data = records(count)
    first = unit(client, data)
    first.run()
    wire.sent.clear()

    delivered = again(first, client, data).run()

    assert delivered.count == count
    assert wire.kinds() == ["status"]
    assert committed_once(sim, data)


def test_resume_of_a_complete_item_polls_it_to_the_end(
    sim: SourcingDataSimulator, wire: Recorder, client: SourcingDataClient
) -> None:
    sim.configure(processing_seconds=30.0)
    data = records(600)
    left = client.start(data[:500], operation_id=OPERATION, incomplete=True)
    assert client.append(left.id, data[500:], incomplete=False).status == "Completed"
    wire.sent.clear()

    def processed_after_first_look(kind: str, request: httpx.Request) -> httpx.Response | None:
        if kind == "status" and wire.sent:
            process_now(sim, left.id)
        return None

    wire.intercept = processed_after_first_look

    run = unit(client, data, {"queue_item_id": left.id})  # only the id: the status decides
    assert run.run().count == 600

    assert wire.kinds() == ["status", "status"]  # still Completed at first: polled to its end
    assert run.remote["queue_item_id"] == left.id
    assert committed_once(sim, data)


def test_resume_of_a_failed_item_is_refused_with_the_vendor_message_and_sends_nothing(
    sim: SourcingDataSimulator, wire: Recorder, client: SourcingDataClient
) -> None:
    sim.configure(poison_record_ids={"r-3"})
    data = records(10)
    left = client.start(data[:9], operation_id=OPERATION, incomplete=True)
    client.append(left.id, data[9:], incomplete=False)
    assert client.status(left.id).status == "Failed"
    wire.sent.clear()

    run = unit(client, data, {"queue_item_id": left.id})
    with pytest.raises(RejectedError) as caught:
        run.run()
    assert "Value 'r-3' doesn't fit to expected format" in str(caught.value)
    assert wire.kinds() == ["status"]
    assert run.remote["queue_item_id"] == ""
    assert sim.ledger()["committed_records"] == 0


# --- transient failures ------------------------------------------------------------------------


def test_503_on_append_is_resent_in_place(
    sim: SourcingDataSimulator, wire: Recorder, client: SourcingDataClient
) -> None:
    data = records(1234)
    wire.intercept = fail_once("append")
    run = unit(client, data)
    assert run.run().count == 1234

    assert [(s.kind, s.status) for s in wire.sent[:4]] == [
        ("start", 202),
        ("append", 503),
        ("append", 202),
        ("append", 202),
    ]
    assert wire.sent[1].body == wire.sent[2].body  # the same chunk, sent again
    assert "cancel" not in wire.kinds()
    assert sim.ledger()["items"]["Success"] == 1
    assert committed_once(sim, data)


def test_injected_503s_still_commit_each_record_once(
    sim: SourcingDataSimulator, wire: Recorder, client: SourcingDataClient
) -> None:
    # Seed 7 makes the vendor answer 503 to both appends (twice to the first one).
    sim.configure(fault_rate=0.3, fault_statuses=(503,), retry_after_seconds=0, seed=7)
    data = records(1234)
    assert unit(client, data).run().count == 1234
    assert [(s.kind, s.status) for s in wire.sent if s.kind == "append"].count(("append", 503)) >= 2
    ledger = sim.ledger()
    assert ledger["faults"] >= 2
    assert ledger["items"]["Success"] == 1  # each one resent in place, no second item
    assert committed_once(sim, data)


def test_append_that_keeps_failing_cancels_the_item_and_is_retryable(
    sim: SourcingDataSimulator, wire: Recorder, client: SourcingDataClient
) -> None:
    def always_503(kind: str, request: httpx.Request) -> httpx.Response | None:
        return httpx.Response(503, text="upstream unavailable") if kind == "append" else None

    wire.intercept = always_503
    run = unit(client, records(1234), limits=replace(LIMITS, resend_attempts=2))
    with pytest.raises(RetryableError) as caught:
        run.run()
    assert caught.value.status == 503
    assert wire.kinds() == ["start", "append", "append", "cancel"]
    assert run.remote["queue_item_id"] == ""
    ledger = sim.ledger()
    assert (ledger["items"]["Canceled"], ledger["committed_records"]) == (1, 0)


@pytest.mark.parametrize("processing_seconds", [0.0, 30.0])
def test_lost_answer_to_the_last_append_is_settled_by_the_next_attempt(
    processing_seconds: float,
    sim: SourcingDataSimulator,
    wire: Recorder,
    client: SourcingDataClient,
) -> None:
    """A 504 after the vendor took the last chunk: the retry must not commit it twice."""
    sim.configure(processing_seconds=processing_seconds)
    data = records(700)
    appended: list[bool] = []

    def applied_then_504(kind: str, request: httpx.Request) -> httpx.Response | None:
        if kind != "append" or appended:
            return None
        appended.append(True)
        sim(request)  # the vendor applies it; the gateway times out on the way back
        return httpx.Response(504, text="Gateway Timeout")

    wire.intercept = applied_then_504
    first = unit(client, data)
    with pytest.raises(RetryableError) as caught:
        first.run()
    assert not isinstance(caught.value, NotApplied)
    assert wire.kinds().count("append") == 1  # an unknown outcome is not resent in place

    sim.configure(processing_seconds=0.0)
    assert again(first, client, data).run().count == 700
    assert committed_once(sim, data)


def test_lost_lease_stops_before_the_next_chunk(
    sim: SourcingDataSimulator, wire: Recorder, client: SourcingDataClient
) -> None:
    def lost() -> None:
        raise LeaseLost("unit job:0: lease lost")

    run = unit(client, records(1234), checkpoint=lost)
    with pytest.raises(LeaseLost):
        run.run()
    assert wire.kinds() == ["start"]
    assert run.remote["queue_item_id"]  # the successor finds the open item and cancels it
    assert sim.ledger()["items"]["Pending"] == 1


# --- a worker that dies, and races with the vendor ---------------------------------------------


class WorkerDied(BaseException):
    """Stands for SIGKILL: nothing after this point runs, nothing is caught."""


@pytest.mark.parametrize("failure", [WorkerDied, LeaseLost])
def test_item_whose_id_was_never_recorded_is_found_and_cancelled_by_the_next_attempt(
    failure: type[BaseException],
    sim: SourcingDataSimulator,
    wire: Recorder,
    client: SourcingDataClient,
) -> None:
    data = records(10)
    stored: dict[str, str] = {}

    def forget_the_id(values: dict[str, str]) -> None:
        if "queue_item_id" in values:
            raise failure("the answer arrived; the write to Redis never happened")
        stored.update(values)

    with pytest.raises(failure):
        unit(client, data, remember=forget_the_id).run()
    assert wire.chunks() == [("start", 9, True)]
    assert sim.ledger()["items"]["Pending"] == 1  # the orphan holds nothing committed

    wire.sent.clear()
    assert unit(client, data, stored).run().count == 10
    assert wire.kinds()[:3] == ["list", "cancel", "start"]
    ledger = sim.ledger()
    assert (ledger["items"]["Pending"], ledger["items"]["Canceled"]) == (0, 1)
    assert committed_once(sim, data)


@pytest.mark.parametrize("status", [502, 504])
def test_lost_answer_to_the_start_is_not_resent_and_its_item_is_cancelled_next_time(
    status: int, sim: SourcingDataSimulator, wire: Recorder, client: SourcingDataClient
) -> None:
    other = client.start(records(3, first=100), operation_id=OPERATION, incomplete=True)
    sim._items[other.id].created_on -= timedelta(minutes=10)  # someone's, from before
    sim.configure(lose_next={"start": 1}, lost_answer=str(status))
    wire.sent.clear()
    data = records(700)
    first = unit(client, data)
    with pytest.raises(RetryableError) as caught:
        first.run()
    assert caught.value.status == status and not isinstance(caught.value, NotApplied)
    assert wire.kinds() == ["start"]  # not resent in place: it may have opened an item
    assert sim.ledger()["items"]["Pending"] == 2

    abandoned = unit(client, data, first.remote)
    assert SourcingDataSink().abandon(abandoned.ctx) is None  # the unit ends: orphan cancelled
    ledger = sim.ledger()
    assert (ledger["items"]["Pending"], ledger["items"]["Canceled"]) == (1, 1)
    assert client.status(other.id).status == "Pending"  # created before the attempt began


def test_worker_dying_before_the_completing_append_is_cancelled_by_the_next_attempt(
    sim: SourcingDataSimulator, wire: Recorder, client: SourcingDataClient
) -> None:
    def died(kind: str, request: httpx.Request) -> httpx.Response | None:
        if kind == "append":
            raise WorkerDied
        return None

    data = records(10)
    wire.intercept = died
    first = unit(client, data)
    with pytest.raises(WorkerDied):
        first.run()
    left = first.remote["queue_item_id"]
    assert client.status(left).status == "Pending"

    wire.intercept = None
    wire.sent.clear()
    assert again(first, client, data).run().count == 10
    assert wire.kinds()[:3] == ["status", "cancel", "start"]
    assert client.status(left).status == "Canceled"
    assert committed_once(sim, data)


def test_resume_of_an_item_processed_while_being_cancelled_counts_it_delivered(
    sim: SourcingDataSimulator, wire: Recorder, client: SourcingDataClient
) -> None:
    """The item reads Pending, then a late last chunk completes it before the cancel lands."""
    sim.configure(processing_seconds=30.0)
    data = records(600)
    left = client.start(data[:500], operation_id=OPERATION, incomplete=True)
    wire.sent.clear()

    def late_last_chunk(kind: str, request: httpx.Request) -> httpx.Response | None:
        if kind == "cancel":  # the presumed-dead worker's last append reaches the vendor first
            with make_client(Recorder(sim)) as zombie:
                zombie.append(left.id, data[500:], incomplete=False)
            process_now(sim, left.id)  # and the vendor processes it meanwhile
        return None

    wire.intercept = late_last_chunk
    run = unit(client, data, {"queue_item_id": left.id})
    assert run.run().count == 600

    assert [(s.kind, s.status) for s in wire.sent] == [
        ("status", 200),
        ("cancel", 400),  # refused: the item moved on
        ("status", 200),
    ]
    assert run.remote["queue_item_id"] == left.id
    assert committed_once(sim, data)


# --- known gaps --------------------------------------------------------------------------------


def test_resume_of_an_item_the_last_attempt_cancelled_sends_the_unit_afresh(
    sim: SourcingDataSimulator, wire: Recorder, client: SourcingDataClient
) -> None:
    stored: dict[str, str] = {}

    def lease_lost_on_forgetting(values: dict[str, str]) -> None:
        if values.get("queue_item_id") == "":
            raise LeaseLost("unit job:0: lease lost while recording ['queue_item_id']")
        stored.update(values)

    def append_503(kind: str, request: httpx.Request) -> httpx.Response | None:
        return httpx.Response(503, text="upstream unavailable") if kind == "append" else None

    data = records(10)
    wire.intercept = append_503
    limits = replace(LIMITS, resend_attempts=1)
    with pytest.raises(LeaseLost):
        unit(client, data, limits=limits, remember=lease_lost_on_forgetting).run()
    left = stored["queue_item_id"]
    assert client.status(left).status == "Canceled"  # cancelled, but its id still remembered

    wire.intercept = None
    assert unit(client, data, stored).run().count == 10
    assert committed_once(sim, data)


# --- a shared operation's start turn --------------------------------------------------------


def test_start_turn_left_by_a_dead_worker_passes_on_and_the_item_is_registered(
    wire: Recorder, client: SourcingDataClient, redis_client: redis.Redis
) -> None:
    turn = keys.target_key("sourcing_data", "start", AGENT, "", OPERATION)
    redis_client.set(turn, "job:9 token-of-a-worker-that-died", px=600_000)  # no lease: dead
    redis_client.set(keys.lease("job:0"), "our-token")
    run = unit(client, records(10))
    run.ctx.target_state = TargetState(redis_client, "sourcing_data", "job:0")
    assert run.run().count == 10
    assert redis_client.get(turn) is None  # released by its holder
    registered = redis_client.zrange(
        keys.target_key("sourcing_data", "items", AGENT, "", OPERATION), 0, -1
    )
    assert registered == [run.remote["queue_item_id"].encode()]


def test_start_turn_of_a_live_unit_is_waited_for_without_an_attempt(
    wire: Recorder,
    client: SourcingDataClient,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sink_module, "START_TURN_WAIT", 0.1)
    turn = keys.target_key("sourcing_data", "start", AGENT, "", OPERATION)
    redis_client.set(turn, "job:9 live-token", px=600_000)
    redis_client.set(keys.lease("job:9"), "live-token")  # its unit is alive: it starts now
    run = unit(client, records(10))
    run.ctx.target_state = TargetState(redis_client, "sourcing_data", "job:0")
    with pytest.raises(RetryableError) as caught:
        run.run()
    assert isinstance(caught.value, VendorBusy)  # waiting costs the unit no attempt
    assert wire.kinds() == []  # nothing sent beside the other start


# --- a unit of one request, under an operationId of its own: sent whole in its start ----------

NO_OPERATION: dict[str, str] = {}  # a job published without --operation-id


def test_a_unit_of_one_request_without_an_operation_id_is_one_complete_start(
    sim: SourcingDataSimulator, wire: Recorder, client: SourcingDataClient
) -> None:
    remembered: list[dict[str, str]] = []
    data = records(499)  # under 500 records the vendor may process the item at once
    run = unit(client, data, params=NO_OPERATION, remember=remembered.append)
    delivered = run.run()
    assert delivered.count == 499
    assert wire.chunks() == [("start", 499, False)]
    assert wire.kinds() == ["start"]  # processed at once: nothing to poll
    # One note, before the start went out: what finds the item if the answer is lost. The
    # item committed in the answer, so its id goes with the unit's finish, not in a write
    # of its own: a finish that never lands is settled like a lost answer.
    (note,) = remembered
    assert note[sink_module.WHOLE_START] == "1"
    assert note["start_operation_id"] == wire.sent[0].params["operationId"]
    assert delivered.remote["queue_item_id"] and delivered.remote["chunks_sent"] == "1"
    assert not delivered.remote[sink_module.WHOLE_START]  # settled: its id is known
    assert committed_once(sim, data)


def test_a_whole_start_the_vendor_still_processes_notes_its_id_before_polling(
    sim: SourcingDataSimulator, wire: Recorder, client: SourcingDataClient
) -> None:
    sim.configure(sync_threshold=1, processing_seconds=0.01)  # answered Completed, then polled
    remembered: list[dict[str, str]] = []
    delivered = unit(client, records(3), params=NO_OPERATION, remember=remembered.append).run()
    assert delivered.count == 3 and delivered.remote == {}
    assert wire.kinds()[:2] == ["start", "status"]
    assert remembered[1]["queue_item_id"] and not remembered[1][sink_module.WHOLE_START]


def test_a_unit_over_one_request_or_of_a_shared_operation_still_opens_incomplete(
    sim: SourcingDataSimulator, wire: Recorder, client: SourcingDataClient
) -> None:
    assert unit(client, records(500), params=NO_OPERATION).run().count == 500
    assert wire.chunks() == [("start", 500, False)]  # the most one request takes, then polled
    wire.sent.clear()
    assert unit(client, records(501, first=1000), params=NO_OPERATION).run().count == 501
    assert wire.chunks() == [("start", 500, True), ("append", 1, False)]
    wire.sent.clear()
    assert unit(client, records(3, first=600)).run().count == 3  # --operation-id: siblings
    assert wire.chunks() == [("start", 2, True), ("append", 1, False)]


@pytest.mark.parametrize("loss", ["502", "504", "id not recorded"])
def test_lost_answer_to_a_whole_start_is_found_and_counted_not_sent_again(
    loss: str, sim: SourcingDataSimulator, wire: Recorder, client: SourcingDataClient
) -> None:
    data = records(10)
    stored: dict[str, str] = {}

    if loss == "id not recorded":  # the worker died before its finish recorded the id
        delivered = unit(client, data, params=NO_OPERATION, remember=stored.update).run()
        assert delivered.remote["queue_item_id"] and stored[sink_module.WHOLE_START] == "1"
    else:
        sim.configure(lose_next={"start": 1}, lost_answer=loss)
        with pytest.raises(RetryableError) as caught:
            unit(client, data, params=NO_OPERATION, remember=stored.update).run()
        assert not isinstance(caught.value, NotApplied)
    assert committed_once(sim, data)  # it committed, though the worker never learned it

    wire.sent.clear()
    rerun = unit(client, data, stored, params=NO_OPERATION)
    assert rerun.run().count == 10
    assert wire.kinds() == ["list"]  # found by its operationId, committed: nothing sent
    assert rerun.remote["queue_item_id"] and not rerun.remote[sink_module.WHOLE_START]
    assert committed_once(sim, data)


def test_lost_whole_start_that_committed_counts_delivered_when_the_unit_is_abandoned(
    sim: SourcingDataSimulator, wire: Recorder, client: SourcingDataClient
) -> None:
    data = records(10)
    first = unit(client, data, params=NO_OPERATION)
    sim.configure(lose_next={"start": 1}, lost_answer="504")
    with pytest.raises(RetryableError):
        first.run()
    ended = unit(client, data, first.remote, params=NO_OPERATION)
    delivered = SourcingDataSink().abandon(ended.ctx)
    assert delivered is not None and delivered.count == 10
    assert committed_once(sim, data)


def test_whole_start_that_opened_nothing_waits_out_its_flight_then_is_sent_again(
    sim: SourcingDataSimulator, wire: Recorder, client: SourcingDataClient
) -> None:
    data = records(10)
    wire.intercept = fail_once("start", 504)  # a gateway's 504 before it reached the vendor
    first = unit(client, data, params=NO_OPERATION)
    with pytest.raises(RetryableError):
        first.run()
    assert sim.ledger()["items"]["Success"] == 0

    wire.sent.clear()
    soon = unit(client, data, first.remote, params=NO_OPERATION)
    with pytest.raises(VendorBusy) as waiting:  # it may still reach the vendor: no resend yet
        soon.run()
    timeout = LIMITS.request_timeout_seconds
    assert waiting.value.retry_after is not None and 0 < waiting.value.retry_after <= timeout + 10
    assert wire.kinds() == ["list"]

    wire.sent.clear()
    sent_at = sink_module._moment(first.remote["start_sent_at"])
    assert sent_at is not None
    long_ago = sent_at - timedelta(seconds=timeout + 11)  # its request has timed out since
    late = unit(client, data, {**first.remote, "start_sent_at": long_ago.isoformat()},
                params=NO_OPERATION)  # fmt: skip
    assert late.run().count == 10
    assert wire.kinds() == ["list", "start"]
    assert committed_once(sim, data)


def test_abandoning_a_whole_start_that_may_still_be_in_flight_says_so_and_keeps_its_notes(
    sim: SourcingDataSimulator, wire: Recorder, client: SourcingDataClient
) -> None:
    """A unit ended for good (its last attempt's start timed out) while that start may still
    reach the vendor: it commits on its own, so "it opened nothing" would dead-letter records
    the vendor may yet commit, and a replay would commit them twice."""
    data = records(10)
    wire.intercept = fail_once("start", 504)
    first = unit(client, data, params=NO_OPERATION)
    with pytest.raises(RetryableError):
        first.run()
    ended = unit(client, data, first.remote, params=NO_OPERATION)
    with pytest.raises(FinalError, match="may still open a queue item"):
        SourcingDataSink().abandon(ended.ctx)
    assert ended.remote[sink_module.WHOLE_START] == "1"  # still there for whoever looks next


def test_items_in_flight_are_capped_per_given_operation_id_only() -> None:
    """A job without --operation-id gives each start its own operationId, so there is no
    operation to cap: one slot shared by every such job ("operation:-") would cap all of
    them together at SOURCING_DATA_ITEMS_IN_FLIGHT."""
    limits = SourcingDataLimits(items_in_flight_per_operation=3)
    assert SourcingDataSink().slot({"operation_id": "op-7"}, limits) == ("operation:op-7", 3)
    assert SourcingDataSink().slot({}, limits) is None
