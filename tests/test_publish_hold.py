"""A held job is staged and listed but neither sent nor watched until it is released."""

from __future__ import annotations

from typing import Any

import redis

from producers.publish import locate, publish
from tests.helpers import sample_records
from workers import keys
from workers.dispatch import release
from workers.jobs import JobStore


def test_held_units_are_sent_and_watched_only_on_release(redis_client: redis.Redis) -> None:
    from workers import app

    sent: list[tuple[str, str, Any]] = []
    store = JobStore(redis_client)
    job_id = publish("sourcing_data", locate(sample_records(5_000)), {}, settings=app.settings(),
                     store=store, publish_unit=lambda *m: sent.append(m), hold=True)  # fmt: skip
    units = store.unit_ids(job_id)
    assert len(units) == 2 and sent == []
    assert [redis_client.zscore(keys.WATCH, u) for u in units] == [None, None]  # no rescue yet
    release(store, job_id, lambda *m: sent.append(m), rescue_seconds=600)
    assert [unit for unit, _, _ in sent] == units
    assert all(redis_client.zscore(keys.WATCH, u) for u in units)
