"""Prometheus metrics of importq, read from Redis so every worker on every machine counts.

The unit finish script (leases.py) adds to `importq:stats:<target>` in the same
atomic step that records the outcome, so the totals are exact; this module
turns them, and the queue depths, into metrics on each scrape.

    importq_records_delivered_total{target}      records the target accepted
    importq_records_dead_lettered_total{target}  records refused for good (in the dead-letter store)
    importq_units_total{target,state}            units ended: succeeded, failed, split, cancelled
    importq_retries_total{target}                units rescheduled after a retryable failure
    importq_queue_units{target}                  messages waiting in the target's queue
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from workers import keys
from workers.jobs import as_text


class ImportqCollector(Collector):
    def __init__(self, client: redis.Redis, targets: list[str]) -> None:
        self.redis = client
        self.targets = targets

    def collect(self) -> Iterator[Any]:
        delivered = CounterMetricFamily(
            "importq_records_delivered", "Records the target accepted", labels=["target"]
        )
        dead = CounterMetricFamily(
            "importq_records_dead_lettered",
            "Records the target refused for good (see `importq dlq list`)",
            labels=["target"],
        )
        units = CounterMetricFamily(
            "importq_units", "Units of work that ended, by state", labels=["target", "state"]
        )
        retries = CounterMetricFamily(
            "importq_retries", "Units rescheduled after a retryable failure", labels=["target"]
        )
        queued = GaugeMetricFamily(
            "importq_queue_units", "Messages waiting in the target's queue", labels=["target"]
        )
        for target in self.targets:
            stats = {as_text(k): int(v) for k, v in self.redis.hgetall(keys.stats(target)).items()}
            delivered.add_metric([target], stats.get("records_delivered", 0))
            dead.add_metric([target], stats.get("records_dead", 0))
            retries.add_metric([target], stats.get("retries", 0))
            for name, value in stats.items():
                if name.startswith("units_"):
                    units.add_metric([target, name[6:]], value)
            queued.add_metric([target], int(self.redis.llen(target)))
        yield from (delivered, dead, units, retries, queued)
