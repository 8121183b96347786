"""What a human needs when a chaos scenario stalls: one report, printed in the failure.

When a wait gives up (no headway, a job that does not finish), the scenario's failure says
whether each worker is alive and what its log said last, what Redis holds for the job
(queue lengths, kombu's unacked messages, each unit's state, lease and next attempt, the
reaper's deadlines), which targets are paused, which workers beat as consumers or are
shutting down, and what the vendor saw. Each part is read on its own: a Redis that is down
costs one line, not the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

from importq.processes import Process
from workers import keys
from workers.jobs import as_text

LOG_LINES = 25  # of each worker's log
UNITS_SHOWN = 40  # a bisected job can have hundreds: the first ones say enough
QUICK_SECONDS = 2.0  # the report must not wait out an outage of the Redis it describes
UNIT_FIELDS = ("state", "attempts", "crashes", "epoch", "waits_for", "rescues", "handed_back",
               "last_error")  # fmt: skip


def quick_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=QUICK_SECONDS,
                                socket_connect_timeout=QUICK_SECONDS)  # fmt: skip


def stall_report(
    client: redis.Redis,
    job_id: str | None,
    workers: Iterable[Process] = (),
    vendor: Callable[[], Any] | None = None,
) -> str:
    """The whole report: workers first (no Redis needed), then what Redis holds."""
    parts = [_section("workers", lambda: _workers(workers))]
    parts.append(_section("redis", lambda: _redis(client)))
    parts.append(_section("queues", lambda: _queues(client)))
    if job_id:
        parts.append(_section(f"job {job_id}", lambda: _job(client, job_id)))
    parts.append(_section("paused, stopping, consumers", lambda: _targets(client)))
    if vendor is not None:
        parts.append(_section("vendor", lambda: [repr(vendor())]))
    return "\n".join(["", "=== stall report " + time.strftime("%H:%M:%S"), *parts])


def _section(title: str, lines: Callable[[], list[str]]) -> str:
    try:
        body = lines()
    except Exception as error:  # Redis down, a key of another type: say so and go on
        body = [f"(could not read: {type(error).__name__}: {error})"]
    return "\n".join([f"--- {title}", *("  " + line for line in body)])


def _workers(workers: Iterable[Process]) -> list[str]:
    lines: list[str] = []
    for worker in workers:
        code = worker.process.poll()
        alive = "alive" if code is None else f"EXITED with {code}"
        lines.append(f"pid {worker.process.pid} {alive}, log {worker.log_path}:")
        text = worker.log_path.read_text(errors="replace") if worker.log_path.exists() else ""
        lines += ["  | " + line[:400] for line in text.splitlines()[-LOG_LINES:]]
    return lines or ["(none started)"]


def _redis(client: redis.Redis) -> list[str]:
    info = client.info()
    return [f"up {info.get('uptime_in_seconds')} s, {info.get('connected_clients')} clients, "
            f"aof {info.get('aof_enabled')}, role {info.get('role')}"]  # fmt: skip


def _queues(client: redis.Redis) -> list[str]:
    from workers.targets import TARGETS

    lengths = [f"{name} {client.llen(keys.celery_queue(name))}" for name in TARGETS]
    unacked = client.hlen("unacked")  # kombu's delivered-but-unacknowledged messages
    return [", ".join(lengths), f"kombu unacked {unacked}, unacked_index "
            f"{client.zcard('unacked_index')}"]  # fmt: skip


def _job(client: redis.Redis, job_id: str) -> list[str]:
    now = time.time()
    job = {as_text(k): as_text(v) for k, v in client.hgetall(keys.job(job_id)).items()}
    counters = ("units_total", "units_done", "records_delivered", "records_dead", "retries",
                "crashes", "cancelled")  # fmt: skip
    lines = [" ".join(f"{name}={job.get(name, '-')}" for name in counters)]
    unit_ids = [as_text(u) for u in client.lrange(keys.job_units(job_id), 0, -1)]
    for unit_id in unit_ids[:UNITS_SHOWN]:
        lines.append(_unit_line(client, unit_id, now))
    if len(unit_ids) > UNITS_SHOWN:
        lines.append(f"... and {len(unit_ids) - UNITS_SHOWN} more units")
    return lines


def _unit_line(client: redis.Redis, unit_id: str, now: float) -> str:
    unit = {as_text(k): as_text(v) for k, v in client.hgetall(keys.unit(unit_id)).items()}
    shown = [f"{name}={unit[name][:120]}" for name in UNIT_FIELDS if unit.get(name)]
    due = unit.get("next_attempt_at")
    if due:
        shown.append(f"next_attempt in {float(due) - now:+.1f} s")
    ttl = client.pttl(keys.lease(unit_id))
    shown.append(f"lease {ttl / 1000:.1f} s left" if ttl > 0 else "no lease")
    watch = client.zscore(keys.WATCH, unit_id)
    if watch is not None:
        shown.append(f"reaper looks in {watch / 1000 - now:+.1f} s")
    return f"{unit_id}: " + ", ".join(shown)


def _targets(client: redis.Redis) -> list[str]:
    from workers.targets import TARGETS

    lines = []
    for name in TARGETS:
        pause = {as_text(k): as_text(v) for k, v in client.hgetall(keys.breaker(name)).items()}
        if pause:
            lines.append(f"{name} PAUSED: {pause}")
        live = client.zrangebyscore(keys.consumers(name), time.time() * 1000, "+inf")
        if live:
            lines.append(f"{name} consumers: {', '.join(as_text(m) for m in live)}")
    stopping = [as_text(k) for k in client.scan_iter(keys.shutdown("*"))]
    lines.append(f"shutdown signals: {stopping or 'none'}")
    return lines
