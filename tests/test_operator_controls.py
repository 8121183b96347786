"""`importq pause` / `resume`, `purge` and `retry`: an operator's hand on a target or a unit.

The in-process runner with the scripted target (tests/scripted.py) shows the rules;
real worker processes and the SourcingData simulator show them end to end.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from importq.cli import main
from tests.helpers import publish_sourcing, sample_records, wait_for_job, wait_until
from tests.scripted import TARGET, MakeRunner, Published, ScriptedSink, staged_unit
from tests.test_breaker import BREAKER, DOWN, due_now, probe_now
from workers import controls, keys
from workers.jobs import JobStore
from workers.middleware.base import Waker
from workers.targets.base import Delivered, RunContext


def cli(*args: str, given: str | None = None) -> Any:
    return CliRunner().invoke(main, list(args), input=given)


# --- pause and resume ---------------------------------------------------------------------------


def test_an_operator_pause_holds_units_without_attempts_and_is_never_probed(
    sink: ScriptedSink, make_runner: MakeRunner, redis_client: redis.Redis
) -> None:
    runner, store = make_runner(**BREAKER)
    units = [staged_unit(store) for _ in range(3)]
    runner.breaker.hold(TARGET, "vendor maintenance until 14:00")
    for _ in range(3):  # however often they come back, and past any probe time
        probe_now(redis_client)
        due_now(redis_client, *units)
        assert [runner.run(TARGET, u) for u in units] == ["waiting"] * 3
    assert sink.runs == 0  # not one unit reached the vendor: no probe
    assert {store.unit(u)["attempts"] for u in units} == {"0"}
    assert {store.unit(u)["waits_for"] for u in units} == {"breaker"}
    pause = runner.breaker.pause(TARGET)
    assert pause is not None and pause.by == "operator"
    assert "paused by an operator" in pause.describe()
    assert "vendor maintenance until 14:00" in store.unit(units[0])["last_error"]


def test_a_probe_that_answers_does_not_lift_an_operator_pause(
    sink: ScriptedSink,
    make_runner: MakeRunner,
    published: Published,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner, store = make_runner(**BREAKER)
    units = [staged_unit(store) for _ in range(3)]
    sink.error = DOWN
    for unit_id in units:  # the breaker pauses the target
        runner.run(TARGET, unit_id)
    probe_now(redis_client)
    due_now(redis_client, units[0])

    def operator_pauses_while_the_probe_runs(ctx: RunContext[None, None]) -> Delivered:
        runner.breaker.hold(TARGET, "paused by an operator")
        return Delivered(len(ctx.records))

    monkeypatch.setattr(sink, "run", operator_pauses_while_the_probe_runs)
    published.calls.clear()
    assert runner.run(TARGET, units[0]) == "succeeded"  # the probe reached the vendor...
    pause = runner.breaker.pause(TARGET)
    assert pause is not None and pause.by == "operator"  # ...but only resume lifts this
    assert published.calls == []  # and nobody was woken


def test_resume_lifts_the_pause_and_wakes_the_units_that_waited(
    sink: ScriptedSink, make_runner: MakeRunner, published: Published
) -> None:
    runner, store = make_runner(**BREAKER)
    units = [staged_unit(store) for _ in range(3)]
    runner.breaker.hold(TARGET, "maintenance")
    for unit_id in units:
        runner.run(TARGET, unit_id)
    published.calls.clear()
    waker = Waker(runner.leases, published)
    assert controls.resume(runner.breaker, waker, TARGET) == 3
    assert runner.breaker.pause(TARGET) is None
    assert sorted(u for u, _, countdown in published.calls if countdown is None) == sorted(units)
    assert [runner.run(TARGET, u) for u in units] == ["succeeded"] * 3  # due now, not later
    assert controls.resume(runner.breaker, waker, TARGET) is None  # not paused any more


def test_pause_and_resume_a_target_with_a_real_worker(
    sim: Any, start_worker: Any, redis_client: redis.Redis
) -> None:
    paused = cli("pause", "sourcing_data", "--reason", "vendor maintenance")
    assert paused.exit_code == 0 and "sourcing_data paused" in paused.output
    start_worker(concurrency=2)
    job_id = publish_sourcing(sample_records(8_000))  # two queue items
    store = JobStore(redis_client)
    # Listed as waiting before the run's finish records it: wait for both.
    waiting = lambda: (  # noqa: E731
        redis_client.zcard(keys.breaker_waiting("sourcing_data")) == 2
        and {u["state"] for _, u in store.units(job_id)} == {"waiting"}
    )
    wait_until("both units to wait for the pause", waiting)
    assert {u["attempts"] for _, u in store.units(job_id)} == {"0"}
    assert sim.ledger()["committed_records"] == 0
    row = {r["target"]: r for r in json.loads(cli("queues", "--json").stdout)}["sourcing_data"]
    assert row["paused"]["by"] == "operator" and row["paused"]["reason"] == "vendor maintenance"
    assert row["paused_units"] == 2 and row["eta_seconds"] is None
    status = cli("status", job_id).output
    assert "paused by an operator" in status and "vendor maintenance" in status
    as_json = json.loads(cli("status", job_id, "--json").stdout)
    assert as_json["paused"]["next_probe_at"] is None  # an operator's pause is not probed
    resumed = cli("resume", "sourcing_data")
    assert "sourcing_data resumed; 2 waiting units woken" in resumed.output
    started = time.monotonic()
    job = wait_for_job(job_id, timeout=60)
    assert job.state == "succeeded" and time.monotonic() - started < 60  # woken, not rechecked
    assert sim.ledger()["committed_records"] == 8_000


def test_pause_refuses_an_unknown_target() -> None:
    result = cli("pause", "salesforce")
    assert result.exit_code == 2 and "no target 'salesforce'" in result.output


# --- purge ------------------------------------------------------------------------------------


def test_purge_drops_a_targets_queued_jobs_after_a_confirmation(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    first = publish_sourcing(sample_records(9_000))  # three units
    second = publish_sourcing(sample_records(1_000), operation_id="op-other")
    other = store.create("blue", {})
    store.stage_unit(other, "blue", 0, [{"n": 1}])
    store.open(other)
    assert redis_client.llen("sourcing_data") == 4
    refused = cli("purge", "sourcing_data", given="n\n")
    assert refused.exit_code == 1
    assert "Drop 2 jobs of sourcing_data (4 units, 10000 records not yet delivered)?" in (
        refused.output
    )
    assert redis_client.llen("sourcing_data") == 4 and not store.get(first).cancelled  # type: ignore[union-attr]
    done = cli("purge", "sourcing_data", "--yes")
    assert done.exit_code == 0, done.output
    assert ("2 jobs cancelled, 4 units and 10000 records dropped, 4 queued messages removed; "
            "nothing was dead-lettered") in done.output  # fmt: skip
    for job_id in (first, second):
        job = store.get(job_id)
        assert job is not None and job.state == "cancelled" and job.records_dead == 0
        assert job.units_done == job.units_total and job.finished_at  # ended, hooks ran
        assert {u["state"] for _, u in store.units(job_id)} == {"cancelled"}
    assert redis_client.llen("sourcing_data") == 0
    assert redis_client.zcard(keys.DLQ_INDEX) == 0
    assert not store.get(other).cancelled  # type: ignore[union-attr]
    again = cli("purge", "sourcing_data", "--yes")
    assert "sourcing_data has no unfinished job: nothing to purge" in again.output


def test_purge_leaves_a_unit_with_open_vendor_work_to_a_worker(
    sink: ScriptedSink, make_runner: MakeRunner, published: Published, redis_client: redis.Redis
) -> None:
    runner, store = make_runner()
    opened, retrying = staged_unit(store), staged_unit(store)
    an_hour_away: dict[Any, Any] = {
        "state": "waiting",
        "waits_for": "",
        "next_attempt_at": str(time.time() + 3600),
    }
    redis_client.hset(keys.unit(opened), mapping={**an_hour_away, "remote.item": "q-1"})
    redis_client.hset(keys.unit(retrying), mapping=an_hour_away)
    plan = controls.plan_purge(store, TARGET)
    assert (len(plan.jobs), plan.units, plan.records) == (2, 2, 6)
    done = controls.purge(store, runner, plan, "purged")
    assert done.left_to_workers == [opened] and (done.units, done.records) == (1, 3)
    assert store.unit(retrying)["state"] == "cancelled"  # its retry was an hour away
    assert [u for u, _, _ in published.calls] == [opened]  # woken for a worker to settle
    assert runner.run(TARGET, opened) == "cancelled"  # a worker settles it, then it ends
    assert sink.runs == 0


# --- retry ------------------------------------------------------------------------------------


def test_retry_runs_a_unit_waiting_for_a_far_retry_now(
    sim: Any, start_worker: Any, redis_client: redis.Redis
) -> None:
    sim.configure(fault_rate=1.0, fault_statuses=(503,), retry_after_seconds=3600)
    start_worker(concurrency=1, IMPORTQ_BREAKER_FAILURES="100")
    job_id = publish_sourcing(sample_records(1_000))
    unit_id = f"{job_id}:0"
    store = JobStore(redis_client)
    wait_until("the unit to wait for its retry", lambda: store.unit(unit_id)["state"] == "waiting")
    assert float(store.unit(unit_id)["next_attempt_at"]) > time.time() + 3000  # Retry-After
    sim.configure(fault_rate=0.0)
    result = cli("retry", unit_id)
    assert result.exit_code == 0, result.output
    assert f"unit {unit_id} sent to the sourcing_data queue now (it waited for a retry)" in (
        result.output
    )
    job = wait_for_job(job_id, timeout=60)
    assert job.state == "succeeded" and sim.ledger()["committed_records"] == 1_000
    ended = cli("retry", unit_id)
    assert ended.exit_code == 1 and "already ended succeeded: nothing to run" in ended.output


def test_retry_says_why_it_cannot_run_a_unit(
    sink: ScriptedSink, make_runner: MakeRunner, redis_client: redis.Redis
) -> None:
    runner, store = make_runner()
    missing = cli("retry", "nosuchjob:0")
    assert missing.exit_code == 1 and "no unit nosuchjob:0" in missing.output
    unit_id = staged_unit(store)
    runner.breaker.hold(TARGET, "maintenance")
    runner.run(TARGET, unit_id)
    paused = cli("retry", unit_id)
    assert paused.exit_code == 1 and f"`importq resume {TARGET}` first" in paused.output
    runner.breaker.resume(TARGET, by_operator=True)
    due_now(redis_client, unit_id)
    assert runner.leases.claim(unit_id, max_crashes=5).status == "claimed"
    running = cli("retry", unit_id)
    assert running.exit_code == 1 and "is running now" in running.output


def test_retry_sends_a_unit_whose_message_was_lost_again(redis_client: redis.Redis) -> None:
    job_id = publish_sourcing(sample_records(10))  # no worker runs in this test
    redis_client.delete("sourcing_data")  # its message is lost: the reaper would wait 300 s
    result = cli("retry", f"{job_id}:0")
    assert result.exit_code == 0, result.output
    assert "(it waited for a worker)" in result.output
    assert redis_client.llen("sourcing_data") == 1
