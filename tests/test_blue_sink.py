"""Blue's sink in one process: planning, options, row warnings, and stale transactions.

The import runs against the simulator through httpx.MockTransport and the test
Redis, with a RunContext built here: these are the decisions of one attempt,
the worker-process tests are in test_blue_e2e.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest
import redis
import structlog
import structlog.testing

from importq.errors import FinalError, InputError, RetryableError
from importq.settings import Secret, Settings
from producers.publish import locate
from simulators.blue import FAKE_API_KEY, BlueSimulator
from workers import keys
from workers.signals import HandBack
from workers.target_state import TargetState
from workers.targets.base import Delivered, RunContext
from workers.targets.blue import TARGET
from workers.targets.blue.answers import ImportOptions
from workers.targets.blue.client import BlueClient
from workers.targets.blue.limits import BlueLimits
from workers.targets.blue.registry import Owner, Registry
from workers.targets.blue.row_warnings import Outcome, parse

SINK = TARGET.sink
UNIT = "job1:0"
LIMITS = BlueLimits(instance="http://blue.test/BlueWebService.svc", rows_per_push=2,
                    foreign_retry_seconds=300, busy_retry_seconds=30)  # fmt: skip


def users(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"USER_ID": f"u{n}", "FIRST_NAME": "F", "LAST_NAME": "L", "EMAIL": f"u{n}@x"}
            for n in range(start, start + count)]  # fmt: skip


def context(
    sim: Callable[[httpx.Request], httpx.Response],
    client: redis.Redis,
    records: list[dict[str, Any]],
    **remote: str,
) -> RunContext[BlueLimits, BlueClient]:
    blue = BlueClient(Secret(FAKE_API_KEY), endpoint=LIMITS.instance, limits=LIMITS,
                      transport=httpx.MockTransport(sim))  # fmt: skip
    client.set(keys.lease(UNIT), "this-attempt")  # the runner's claim, as while a unit runs
    remembered = dict(remote)
    return RunContext(
        unit_id=UNIT, attempt=2, records=records, params={"datasource": "Users"},
        remote=remembered, client=blue, limits=LIMITS, settings=Settings(),
        log=structlog.get_logger("test"), remember=remembered.update, checkpoint=lambda: None,
        target_state=TargetState(client, "blue", UNIT),
    )  # fmt: skip


def registry(client: redis.Redis) -> Registry:
    return Registry(TargetState(client, "blue", UNIT), LIMITS.instance)


def open_transaction(sim: BlueSimulator) -> int:
    blue = BlueClient(Secret(FAKE_API_KEY), endpoint=LIMITS.instance,
                      transport=httpx.MockTransport(sim))  # fmt: skip
    transaction_id = blue.register("Data1", ImportOptions())
    blue.push(transaction_id, "Users", ["USER_ID", "FIRST_NAME", "LAST_NAME", "EMAIL"],
              [["old", "F", "L", "e"]])  # fmt: skip
    return transaction_id


# -- options and planning ---------------------------------------------------------------------


def test_options_are_checked_and_normalised() -> None:
    checked = SINK.check_params({"datasource": "Users", "abort_on_empty": "no",
                                 "id_columns": "COURSE_ID, USER_ID"}, Settings())  # fmt: skip
    assert checked["abort_on_empty"] is False and checked["replace_blue_role"] is False
    assert checked["id_columns"] == ["COURSE_ID", "USER_ID"]
    with pytest.raises(InputError, match="datasource"):
        SINK.check_params({}, Settings())
    with pytest.raises(InputError, match="unknown blue option"):
        SINK.check_params({"datasource": "Users", "datasourse": "x"}, Settings())
    with pytest.raises(InputError, match="abort_on_empty"):
        SINK.check_params({"datasource": "Users", "abort_on_empty": "maybe"}, Settings())


def test_a_job_is_one_unit_whatever_its_size() -> None:
    units = list(SINK.plan(locate(users(2500)), LIMITS, {"datasource": "Users"}))
    assert [len(u) for u in units] == [2500]


@pytest.mark.parametrize(
    ("user_id", "phrase"),
    [("o'brien", "apostrophe"), ("a,b", "comma"), ("x||||||y", "'||||||'"), ("", "empty")],
)
def test_invalid_ids_are_refused_with_where_and_why(user_id: str, phrase: str) -> None:
    rows = users(3)
    rows[2]["USER_ID"] = user_id
    with pytest.raises(InputError, match=phrase) as caught:
        list(SINK.plan(locate(rows, "users.jsonl"), LIMITS, {"datasource": "Users"}))
    assert str(caught.value).startswith("users.jsonl 3: USER_ID")


def test_rows_with_other_columns_than_the_first_are_refused() -> None:
    rows = users(2)
    del rows[1]["EMAIL"]
    with pytest.raises(InputError, match=r"missing \['EMAIL'\]"):
        list(SINK.plan(locate(rows), LIMITS, {"datasource": "Users"}))


def test_row_warnings_are_tied_to_their_records() -> None:
    text = (
        "Row 0: 'FIRST_NAME' contains data that exceeds maximum allowable length of field: "
        "Blue automatically truncated the data.\nRow 1: ID field contains apostrophe(s).\n"
        "Row 1 (x): 'USER_ID' contains data that exceeds the maximum allowable length of field:"
        " Row 1 was not imported.\nSomething about the whole import."
    )
    found = [(w.row, w.skipped) for w in parse(text)]
    assert found == [(0, False), (1, True), (1, True), (None, False)]
    outcome = Outcome.empty()
    records = users(6)
    outcome.add(text, records, range(4, 6), "USER_ID")  # the call that sent rows 4 and 5
    assert [index for index, _ in outcome.rejected] == [5, 5]
    assert "apostrophe" in outcome.rejected[0][1]
    assert outcome.warnings[0].startswith("record 5 (USER_ID=u4)")
    assert "whole import" in outcome.warnings[1]


# -- one attempt against the simulator --------------------------------------------------------


def test_skipped_rows_are_rejected_with_blues_reason(redis_client: redis.Redis) -> None:
    sim = BlueSimulator()
    sim.configure(max_id_length=5)
    rows = users(4)
    rows[1]["USER_ID"] = "toolong-id"
    rows[3]["FIRST_NAME"] = "#INVALID#"
    delivered = SINK.run(context(sim, redis_client, rows))
    assert delivered.count == 2
    assert [r["USER_ID"] for r, _ in delivered.rejected] == ["toolong-id", "u3"]
    assert "was not imported" in delivered.rejected[0][1]
    assert "THIS ROW SKIPPED" in delivered.rejected[1][1]
    assert sim.ledger()["committed"] == {"Data1": 2}


def test_a_transaction_of_this_units_dead_attempt_is_cancelled(redis_client: redis.Redis) -> None:
    sim = BlueSimulator()
    stale = open_transaction(sim)
    ctx = context(sim, redis_client, users(3), transaction_id=str(stale), phase="pushing")
    assert isinstance(SINK.run(ctx), Delivered)
    ledger = sim.ledger()
    assert ledger["transactions"] == {"cancelled": 1, "finalized": 1}
    assert ledger["committed"] == {"Data1": 3} and ledger["busy_refusals"] == 0


def test_a_transaction_of_another_dead_unit_is_cancelled(redis_client: redis.Redis) -> None:
    sim = BlueSimulator()
    stale = open_transaction(sim)
    redis_client.hset(registry(redis_client).key, str(stale), Owner("job0:0", "gone").encode())
    SINK.run(context(sim, redis_client, users(3)))  # job0:0 holds no lease: its owner died
    assert sim.ledger()["transactions"] == {"cancelled": 1, "finalized": 1}
    assert redis_client.hkeys(registry(redis_client).key) == []


def test_a_live_units_transaction_is_waited_for(redis_client: redis.Redis) -> None:
    sim = BlueSimulator()
    live = open_transaction(sim)
    redis_client.hset(registry(redis_client).key, str(live), Owner("job0:0", "alive").encode())
    redis_client.set(keys.lease("job0:0"), "alive")
    with pytest.raises(RetryableError, match="of importq unit job0:0") as caught:
        SINK.run(context(sim, redis_client, users(3)))
    assert caught.value.retry_after == LIMITS.busy_retry_seconds
    assert sim.ledger()["transactions"] == {"pushing": 1}


def test_a_foreign_transaction_is_left_alone(redis_client: redis.Redis) -> None:
    sim = BlueSimulator()
    foreign = sim.open_foreign("Data2")
    with pytest.raises(
        RetryableError, match=f"foreign import is open on Blue: transaction {foreign}"
    ) as caught:
        SINK.run(context(sim, redis_client, users(3)))
    assert caught.value.retry_after == LIMITS.foreign_retry_seconds
    ledger = sim.ledger()
    assert ledger["foreign_cancelled"] == [] and ledger["transactions"] == {"registered": 1}
    assert ledger["requests"].get("RegisterImport") is None  # it did not even try


def test_a_registration_whose_answer_died_is_recognised(redis_client: redis.Redis) -> None:
    sim = BlueSimulator()
    blue = BlueClient(Secret(FAKE_API_KEY), endpoint=LIMITS.instance,
                      transport=httpx.MockTransport(sim))  # fmt: skip
    redis_client.hset(registry(redis_client).key, "registering", Owner(UNIT, "old").encode())
    blue.register("Data1", ImportOptions())  # registered, then its caller died: status -4
    SINK.run(context(sim, redis_client, users(2)))
    assert sim.ledger()["transactions"] == {"cancelled": 1, "finalized": 1}


def test_a_lost_finalize_answer_is_not_imported_again(redis_client: redis.Redis) -> None:
    sim = BlueSimulator()
    first = SINK.run(context(sim, redis_client, users(3)))
    committed = sim.ledger()["timeline"][0]["id"]
    # The worker died after FinalizeImport was sent: job state still says "finalizing".
    again = SINK.run(context(sim, redis_client, users(3), transaction_id=str(committed),
                             phase="finalizing"))  # fmt: skip
    assert again.count == first.count == 3
    ledger = sim.ledger()
    assert ledger["committed_rows"] == 3 and ledger["duplicates"] == 0
    assert ledger["requests"]["RegisterImport"] == 1


def test_a_prepared_transaction_whose_finalize_never_arrived_is_finalized(
    redis_client: redis.Redis,
) -> None:
    sim = BlueSimulator()
    blue = BlueClient(Secret(FAKE_API_KEY), endpoint=LIMITS.instance,
                      transport=httpx.MockTransport(sim))  # fmt: skip
    transaction_id = blue.register("Data1", ImportOptions())
    blue.push(transaction_id, "Users", ["USER_ID", "FIRST_NAME", "LAST_NAME", "EMAIL"],
              [[f"u{n}", "F", "L", "e"] for n in range(3)])  # fmt: skip
    blue.prepare(transaction_id)
    ctx = context(sim, redis_client, users(3), transaction_id=str(transaction_id),
                  phase="finalizing")  # fmt: skip
    assert SINK.run(ctx).count == 3
    ledger = sim.ledger()
    assert ledger["transactions"] == {"finalized": 1} and ledger["committed_rows"] == 3


def test_a_failure_after_registering_cancels_the_transaction(redis_client: redis.Redis) -> None:
    sim = BlueSimulator()
    sim.configure(report_columns=False)  # the column check falls to Blue's push
    rows = [{"USER_ID": "u1", "FIRST_NAME": "F", "LAST_NAME": "L"}]
    with (
        structlog.testing.capture_logs() as logs,
        pytest.raises(FinalError, match="Missing value on EMAIL field") as caught,
    ):
        SINK.run(context(sim, redis_client, rows))
    assert "checked at the first push" in str(caught.value)
    assert sim.ledger()["transactions"] == {"cancelled": 1}
    assert sim.ledger()["requests"]["PushObjectDataV2"] == 1
    assert redis_client.hkeys(registry(redis_client).key) == []
    said = [e for e in logs if "does not report" in e["event"]]
    assert said and said[0]["block"] == "Users" and said[0]["log_level"] == "warning"


def test_blues_progress_is_followed_while_prepare_blocks(redis_client: redis.Redis) -> None:
    sim = BlueSimulator()
    sim.configure(prepare_seconds=0.5)
    ctx = context(sim, redis_client, users(3))
    ctx.limits = replace(LIMITS, progress_interval_seconds=0.05)
    seen: list[str] = []
    ctx.remember = lambda values: seen.append(values.get("progress", ""))
    SINK.run(ctx)
    during = [int(p) for p in seen if p and 0 < int(p) < 99]
    assert during and during == sorted(during)  # climbing while Blue prepared
    assert [p for p in seen if p][-1] == "100"


def test_a_unit_waiting_on_a_lost_finalize_answer_keeps_its_transaction(
    redis_client: redis.Redis,
) -> None:
    from workers import keys
    from workers.targets.blue.registry import Owner, Registry

    registry = Registry(TargetState(redis_client, "blue", "job:0"), "instance")
    other = Owner("job2:0", "gone-token")  # its lease is gone: it stepped away
    redis_client.hset(keys.unit(other.unit), mapping={"state": "waiting",
                                                      "remote.phase": "preparing"})  # fmt: skip
    assert not registry.alive(other)  # a dead push or prepare: cancel it
    redis_client.hset(keys.unit(other.unit), "remote.phase", "finalizing")
    assert registry.alive(other)  # it may be committing: only its unit settles it


# -- Blue as the vendor ships it (issue 11) ---------------------------------------------------


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        (lambda row: row.pop("EMAIL"), r"missing \['EMAIL'\]"),
        (lambda row: row.update(NICKNAME="x"), r"not in the block \['NICKNAME'\]"),
    ],
)
def test_columns_are_checked_before_anything_is_registered(
    redis_client: redis.Redis, change: Callable[[dict[str, Any]], Any], phrase: str
) -> None:
    sim = BlueSimulator()  # reports each block's columns as ColumnNamesList, as Blue does
    rows = users(2)
    for row in rows:
        change(row)
    with pytest.raises(FinalError, match=phrase) as caught:
        SINK.run(context(sim, redis_client, rows))
    assert "no transaction was opened" in str(caught.value)
    assert sim.ledger()["requests"].get("RegisterImport") is None


class Garble:
    """The simulator, with the answer to one operation spoiled after Blue acted on it."""

    def __init__(self, sim: BlueSimulator, operation: str, spoil: Callable[[bytes], bytes]):
        self.sim, self.operation, self.spoil = sim, operation, spoil

    def __call__(self, request: httpx.Request) -> httpx.Response:
        answer = self.sim(request)
        action = request.headers.get("Content-Type", "") + request.headers.get("SOAPAction", "")
        if f"/{self.operation}" in action and request.method == "POST":
            return httpx.Response(answer.status_code, content=self.spoil(answer.content),
                                  headers=answer.headers)  # fmt: skip
        return answer


@pytest.mark.parametrize(
    ("spoil", "error"),
    [
        (lambda xml: xml[: len(xml) // 2], RetryableError),  # cut off: unreadable
        (lambda xml: xml.replace(b"TransactionID>", b"TransactionNo>"), FinalError),  # no id
    ],
)
def test_a_registration_whose_answer_is_unusable_is_cancelled_at_once(
    redis_client: redis.Redis, spoil: Callable[[bytes], bytes], error: type[Exception]
) -> None:
    sim = BlueSimulator()
    with pytest.raises(error):
        SINK.run(context(Garble(sim, "RegisterImport", spoil), redis_client, users(3)))
    assert sim.ledger()["transactions"] == {"cancelled": 1}  # not left open to block Blue
    assert redis_client.hkeys(registry(redis_client).key) == []


def test_giving_up_after_a_lost_registration_answer_cancels_it(redis_client: redis.Redis) -> None:
    sim = BlueSimulator()
    blue = BlueClient(Secret(FAKE_API_KEY), endpoint=LIMITS.instance,
                      transport=httpx.MockTransport(sim))  # fmt: skip
    redis_client.hset(registry(redis_client).key, "registering", Owner(UNIT, "old").encode())
    blue.register("Data1", ImportOptions())  # its answer died with the attempt: no id kept
    ctx = context(sim, redis_client, users(2), phase="registering")  # as the attempt left it
    assert SINK.abandon(ctx) is None  # the unit ends for good (out of attempts, cancelled)
    assert sim.ledger()["transactions"] == {"cancelled": 1}
    assert redis_client.hkeys(registry(redis_client).key) == []


def test_a_shutdown_between_prepare_and_finalize_does_not_hand_the_unit_back(
    redis_client: redis.Redis,
) -> None:
    sim = BlueSimulator()
    ctx = context(sim, redis_client, users(3))

    def checkpoint() -> None:  # the worker was asked to stop while Blue prepared
        if sim.ledger()["requests"].get("PrepareDataToFinzalizeImportV2"):
            raise HandBack("the worker is shutting down")

    ctx.checkpoint = checkpoint
    assert SINK.run(ctx).count == 3
    ledger = sim.ledger()
    assert ledger["transactions"] == {"finalized": 1} and ledger["committed_rows"] == 3


@pytest.mark.parametrize("alive", [False, True])
def test_a_transaction_recorded_under_another_spelling_of_the_instance_is_ours(
    redis_client: redis.Redis, alive: bool
) -> None:
    sim = BlueSimulator()
    opened = open_transaction(sim)
    # A worker given another address of this Blue (an alias no normalising can know).
    if alive:
        redis_client.set(keys.lease("job0:0"), "token0")
    alias = "http://blue-alias.test/BlueWebService.svc"
    elsewhere = Registry(TargetState(redis_client, "blue", "job0:0"), alias)
    elsewhere.record(opened)  # as that worker's unit job0:0 did after RegisterImport
    if alive:
        with pytest.raises(RetryableError, match="of importq unit job0:0") as caught:
            SINK.run(context(sim, redis_client, users(3)))
        assert caught.value.retry_after == LIMITS.busy_retry_seconds  # not the foreign wait
        assert sim.ledger()["foreign_cancelled"] == []
        return
    assert SINK.run(context(sim, redis_client, users(3))).count == 3
    assert sim.ledger()["transactions"] == {"cancelled": 1, "finalized": 1}
    assert redis_client.hkeys(elsewhere.key) == []
