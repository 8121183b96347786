"""The Python producer API: validate a stream of records, stage its units, publish them.

Records are validated and cut into units as they stream in; each unit is
staged in Redis under the job as soon as it is full, so memory stays flat.
Nothing is published until the whole input passed: a bad record discards the
staged job and raises InputError naming where it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from importq import sentinel
from importq.errors import ConfigError, InputError, RetryableError
from importq.settings import Settings
from producers.validate import validate
from workers import app as worker_app
from workers import ordering, targets
from workers.dispatch import Publish, release
from workers.jobs import JobStore
from workers.targets.base import PREFLIGHT_FACTS, Located, Record, Target, refuse_unknown_params


def locate(records: Iterable[Record], source: str = "record") -> Iterable[Located]:
    """Number records from a Python iterable so errors can say which one failed."""
    for number, record in enumerate(records, start=1):
        yield record, f"{source} {number}"


def publish(
    target: str,
    records: Iterable[Located] | None,
    params: dict[str, Any],
    *,
    settings: Settings,
    store: JobStore,
    publish_unit: Publish,
    on_unit: Callable[[int, int], None] | None = None,
    check_target: bool = False,
    notify: Callable[[str], None] = lambda message: None,
    hold: bool = False,
    first_in_line: bool = False,
) -> str:
    """Create a job from located records; returns the job id once every unit is enqueued.

    `records` may be None for targets whose jobs need none (`Target.records_optional`).
    With `check_target`, a harmless call to the target first refuses bad credentials
    or an unknown id before anything is staged. With `hold`, the job is staged and
    listed but its units are not sent until `release(job_id)` (pipelines use this). With
    `first_in_line` the job goes ahead of the others on its order key and lifts the key's
    hold (the replay of the job that holds it).
    """
    declared = targets.get(target)
    sink = declared.sink
    refuse_unknown_params(declared, params, settings)
    params = sink.check_params(dict(params), settings)
    sink.check_job(params, settings, has_records=records is not None)
    facts = preflight(declared, settings, params, notify) if check_target else None
    wait_for_room(store, target, max_queued_units(settings, target), notify)
    job_id = store.create(target, params)
    plan_params = {**params, PREFLIGHT_FACTS: facts} if facts else params
    try:
        unit_ids = _stage(declared, records, plan_params, job_id, settings, store, on_unit)
    except BaseException:
        store.discard(job_id)
        raise
    if not hold:  # watched before it is listed: a producer dying now strands nothing
        store.watch(unit_ids, settings.rescue_seconds)
    store.open(job_id)
    ordering.enqueue(store.redis, target, sink.order_key(params), job_id, first=first_in_line)
    # With a Sentinel group: a replica holds the job before the producer is told it is
    # published, so a failover right after cannot take the records with the old primary.
    wait_ms = sentinel.replica_wait_ms(settings, store.redis)
    if wait_ms and not store.confirm_replicated(job_id, wait_ms):
        notify(f"no replica confirmed job {job_id} within {wait_ms} ms "
               f"({sentinel.REPLICA_WAIT}): a failover now could lose it; `importq doctor` "
               "shows the replicas")  # fmt: skip
    if not hold:
        release(store, job_id, publish_unit, settings.rescue_seconds)
    return job_id


def _stage(
    declared: Target[Any, Any],
    records: Iterable[Located] | None,
    params: dict[str, Any],
    job_id: str,
    settings: Settings,
    store: JobStore,
    on_unit: Callable[[int, int], None] | None,
) -> list[str]:
    """Validate, plan and stage every unit; nothing is sent to a queue here."""
    if records is None:
        if not declared.records_optional:
            raise InputError(f"{declared.name} needs records: give a file or an iterable")
        units: Iterable[list[Record]] = [[]]
    else:
        located = validate(declared.name, records)
        units = declared.sink.plan(located, declared.limits(settings), params)
    unit_ids: list[str] = []
    for number, unit_records in enumerate(units):
        unit_ids.append(store.stage_unit(job_id, declared.name, number, unit_records))
        if on_unit:
            on_unit(len(unit_ids), len(unit_records))
    if not unit_ids:  # validate() refuses empty input; this guards custom planners
        raise InputError("no records in input: nothing to publish")
    return unit_ids


def max_queued_units(settings: Settings, target: str) -> int:
    """Backpressure: a new job waits while its queue holds this many units (0: never)."""
    overall = settings.integer("IMPORTQ_MAX_QUEUED_UNITS", 0)
    return settings.integer(f"IMPORTQ_MAX_QUEUED_UNITS_{target.upper()}", overall)


def wait_for_room(
    store: JobStore, target: str, limit: int, notify: Callable[[str], None], poll: float = 0.5
) -> None:
    """Hold the producer while the target's queue is full, so a flood cannot fill Redis."""
    if limit <= 0:
        return
    next_notice = 0.0
    while (queued := int(store.redis.llen(target))) >= limit:
        if time.monotonic() >= next_notice:
            notify(f"waiting: the {target} queue holds {queued} units (limit {limit}); "
                   "the job is published when workers have made room")  # fmt: skip
            next_notice = time.monotonic() + 10
        time.sleep(poll)


def preflight(
    declared: Target[Any, Any],
    settings: Settings,
    params: dict[str, Any],
    notify: Callable[[str], None],
) -> dict[str, Any] | None:
    """Ask the target whether the credentials and ids work; raise if they do not.

    Returns what the target said that the plan can check records against, if anything.
    """
    try:
        client = declared.client(settings)
    except ConfigError as error:  # producers need not hold the workers' credentials
        notify(f"{declared.name} not checked before publishing: {error}")
        return None
    try:
        return declared.sink.preflight(client, params)
    except RetryableError as error:  # a target that is down now is what the queue absorbs
        notify(f"{declared.name} not reachable now ({error}); the workers will retry")
        return None
    finally:
        client.close()


def publish_records(
    target: str, records: Iterable[Record], params: dict[str, Any] | None = None
) -> str:
    """Publish an iterable of dicts with the configured Redis (the usual producer call)."""
    return publish(
        target,
        locate(records),
        params or {},
        settings=worker_app.settings(),
        store=JobStore(worker_app.redis_client()),
        publish_unit=worker_app.publish_unit,
    )
