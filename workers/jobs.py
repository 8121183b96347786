"""Jobs and their units in Redis: create, stage, read back, and the derived job state.

A job's state is worked out from its counters (units done, records delivered
and dead), never stored twice; only the unit transitions in leases.py write them.
"""

from __future__ import annotations

import enum
import json
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
import zstandard

from importq import jsoncodec
from workers import keys


class JobState(enum.StrEnum):
    STAGING = "staging"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PARTIAL = "partial"
    CANCELLED = "cancelled"


class UnitState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SPLIT = "split"
    CANCELLED = "cancelled"


# The states a unit never leaves, listed here only: the claim script turns a message for
# such a unit away, and the runner finishes a unit into one of them with `terminal=True`.
# The Lua scripts in leases.py get this tuple as a generated table, never typed again.
TERMINAL_UNIT_STATES = (
    UnitState.SUCCEEDED,
    UnitState.FAILED,
    UnitState.SPLIT,
    UnitState.CANCELLED,
)


def encode_records(records: list[dict[str, Any]]) -> bytes:
    """The claim-check payload: compact JSON, zstd-compressed (records repeat field names)."""
    return compress_payload(jsoncodec.dumps(records))


# zstd level 1: about 5x the speed of zlib level 1 for a payload a third of its size (the
# producer's staging measured it). One compressor per thread: a ZstdCompressor is not
# thread-safe, and serve stages from several threads.
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_codecs = threading.local()


def compress_payload(array: bytes) -> bytes:
    """A unit's records as a JSON array, compressed for staging (a zstd frame)."""
    compressor = getattr(_codecs, "compressor", None)
    if compressor is None:
        compressor = _codecs.compressor = zstandard.ZstdCompressor(level=1)
    return compressor.compress(array)


def decode_records(payload: bytes) -> list[dict[str, Any]]:
    """A staged payload's records; ValueError if it cannot be read."""
    records: list[dict[str, Any]] = jsoncodec.loads(decompress_payload(payload))
    return records


def decompress_payload(payload: bytes) -> bytes:
    """A staged payload's JSON array. A zlib payload is one an earlier release staged (its
    workers and the new ones meet during a rolling upgrade). ValueError if unreadable."""
    try:
        if payload[:4] == _ZSTD_MAGIC:
            return bytes(zstandard.ZstdDecompressor().decompress(payload))
        return zlib.decompress(payload)
    except (zstandard.ZstdError, zlib.error) as error:
        raise ValueError(f"the staged payload cannot be decompressed: {error}") from None


def new_job_id() -> str:
    # Time-ordered prefix so ids sort by creation in listings; random tail for uniqueness.
    return f"{int(time.time()):x}{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class JobView:
    id: str
    target: str
    params: dict[str, Any]
    created_at: float
    units_total: int
    units_done: int
    records_total: int
    records_delivered: int
    records_dead: int
    units_failed: int
    retries: int
    crashes: int
    staging: bool
    started: bool
    cancelled: bool
    cancel_reason: str
    started_at: float = 0.0  # epoch seconds: the first claim of a unit (0: not yet)
    finished_at: float = 0.0  # epoch seconds: the last unit ended (0: not yet)

    @property
    def state(self) -> JobState:
        if self.staging:
            return JobState.STAGING
        if self.cancelled:
            return JobState.CANCELLED
        if self.units_done < self.units_total:
            return JobState.RUNNING if self.started else JobState.QUEUED
        if self.records_dead == 0 and self.units_failed == 0:
            return JobState.SUCCEEDED
        return JobState.FAILED if self.records_delivered == 0 else JobState.PARTIAL

    @property
    def finished(self) -> bool:
        return self.state in (
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.PARTIAL,
            JobState.CANCELLED,
        )

    def as_dict(self) -> dict[str, Any]:
        flags = ("staging", "started", "cancelled")
        data = {k: v for k, v in self.__dict__.items() if k not in flags}
        data["state"] = self.state.value
        data["duration_seconds"] = self.duration()
        data["records_per_second"] = self.records_per_second()
        return data

    def duration(self, now: float | None = None) -> float | None:
        """Seconds from the first unit's start to the end (or to now while it runs)."""
        if not self.started_at:
            return None
        end = self.finished_at or (None if self.finished else now or time.time())
        return None if end is None else max(0.0, end - self.started_at)

    def records_per_second(self, now: float | None = None) -> float | None:
        """Records delivered or dead-lettered per second of the job's duration."""
        seconds = self.duration(now)
        if not seconds:
            return None
        return round((self.records_delivered + self.records_dead) / seconds, 1)


def as_text(value: Any) -> str:
    """A Redis reply as str (the clients are binary: payloads are compressed bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


class JobStore:
    """Read and write jobs; unit transitions under a lease live in leases.Leases."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def create(self, target: str, params: dict[str, Any]) -> str:
        job_id = new_job_id()
        # Listed as staging until opened or discarded: a producer that dies meanwhile leaves
        # a job nobody will open, which the reaper discards (forget_abandoned_staging).
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(keys.STAGING, {job_id: time.time()})
        pipe.hset(
            keys.job(job_id),
            mapping={
                "id": job_id,
                "target": target,
                "params": json.dumps(params),
                "created_at": time.time(),
                "staging": 1,
                "units_total": 0,
                "units_done": 0,
                "records_total": 0,
                "records_delivered": 0,
                "records_dead": 0,
            },
        )
        pipe.execute()
        return job_id

    def stage_unit(
        self,
        job_id: str,
        target: str,
        number: int,
        records: list[dict[str, Any]],
        rescue_ms: int | None = None,
        *,
        counted: bool = True,
    ) -> str:
        """Store one unit's records under the job; nothing is published yet.

        With `rescue_ms`, the reaper watches it at once (a unit released as soon as it is
        staged); publish watches the others when it releases them (workers.dispatch.release).
        `counted=False`: the job's totals were set beforehand (see `expect`).
        """
        payload = encode_records(records)
        return self.stage_payload(job_id, target, number, len(records), payload, rescue_ms,
                                  counted=counted)  # fmt: skip

    def stage_payload(
        self,
        job_id: str,
        target: str,
        number: int,
        count: int,
        payload: bytes,
        rescue_ms: int | None = None,
        *,
        counted: bool = True,
    ) -> str:
        """`stage_unit` of a payload already encoded (`encode_records`, or a file's raw
        lines made into one JSON array and compressed: producers/rawlines.py)."""
        unit_id = f"{job_id}:{number}"
        pipe = self.redis.pipeline(transaction=True)
        if rescue_ms is not None:
            pipe.zadd(keys.WATCH, {unit_id: int(time.time() * 1000) + rescue_ms})
        pipe.hset(keys.unit(unit_id), mapping=unit_fields(job_id, target, count))  # type: ignore[arg-type]
        pipe.set(keys.payload(unit_id), payload)
        pipe.rpush(keys.job_units(job_id), unit_id)
        if counted:
            pipe.hincrby(keys.job(job_id), "units_total", 1)
            pipe.hincrby(keys.job(job_id), "records_total", count)
        pipe.execute()
        return unit_id

    def expect(self, job_id: str, units: int, records: int) -> None:
        """Open a job whose input passed before its units are staged: they are released one
        by one as they are staged. Its totals are known, so a job whose first units finish
        before the last is staged is not taken for finished; it stays on the staging list
        (marked `releasing`) until `released`, so the reaper notices a producer that died."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(keys.job(job_id), mapping={"units_total": units, "records_total": records,
                                             "releasing": 1})  # fmt: skip
        pipe.hdel(keys.job(job_id), "staging")
        pipe.zadd(keys.JOBS, {job_id: time.time()})
        pipe.execute()

    def released(self, job_id: str) -> None:
        """Every unit of an `expect`ed job is staged and sent."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(keys.job(job_id), "releasing")
        pipe.zrem(keys.STAGING, job_id)
        pipe.execute()

    def stop_releasing(self, job_id: str, reason: str) -> None:
        """An `expect`ed job whose producer failed halfway: cancelled, and counting only the
        units it staged, so it ends once those have (the ones not yet run are cancelled)."""
        unit_ids = self.unit_ids(job_id)
        pipe = self.redis.pipeline(transaction=False)
        for unit_id in unit_ids:
            pipe.hget(keys.unit(unit_id), "records")
        records = sum(int(count or 0) for count in pipe.execute())
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(keys.job(job_id), mapping={"units_total": len(unit_ids), "records_total": records,
                                             "cancelled": 1, "cancel_reason": reason})  # fmt: skip
        pipe.hdel(keys.job(job_id), "releasing")
        pipe.zrem(keys.STAGING, job_id)
        pipe.execute()

    def watch(self, unit_ids: list[str], rescue_seconds: float) -> None:
        """Let the reaper send these units again if they stay unclaimed that long."""
        if unit_ids:
            deadline = int((time.time() + rescue_seconds) * 1000)
            self.redis.zadd(keys.WATCH, dict.fromkeys(unit_ids, deadline))

    def open(
        self, job_id: str, watched: list[str] | None = None, rescue_seconds: float = 0.0
    ) -> None:
        """The job is fully staged: list it; its units may now be published. `watched`:
        units the reaper watches from the same step (see `watch`)."""
        pipe = self.redis.pipeline(transaction=True)
        if watched:
            deadline = int((time.time() + rescue_seconds) * 1000)
            pipe.zadd(keys.WATCH, dict.fromkeys(watched, deadline))
        pipe.hdel(keys.job(job_id), "staging")
        pipe.zrem(keys.STAGING, job_id)
        pipe.zadd(keys.JOBS, {job_id: time.time()})
        pipe.execute()

    def confirm_replicated(self, job_id: str, wait_ms: int) -> bool:
        """Wait up to `wait_ms` for a replica to hold everything written so far (the staged
        job included); False if none confirmed. WAIT covers the writes of its own connection
        up to the replication offset of its last write, so a harmless one goes first
        (re-deleting the `staging` mark that `open` deleted): the offset is then past every
        write of the job, whichever connection sent it."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hdel(keys.job(job_id), "staging")
        pipe.wait(1, wait_ms)
        _, confirmed = pipe.execute()
        return int(confirmed) >= 1

    def discard(self, job_id: str) -> None:
        """Remove a job that was refused while staging."""
        unit_ids = self.unit_ids(job_id)
        doomed = [keys.job(job_id), keys.job_units(job_id)]
        for unit_id in unit_ids:
            doomed += [keys.unit(unit_id), keys.payload(unit_id)]
        for start in range(0, len(doomed), 500):
            self.redis.delete(*doomed[start : start + 500])
        self.redis.zrem(keys.STAGING, job_id)
        self.redis.zrem(keys.JOBS, job_id)  # listed when it was refused after its check

    def forget_abandoned_staging(self, older_than_seconds: float) -> list[str]:
        """Discard jobs whose producer died while staging them (never opened, long ago)."""
        cutoff = time.time() - older_than_seconds
        abandoned = [as_text(j) for j in self.redis.zrangebyscore(keys.STAGING, "-inf", cutoff)]
        for job_id in abandoned:
            if self.redis.hexists(keys.job(job_id), "releasing"):  # some units may have run
                self.stop_releasing(job_id, "its producer stopped while publishing it")
            else:
                self.discard(job_id)
        return abandoned

    def expire(self, job_id: str, seconds: int) -> None:
        """Let a finished job's state go after `seconds` (its dead letters stay until replayed)."""
        pipe = self.redis.pipeline(transaction=False)
        for unit_id in self.unit_ids(job_id):
            pipe.expire(keys.unit(unit_id), seconds)
            pipe.expire(keys.unreadable_payload(unit_id), seconds)
        pipe.expire(keys.job_units(job_id), seconds)
        pipe.expire(keys.job(job_id), seconds)
        pipe.execute()

    def set_aside_payload(self, unit_id: str) -> str:
        """Move a unit's unreadable payload out of the way of its failing finish (which
        deletes the payload): kept with the job for a look, or for a newer release."""
        aside = keys.unreadable_payload(unit_id)
        raw = self.redis.get(keys.payload(unit_id))  # GET and SET: COPY needs Redis 6.2
        if raw is not None:
            self.redis.set(aside, raw)
        return aside

    def forget_expired(self, older_than_seconds: int) -> int:
        """Drop listing entries of jobs whose state has expired."""
        cutoff = time.time() - older_than_seconds
        return int(self.redis.zremrangebyscore(keys.JOBS, "-inf", cutoff))

    def cancel(self, job_id: str, reason: str) -> None:
        self.redis.hset(keys.job(job_id), mapping={"cancelled": 1, "cancel_reason": reason})

    def get(self, job_id: str) -> JobView | None:
        return view(job_id, _decode(self.redis.hgetall(keys.job(job_id))))  # type: ignore[arg-type]

    def many(self, job_ids: list[str]) -> list[JobView]:
        """The jobs of `job_ids` that still exist, in that order, read in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(keys.job(job_id))
        views = (view(j, _decode(raw)) for j, raw in zip(job_ids, pipe.execute(), strict=True))
        return [v for v in views if v is not None]

    def unit_ids(self, job_id: str) -> list[str]:
        return [as_text(u) for u in self.redis.lrange(keys.job_units(job_id), 0, -1)]

    def unit(self, unit_id: str) -> dict[str, str]:
        return _decode(self.redis.hgetall(keys.unit(unit_id)))  # type: ignore[arg-type]

    def units(self, job_id: str) -> Iterator[tuple[str, dict[str, str]]]:
        for unit_id in self.unit_ids(job_id):
            yield unit_id, self.unit(unit_id)

    def first_error(self, job_id: str) -> str | None:
        """The first unit error of a job (why it failed, for holds and pipelines), or None."""
        return next((f["last_error"] for _, f in self.units(job_id) if f.get("last_error")), None)

    def running_progress(self, job_id: str) -> float:
        """Records' worth of work done inside units still running (their `percent`)."""
        pipe = self.redis.pipeline(transaction=False)
        for unit_id in self.unit_ids(job_id):
            pipe.hmget(keys.unit(unit_id), ["state", "records", "remote.percent"])
        done = 0.0
        for state, records, percent in pipe.execute():
            if state == b"running" and records and percent:
                done += int(records) * min(float(percent), 100.0) / 100
        return done

    def payload(self, unit_id: str) -> list[dict[str, Any]] | None:
        raw = self.redis.get(keys.payload(unit_id))
        return decode_records(raw) if isinstance(raw, bytes) else None

    def recent(
        self,
        limit: int = 20,
        *,
        since: float | None = None,
        target: str | None = None,
        states: set[str] | None = None,
    ) -> list[JobView]:
        """The newest `limit` listed jobs created since `since`, of `target`, in `states`."""
        ids = [as_text(i) for i in self.redis.zrevrangebyscore(keys.JOBS, "+inf", since or "-inf")]
        found: list[JobView] = []
        for start in range(0, len(ids), 200):
            for view in self.many(ids[start : start + 200]):
                if (target and view.target != target) or (states and view.state not in states):
                    continue
                found.append(view)
                if len(found) >= limit:
                    return found
        return found


def view(job_id: str, raw: dict[str, str]) -> JobView | None:
    """A job from its hash read as text (None when it is gone); timings are stored in ms."""
    if not raw:
        return None
    return JobView(
        id=job_id,
        target=raw["target"],
        params=json.loads(raw.get("params", "{}")),
        created_at=float(raw.get("created_at", 0)),
        units_total=int(raw.get("units_total", 0)),
        units_done=int(raw.get("units_done", 0)),
        records_total=int(raw.get("records_total", 0)),
        records_delivered=int(raw.get("records_delivered", 0)),
        records_dead=int(raw.get("records_dead", 0)),
        units_failed=int(raw.get("units_failed", 0)),
        retries=int(raw.get("retries", 0)),
        crashes=int(raw.get("crashes", 0)),
        staging="staging" in raw,
        started="started_at" in raw,
        cancelled="cancelled" in raw,
        cancel_reason=raw.get("cancel_reason", ""),
        started_at=float(raw.get("started_at") or 0) / 1000,
        finished_at=float(raw.get("finished_at") or 0) / 1000,
    )


def unit_fields(job_id: str, target: str, record_count: int, parent: str = "") -> dict[str, str]:
    """The hash of a freshly created unit."""
    return {
        "job": job_id,
        "target": target,
        "state": UnitState.QUEUED.value,
        "records": str(record_count),
        "attempts": "0",
        "crashes": "0",
        "epoch": "0",
        "parent": parent,
    }
