"""`importq queues` (and doctor's consumer check): each target at a glance, from Redis.

Queued messages and their age come from the real Celery list, consumers from real
worker processes' heartbeats, the last 5 / 60 minutes from the finish script's tallies.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from click.testing import CliRunner

from importq.cli import main
from importq.errors import FinalError
from tests.helpers import publish_sourcing, sample_records, wait_for_job, wait_until
from tests.scripted import TARGET, MakeRunner, ScriptedSink, staged_unit
from workers import consumers, keys
from workers.breaker import Pause
from workers.queues import QueueView, Tally, running_units, tally


def queues_json() -> dict[str, dict[str, Any]]:
    result = CliRunner().invoke(main, ["queues", "--json"])
    assert result.exit_code == 0, result.output
    return {row["target"]: row for row in json.loads(result.stdout)}


def test_delivered_and_dead_lettered_records_count_in_the_minute_they_ended(
    sink: ScriptedSink, make_runner: MakeRunner, redis_client: redis.Redis
) -> None:
    runner, store = make_runner()
    assert runner.run(TARGET, staged_unit(store, count=4)) == "succeeded"
    sink.error = FinalError("422: refused", target=TARGET)
    assert runner.run(TARGET, staged_unit(store, count=3)) == "failed"
    now = time.time()
    assert tally(redis_client, TARGET, 5, now) == Tally(delivered=4, dead=3)
    # Half an hour ago counts in the hour only; an hour and more ago in neither.
    minute = int(now // 60)
    redis_client.hset(keys.recent(TARGET, minute - 30), mapping={"delivered": 10, "dead": 1})
    redis_client.hset(keys.recent(TARGET, minute - 60), mapping={"delivered": 100, "dead": 100})
    assert tally(redis_client, TARGET, 5, now) == Tally(4, 3)
    assert tally(redis_client, TARGET, 60, now) == Tally(14, 4)
    assert 3600 < redis_client.ttl(keys.recent(TARGET, minute)) <= keys.RECENT_TTL
    row = queues_json()[TARGET]
    assert row["delivered"] == {"5m": 4, "60m": 14}
    assert row["dead_lettered"] == {"5m": 3, "60m": 4}


def test_a_unit_under_a_live_lease_counts_as_running(
    sink: ScriptedSink, make_runner: MakeRunner, redis_client: redis.Redis
) -> None:
    runner, store = make_runner()
    unit_id = staged_unit(store)
    assert runner.leases.claim(unit_id, max_crashes=5).status == "claimed"
    assert running_units(redis_client) == {TARGET: 1}
    redis_client.delete(keys.lease(unit_id))  # its worker died: the lease ran out
    assert running_units(redis_client) == {}


def test_queued_messages_their_age_and_the_backlog_with_no_worker(
    redis_client: redis.Redis,
) -> None:
    job_id = publish_sourcing(sample_records(9_000))  # three queue items: three messages
    time.sleep(1.1)
    row = queues_json()["sourcing_data"]
    assert row["queued"] == 3 == redis_client.llen("sourcing_data")
    assert 1.0 <= row["oldest_queued_seconds"] < 30
    assert row["running"] == 0 and row["consumers"] == []
    assert row["backlog_records"] == 9_000 and row["backlog_jobs"] == 1
    assert row["eta_seconds"] is None  # nothing consumes it: it would never be done
    assert row["paused"] is None
    text = CliRunner().invoke(main, ["queues"]).output
    assert "no worker consumes sourcing_data: `importq worker --targets sourcing_data`" in text
    line = next(x for x in text.splitlines() if x.startswith("sourcing_data"))
    assert line.split()[1:3] == ["3", "1s"] and "9000" in line.split()
    assert job_id


def test_eta_is_the_backlog_at_the_recent_pace() -> None:
    view = QueueView("t", 0, None, 1, ["w@h:1"], None, 0, Tally(2_900, 100), Tally(9_000, 0),
                     backlog_records=6_000, backlog_jobs=2)  # fmt: skip
    assert view.records_per_second == 10 and view.eta_seconds == 600
    quiet = QueueView("t", 0, None, 0, ["w@h:1"], None, 0, Tally(), Tally(36_000, 0), 7_200, 1)
    assert quiet.eta_seconds == 720  # nothing in 5 minutes: the hour's pace
    paused = Pause("t", "vendor down", time.time(), time.time() + 30)
    held = QueueView("t", 0, None, 0, ["w@h:1"], paused, 3, Tally(5, 0), Tally(5, 0), 10, 1)
    assert held.eta_seconds is None and held.as_dict()["paused"]["reason"] == "vendor down"


def test_a_worker_is_a_consumer_of_its_queues_until_it_stops(
    sim: Any, start_worker: Any, redis_client: redis.Redis
) -> None:
    sim.configure(poison_record_ids={"r-7"})
    worker = start_worker(queues="sourcing_data", concurrency=2)
    live = wait_until("its heartbeat", lambda: consumers.live(redis_client, "sourcing_data"))
    assert len(live) == 1 and live[0].startswith("w0-")
    job = wait_for_job(publish_sourcing(sample_records(600)))
    assert job.records_delivered == 599 and job.records_dead == 1
    rows = queues_json()
    row = rows["sourcing_data"]
    assert row["consumers"] == live and row["consumers_from"].startswith("worker heartbeats")
    assert row["delivered"]["5m"] == 599 and row["dead_lettered"]["5m"] == 1
    assert row["queued"] == 0 and row["backlog_records"] == 0 and row["eta_seconds"] == 0
    assert rows["blue"]["consumers"] == []  # it consumes only what it was told to
    worker.stop()
    assert consumers.live(redis_client, "sourcing_data") == []  # left at once, not after a TTL


def test_a_killed_worker_stops_counting_once_its_beats_stop(
    sim: Any, start_worker: Any, redis_client: redis.Redis
) -> None:
    worker = start_worker(queues="sourcing_data", concurrency=1)
    wait_until("the worker's heartbeat", lambda: consumers.live(redis_client, "sourcing_data"))
    worker.kill()
    assert consumers.live(redis_client, "sourcing_data")  # nobody said it left
    ttl = consumers.ttl_for(0.5)  # IMPORTQ_REAPER_INTERVAL in the tests
    gone = lambda: not consumers.live(redis_client, "sourcing_data")  # noqa: E731
    wait_until("the dead worker to drop out", gone, timeout=ttl + 5)


def test_doctor_strict_fails_a_configured_target_that_no_worker_consumes(
    sim: Any, start_worker: Any
) -> None:
    start_worker(queues="sourcing_data", concurrency=1)
    result = CliRunner().invoke(main, ["doctor"])
    assert "[ok  ] sourcing_data consumers: w0-" in result.output
    assert "[WARN] blue consumers: no live worker consumes it" in result.output
    assert "fix: start one: importq worker --targets blue" in result.output
    assert result.exit_code == 0  # warnings alone pass without --strict
    strict = CliRunner().invoke(main, ["doctor", "--strict"])
    assert strict.exit_code == 2, strict.output
