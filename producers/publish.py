"""The Python producer API: validate a stream of records, stage its units, publish them.

A bad record enqueues nothing: InputError names where it was, and no unit has been
sent. Memory stays flat: records stream through, a unit at a time. How the two hold:

- Input that can be read twice (a file given to `importq publish`, a list): a first
  pass validates and plans every record and keeps nothing; then a second pass stages
  each unit and releases it at once, so workers start while the producer still works.
  A file that changes between the passes is refused (RecordFile), and one that changes
  during the second cancels the job (the units sent by then still run). A plain JSON
  Lines file is not parsed twice: the second pass stages each unit's raw lines as the
  first pass found them (producers/rawlines.py).
- A one-pass iterable (a generator given to `publish_records`): each unit is staged as
  soon as it is full, and released once the whole input passed. Redis holds the staged
  units: a spool in a temporary file would only write the same bytes once more.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from importq import sentinel
from importq.errors import ConfigError, InputError, QueueFull, RetryableError
from importq.settings import Settings
from producers import firstpass, rawlines
from producers.rawlines import Span
from producers.readers import RecordFile
from producers.validate import validate
from workers import app as worker_app
from workers import ordering, targets
from workers.dispatch import Publish, send
from workers.jobs import JobStore, compress_payload, encode_records
from workers.targets.base import (
    PREFLIGHT_FACTS,
    Batches,
    Located,
    Record,
    Target,
    refuse_unknown_params,
)


def locate(records: Iterable[Record], source: str = "record") -> Iterable[Located]:
    """Number records from a Python iterable so errors can say which one failed. A list
    (or tuple) stays readable twice, so publish checks it all and then sends each unit
    as it is staged; other iterables are read once."""
    if isinstance(records, list | tuple):  # sliceable (a deque is a Sequence but is not)
        return _Numbered(records, source)
    return _numbered(records, source)


def _numbered(records: Iterable[Record], source: str) -> Iterator[Located]:
    for number, record in enumerate(records, start=1):
        yield record, f"{source} {number}"


@dataclass(frozen=True)
class _Numbered:
    """A sequence's records, numbered afresh each time they are read."""

    records: Sequence[Record]
    source: str

    def __iter__(self) -> Iterator[Located]:
        return _numbered(self.records, self.source)


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
    wait_when_full: bool = True,
) -> str:
    """Create a job from located records; returns the job id once every unit is enqueued.

    `records` may be None for targets whose jobs need none (`Target.records_optional`).
    With `check_target`, a harmless call to the target first refuses bad credentials
    or an unknown id before anything is staged. With `hold`, the job is staged and
    listed but its units are not sent until `release(job_id)` (pipelines use this). With
    `first_in_line` the job goes ahead of the others on its order key and lifts the key's
    hold (the replay of the job that holds it). A full queue (IMPORTQ_MAX_QUEUED_UNITS) holds
    the producer until there is room; without `wait_when_full` it raises QueueFull instead.
    """
    declared = targets.get(target)
    sink = declared.sink
    refuse_unknown_params(declared, params, settings)
    params = sink.check_params(dict(params), settings)
    sink.check_job(params, settings, has_records=records is not None)
    facts = preflight(declared, settings, params, notify) if check_target else None
    wait_for_room(store, target, max_queued_units(settings, target), notify, wait=wait_when_full)
    job_id = store.create(target, params)
    plan_params = {**params, PREFLIGHT_FACTS: facts} if facts else params
    order_key = sink.order_key(params)
    if records is not None and not hold and not isinstance(records, Iterator):
        given = _Input(declared, records, plan_params, settings)
        units = _check_all(given, job_id, store)
        ordering.enqueue(store.redis, target, order_key, job_id, first=first_in_line)
        _release_as_staged(given, job_id, units, store, publish_unit, on_unit)
        return job_id
    try:
        with fewer_gc_passes():
            unit_ids = _stage(declared, records, plan_params, job_id, settings, store, on_unit)
    except BaseException:
        store.discard(job_id)
        raise
    # Watched as it is listed, in one step: a producer dying now strands nothing.
    store.open(job_id, None if hold else unit_ids, settings.rescue_seconds)
    ordering.enqueue(store.redis, target, order_key, job_id, first=first_in_line)
    # With a Sentinel group: a replica holds the job before the producer is told it is
    # published, so a failover right after cannot take the records with the old primary.
    wait_ms = sentinel.replica_wait_ms(settings, store.redis)
    if wait_ms and not store.confirm_replicated(job_id, wait_ms):
        notify(f"no replica confirmed job {job_id} within {wait_ms} ms "
               f"({sentinel.REPLICA_WAIT}): a failover now could lose it; `importq doctor` "
               "shows the replicas")  # fmt: skip
    if not hold:  # watched above: `release` would read back what is known here
        send(unit_ids, target, publish_unit)
    return job_id


@dataclass
class _Input:
    """Input that can be read twice, with what planning it takes."""

    declared: Target[Any, Any]
    records: Iterable[Located]
    params: dict[str, Any]
    settings: Settings
    spans: list[Span] | None = None
    """Where the first pass found each unit's lines (a plain JSON Lines file, cut by count
    and bytes)."""
    counts: list[int] | None = None
    """Each unit's record count, as the first pass cut a list by count and bytes."""
    batches: Batches | None = None
    """The limits it was cut by."""

    def _plan(self, records: Iterable[Located]) -> Iterator[list[Record]]:
        located = validate(self.declared.name, records)
        return iter(self.declared.sink.plan(located, self.declared.limits(self.settings),
                                            self.params))  # fmt: skip

    def first_pass(self) -> Iterator[int]:
        """Validate every record and plan the units: each unit's record count. A plain JSON
        Lines file whose target cuts units by count and bytes is read in blocks, keeping no
        record, and where each unit's lines end is noted (producers/firstpass.py)."""
        batches = self.declared.sink.batches(self.declared.limits(self.settings), self.params)
        if batches and isinstance(self.records, RecordFile) and self.records.plain_json_lines():
            self.records.unchanged()
            self.spans = []
            for span in firstpass.spans(self.records.path, self.declared.name, batches):
                self.spans.append(span)
                yield span.count
            return
        if batches and isinstance(self.records, _Numbered):
            self.batches, self.counts = batches, []
            numbered = self.records
            for count in firstpass.counts(numbered.records, self.declared.name, batches,
                                          numbered.source):  # fmt: skip
                self.counts.append(count)
                yield count
            return
        for unit in self._plan(self.records):
            yield len(unit)

    def second_pass(self) -> Iterator[tuple[int, bytes]]:
        """Each unit's record count and staged payload: the raw lines the first pass noted,
        a list's slices it cut, else the records read and planned again."""
        if self.spans is not None and isinstance(self.records, RecordFile):
            return rawlines.payloads(self.records.path, self.spans, self.records.unchanged)
        if self.counts is not None and self.batches and isinstance(self.records, _Numbered):
            numbered = self.records
            arrays = firstpass.units(numbered.records, self.counts, self.declared.name,
                                     numbered.source, self.batches)  # fmt: skip
            return ((count, compress_payload(array)) for count, array in arrays)
        return ((len(unit), encode_records(unit)) for unit in self._plan(self.records))


def _check_all(given: _Input, job_id: str, store: JobStore) -> int:
    """The first of two passes: validate and plan every record, keep nothing; open the job
    with its totals. The number of units; a refused record discards the job."""
    units = count = 0
    try:
        with fewer_gc_passes():
            for records in given.first_pass():
                units, count = units + 1, count + records
        if not units:  # validate() refuses empty input; this guards custom planners
            raise InputError("no records in input: nothing to publish")
    except BaseException:
        store.discard(job_id)
        raise
    store.expect(job_id, units, count)
    return units


def _release_as_staged(
    given: _Input,
    job_id: str,
    units: int,
    store: JobStore,
    publish_unit: Publish,
    on_unit: Callable[[int, int], None] | None,
) -> None:
    """The second pass: stage each unit and send it at once (the reaper watches it from
    then on). Input that plans differently now than in the first pass changed meanwhile:
    the job is cancelled with the units sent so far (those that ran keep their outcome)."""
    rescue_ms = int(given.settings.rescue_seconds * 1000)
    target = given.declared.name
    sent = 0
    try:
        with fewer_gc_passes():
            for count, payload in given.second_pass():
                if sent == units:
                    break
                unit_id = store.stage_payload(job_id, target, sent, count, payload, rescue_ms,
                                              counted=False)  # fmt: skip
                publish_unit(unit_id, target, None)
                sent += 1
                if on_unit:
                    on_unit(sent, count)
            else:
                if sent == units:
                    store.released(job_id)
                    return
        raise InputError(f"it now plans other units than the {units} checked")
    except BaseException as error:
        if not sent:  # nothing was sent: as if the first pass had refused the input
            store.discard(job_id)
            raise
        if isinstance(error, InputError):  # the first pass passed: the input changed since
            error = InputError(f"the input changed while it was published ({error}); job "
                               f"{job_id} is cancelled after {sent} units were sent")  # fmt: skip
            store.stop_releasing(job_id, str(error))
            raise error from None
        store.stop_releasing(job_id, f"publishing stopped after {sent} units were sent: {error}")
        raise


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


# Parsing allocates three or four dicts per record and keeps a unit's worth alive: with
# Python's default threshold (700) the cyclic collector runs every few hundred records and
# walks every live record each time it promotes them, which took about a third of a
# publish. Records hold no cycles (refcounting frees them); the collector still runs.
_GC_THRESHOLD = 50_000


_gc_lock = threading.Lock()
_gc_publishing = 0  # publishes under way in this process (threads may publish at once)
_gc_before: tuple[int, ...] = ()


@contextlib.contextmanager
def fewer_gc_passes() -> Iterator[None]:
    """Let the cyclic garbage collector run less often while records stream through; the
    last publish of the process to end puts the threshold back as it found it."""
    global _gc_publishing, _gc_before
    with _gc_lock:
        if not _gc_publishing:
            _gc_before = gc.get_threshold()
            gc.set_threshold(max(_gc_before[0], _GC_THRESHOLD), *_gc_before[1:])
        _gc_publishing += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_publishing -= 1
            if not _gc_publishing:
                gc.set_threshold(*_gc_before)


def max_queued_units(settings: Settings, target: str) -> int:
    """Backpressure: a new job waits while its queue holds this many units (0: never)."""
    overall = settings.integer("IMPORTQ_MAX_QUEUED_UNITS", 0)
    return settings.integer(f"IMPORTQ_MAX_QUEUED_UNITS_{target.upper()}", overall)


def wait_for_room(
    store: JobStore,
    target: str,
    limit: int,
    notify: Callable[[str], None],
    poll: float = 0.5,
    wait: bool = True,
) -> None:
    """Hold the producer while the target's queue is full, so a flood cannot fill Redis;
    without `wait`, raise QueueFull (the API's 429) rather than hold a request open."""
    if limit <= 0:
        return
    next_notice = 0.0
    while (queued := int(store.redis.llen(target))) >= limit:
        if not wait:
            raise QueueFull(f"the {target} queue holds {queued} units (limit {limit}, "
                            "IMPORTQ_MAX_QUEUED_UNITS): nothing was staged; publish again "
                            "once workers have made room")  # fmt: skip
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
