"""Each target at a glance (`importq queues`): its queue, its units at work, who consumes it,
its pause, and what it delivered lately, read from Redis without asking any worker.

    queued       messages waiting in the target's Celery list (kombu's key: the queue name)
    oldest       how long the oldest of them has waited (the header publish_unit sets)
    running      units under a live lease (importq:lease:*, each unit's hash names its target)
    consumers    workers whose heartbeat says they consume the queue (workers/consumers.py)
    paused       the circuit breaker's or an operator's pause (workers/breaker.py)
    delivered, dead-lettered in the last 5 and 60 minutes: per-minute tallies the unit
                 finish script keeps (keys.recent)
    backlog      records of unfinished jobs not yet delivered or dead-lettered, and its ETA
                 at the pace of the last 5 minutes (else of the last hour)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from workers import consumers, keys
from workers.breaker import Breaker, Pause
from workers.jobs import JobStore, as_text

# The Celery message header that says when publish_unit sent it (epoch seconds).
SENT_AT_HEADER = "importq_sent_at"
SCAN_BATCH = 1000


@dataclass(frozen=True)
class QueueView:
    """One target at a glance (the fields as the module docstring lists them)."""

    target: str
    queued: int
    oldest_queued_seconds: float | None
    running: int
    consumers: list[str]
    pause: Pause | None
    paused_units: int  # units parked by the pause
    last_5m: Tally
    last_60m: Tally
    backlog_records: int
    backlog_jobs: int

    @property
    def records_per_second(self) -> float:
        """The recent pace: the last 5 minutes if anything ended in them, else the hour."""
        recent = self.last_5m.delivered + self.last_5m.dead
        if recent:
            return recent / 300
        return (self.last_60m.delivered + self.last_60m.dead) / 3600

    @property
    def eta_seconds(self) -> float | None:
        """When the backlog would be done at the recent pace; None if it will not move."""
        if not self.backlog_records:
            return 0.0
        if self.pause or not self.consumers or not self.records_per_second:
            return None
        return self.backlog_records / self.records_per_second

    def as_dict(self) -> dict[str, Any]:
        pause = None
        if self.pause:
            pause = {"by": self.pause.by, "reason": self.pause.reason, "since": self.pause.since,
                     "next_probe_at": self.pause.probe_at or None}  # fmt: skip
        return {
            "target": self.target,
            "queued": self.queued,
            "oldest_queued_seconds": self.oldest_queued_seconds,
            "running": self.running,
            "consumers": self.consumers,
            "consumers_from": "worker heartbeats (workers/consumers.py)",
            "paused": pause,
            "paused_units": self.paused_units,
            "delivered": {"5m": self.last_5m.delivered, "60m": self.last_60m.delivered},
            "dead_lettered": {"5m": self.last_5m.dead, "60m": self.last_60m.dead},
            "records_per_second": round(self.records_per_second, 2),
            "backlog_records": self.backlog_records,
            "backlog_jobs": self.backlog_jobs,
            "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds),
        }


@dataclass(frozen=True)
class Tally:
    """Records that ended in a span of minutes: delivered, or sent to the dead letters."""

    delivered: int = 0
    dead: int = 0


def look(client: redis.Redis, breaker: Breaker, targets: list[str]) -> list[QueueView]:
    """Every target in `targets`, in that order."""
    running = running_units(client)
    backlog = backlog_by_target(JobStore(client))
    now = time.time()
    views = []
    for target in targets:
        records, jobs = backlog.get(target, (0, 0))
        views.append(
            QueueView(
                target=target,
                queued=int(client.llen(keys.celery_queue(target))),
                oldest_queued_seconds=oldest_queued_age(client, target, now),
                running=running.get(target, 0),
                consumers=consumers.live(client, target),
                pause=breaker.pause(target),
                paused_units=int(client.zcard(keys.breaker_waiting(target))),
                last_5m=tally(client, target, 5, now),
                last_60m=tally(client, target, 60, now),
                backlog_records=records,
                backlog_jobs=jobs,
            )
        )
    return views


def tally(client: redis.Redis, target: str, minutes: int, now: float) -> Tally:
    """Records delivered and dead-lettered in the last `minutes` (this one included)."""
    this_minute = int(now // 60)
    pipe = client.pipeline(transaction=False)
    for minute in range(this_minute - minutes + 1, this_minute + 1):
        pipe.hmget(keys.recent(target, minute), ["delivered", "dead"])
    delivered = dead = 0
    for got_delivered, got_dead in pipe.execute():
        delivered += int(got_delivered or 0)
        dead += int(got_dead or 0)
    return Tally(delivered, dead)


def oldest_queued_age(client: redis.Redis, target: str, now: float) -> float | None:
    """Seconds the oldest waiting message has waited (kombu pushes left, pops right)."""
    raw = client.lindex(keys.celery_queue(target), -1)
    if raw is None:
        return None
    try:
        sent_at = json.loads(raw)["headers"][SENT_AT_HEADER]
    except (ValueError, KeyError, TypeError):  # sent by an older importq: no time on it
        return None
    return round(max(0.0, now - float(sent_at)), 1)


def running_units(client: redis.Redis) -> dict[str, int]:
    """Units under a live lease, per target. Leases are few (one per unit at work), but
    SCAN walks the whole keyspace: a few round trips per 1000 keys."""
    unit_ids = [as_text(key)[len(keys.lease("")) :]
                for key in client.scan_iter(match=keys.lease("*"), count=SCAN_BATCH)]  # fmt: skip
    pipe = client.pipeline(transaction=False)
    for unit_id in unit_ids:
        pipe.hget(keys.unit(unit_id), "target")
    counts: dict[str, int] = {}
    for target in pipe.execute():
        if target is not None:
            counts[as_text(target)] = counts.get(as_text(target), 0) + 1
    return counts


def backlog_by_target(store: JobStore) -> dict[str, tuple[int, int]]:
    """Per target: records still to deliver in listed, unfinished jobs, and those jobs."""
    job_ids = [as_text(j) for j in store.redis.zrange(keys.JOBS, 0, -1)]
    backlog: dict[str, tuple[int, int]] = {}
    for start in range(0, len(job_ids), SCAN_BATCH):
        for job in store.many(job_ids[start : start + SCAN_BATCH]):
            if job.finished:
                continue
            left = job.records_total - job.records_delivered - job.records_dead
            records, jobs = backlog.get(job.target, (0, 0))
            backlog[job.target] = (records + max(0, left), jobs + 1)
    return backlog
