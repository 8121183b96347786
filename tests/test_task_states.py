"""How a unit's run ends its Celery task (workers/task_states.py), run in-process.

Flower itself is in tests/test_flower.py; here each way a unit can end meets the
task's end: FAILURE (UnitFailed), RETRY (Celery's Retry) or SUCCESS (the status).
"""

from __future__ import annotations

import pytest
from celery.exceptions import Retry

from importq.errors import FinalError, RetryableError, VendorBusy
from tests.scripted import TARGET, MakeRunner, Published, ScriptedSink, staged_unit
from workers import keys
from workers.routing import FREE_HANDBACKS
from workers.signals import HandBack, LeaseUnconfirmed
from workers.targets.base import Delivered, RunContext
from workers.task_states import HandBacks, RefusedRecords, UnitFailed, UnitWaits, end_of_task


def ended(make_runner: MakeRunner, sink: ScriptedSink, error: Exception | None) -> str:
    runner, store = make_runner()
    runner.add_middleware(RefusedRecords())  # as workers.app builds its runner
    runner.add_middleware(HandBacks())
    unit_id = staged_unit(store)
    sink.error = error
    return end_of_task(lambda: runner.run(TARGET, unit_id), unit_id)


def test_a_delivered_unit_ends_in_success_with_its_status(
    make_runner: MakeRunner, sink: ScriptedSink
) -> None:
    assert ended(make_runner, sink, None) == "succeeded"


def test_a_failed_unit_ends_in_failure_naming_the_unit_not_the_vendors_words(
    make_runner: MakeRunner, sink: ScriptedSink
) -> None:
    with pytest.raises(UnitFailed) as failed:
        ended(make_runner, sink, FinalError("record r-1: Code 'SECRET-ish' refused", target=TARGET))
    message = str(failed.value)
    assert "failed, 3 records dead-lettered; why: importq status " in message
    assert "r-1" not in message and "SECRET-ish" not in message


def test_records_refused_inside_a_delivered_unit_end_it_in_failure(
    make_runner: MakeRunner, sink: ScriptedSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse_one(ctx: RunContext[None, None]) -> Delivered:
        return Delivered(2, rejected=[(ctx.records[0], "row 0 refused")])

    monkeypatch.setattr(sink, "run", refuse_one)
    with pytest.raises(UnitFailed, match="delivered, but 1 records were refused"):
        ended(make_runner, sink, None)


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (RetryableError("HTTP 503", target=TARGET), "will be retried after attempt 1"),
        (VendorBusy("another import is open", target=TARGET), "waits for its vendor, using no"),
    ],
    ids=["retry", "wait"],
)
def test_a_unit_that_will_run_again_ends_in_retry_without_sending_a_message(
    make_runner: MakeRunner, sink: ScriptedSink, published: Published, error: Exception, says: str
) -> None:
    with pytest.raises(Retry) as retried:
        ended(make_runner, sink, error)
    assert isinstance(retried.value.exc, UnitWaits) and says in str(retried.value.exc)
    assert retried.value.when is not None and 0 <= retried.value.when <= 10
    assert retried.value.sig is None  # Celery sends nothing: the runner rescheduled the unit
    assert [target for _, target, _ in published.calls] == [TARGET]


def test_a_failed_unit_without_records_says_so(make_runner: MakeRunner, sink: ScriptedSink) -> None:
    runner, store = make_runner()
    job_id = store.create(TARGET, {})
    unit_id = store.stage_unit(job_id, TARGET, 0, [], rescue_ms=60_000)
    store.open(job_id)
    sink.error = FinalError("no such import", target=TARGET)
    with pytest.raises(UnitFailed, match=r"failed, no records \(a bare trigger\)"):
        end_of_task(lambda: runner.run(TARGET, unit_id), unit_id)


def retried_saying(make_runner: MakeRunner, sink: ScriptedSink, stop: Exception,
                   handbacks: int = 0) -> str:  # fmt: skip
    """What the RETRY of a unit stopped by `stop` says, after `handbacks` earlier ones."""
    runner, store = make_runner()
    runner.add_middleware(RefusedRecords())
    runner.add_middleware(HandBacks())
    unit_id = staged_unit(store)
    store.redis.hset(keys.unit(unit_id), "handbacks", handbacks)
    sink.error = stop
    with pytest.raises(Retry) as retried:
        end_of_task(lambda: runner.run(TARGET, unit_id), unit_id)
    assert retried.value.when == 0  # back in the queue at once
    return str(retried.value.exc)


def test_a_unit_handed_back_at_shutdown_says_it_used_no_attempt(
    make_runner: MakeRunner, sink: ScriptedSink
) -> None:
    said = retried_saying(make_runner, sink, HandBack("the worker is shutting down"))
    assert "handed back at worker shutdown; no attempt used" in said
    assert "will be retried" not in said and "after attempt" not in said


def test_a_hand_back_past_the_free_ones_says_it_used_an_attempt(
    make_runner: MakeRunner, sink: ScriptedSink
) -> None:
    stop = HandBack("the worker is shutting down")
    said = retried_saying(make_runner, sink, stop, handbacks=FREE_HANDBACKS)
    assert f"handed back at worker shutdown (hand-back {FREE_HANDBACKS + 1}, past the " in said
    assert "; it used attempt 1" in said and "no attempt" not in said


def test_a_unit_whose_lease_went_unconfirmed_says_so(
    make_runner: MakeRunner, sink: ScriptedSink
) -> None:
    said = retried_saying(make_runner, sink, LeaseUnconfirmed("the renewal came back too late"))
    assert "handed back: its lease could not be confirmed in time; no attempt used" in said
