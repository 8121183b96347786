"""Dead letters: records a target refused for good, each with the target's reason.

They are written by the unit's fenced finish (leases.py) so none is lost or
written twice; here they are listed, shown and replayed as a new job. A failed
unit without records (a Blueshift bare trigger) leaves one letter whose record is
null, so its job is listed and replayed like any other.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from workers import keys
from workers.jobs import JobStore, as_text


@dataclass(frozen=True)
class DeadLetterSummary:
    job_id: str
    count: int
    reasons: list[tuple[str, int]]  # the most common reasons with their counts
    target: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    records: int = 0  # letters holding a record; the others are failed units without one


class DeadLetters:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def jobs(self, limit: int = 50) -> list[DeadLetterSummary]:
        ids = [as_text(i) for i in self.redis.zrevrange(keys.DLQ_INDEX, 0, limit - 1)]
        return [self.summary(job_id) for job_id in ids]

    def summary(self, job_id: str) -> DeadLetterSummary:
        reasons: Counter[str] = Counter()
        count = records = 0
        target = ""
        for entry in self.entries(job_id):
            count += 1
            records += entry.get("record") is not None
            target = target or entry.get("target", "")
            reasons[entry["reason"][:200]] += 1
        job = JobStore(self.redis).get(job_id)  # its params say what a replay would run
        params = job.params if job else {}
        return DeadLetterSummary(job_id, count, reasons.most_common(3), target, params, records)

    def entries(self, job_id: str, limit: int | None = None) -> Iterator[dict[str, Any]]:
        key = keys.dead_letters(job_id)
        total = self.redis.llen(key) if limit is None else limit
        for start in range(0, total, 1000):  # pages, so a large store is never loaded whole
            for raw in self.redis.lrange(key, start, min(start + 999, total - 1)):
                entry: dict[str, Any] = json.loads(raw)
                yield entry

    def page(self, job_id: str, offset: int, limit: int) -> list[dict[str, Any]]:
        """Dead letters `offset` to `offset + limit - 1` of a job, oldest first."""
        raw = self.redis.lrange(keys.dead_letters(job_id), offset, offset + limit - 1)
        return [json.loads(entry) for entry in raw]

    def records(self, job_id: str) -> Iterator[dict[str, Any]]:
        """The refused records (a failed unit without records left a letter without one)."""
        for entry in self.entries(job_id):
            record: dict[str, Any] | None = entry.get("record")
            if record is not None:
                yield record

    def count(self, job_id: str) -> int:
        return int(self.redis.llen(keys.dead_letters(job_id)))

    def drop(self, job_id: str, count: int, ttl_seconds: int = 14 * 86400) -> None:
        """Remove the first `count` dead letters of a job (after they were replayed)."""
        key = keys.dead_letters(job_id)
        self.redis.ltrim(key, count, -1)
        if not self.redis.llen(key):
            self.redis.zrem(keys.DLQ_INDEX, job_id)
            JobStore(self.redis).expire(job_id, ttl_seconds)
