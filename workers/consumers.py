"""Which workers consume each target's queue: every worker says so itself, every few seconds.

A worker's main process renews, for each queue it consumes, its entry in

    importq:consumers:{target}   zset  worker id (node:pid) -> until (ms)

once when the worker is ready and then every IMPORTQ_REAPER_INTERVAL from a thread; a
worker that shuts down cleanly removes its entries, and one that was killed drops
out once its `until` passes (three beats). Readers (`importq queues`, `importq
doctor`, the no-worker word of `--wait`) need no broadcast and wait for no reply,
unlike Celery's `inspect active_queues`, which answers only within a timeout and
only for workers whose event loop is free.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import redis
import structlog

from workers import keys
from workers.jobs import as_text

log = structlog.get_logger("importq.worker")

MISSED_BEATS = 3  # a worker is gone once this many beats in a row did not come
SHORTEST_TTL = 5.0  # seconds: a loaded machine may delay a beat by a little


def ttl_for(interval: float) -> float:
    return max(MISSED_BEATS * interval, SHORTEST_TTL)


def beat(client: redis.Redis, worker_id: str, queues: Iterable[str], ttl: float) -> None:
    """Say that `worker_id` consumes `queues` for the next `ttl` seconds."""
    now = int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.zadd(keys.consumers(queue), {worker_id: now + int(ttl * 1000)})
        pipe.zremrangebyscore(keys.consumers(queue), "-inf", now)  # the killed ones
    pipe.execute()


def leave(client: redis.Redis, worker_id: str, queues: Iterable[str]) -> None:
    """The worker stops consuming: it is not counted from now on."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.zrem(keys.consumers(queue), worker_id)
    pipe.execute()


def live(client: redis.Redis, target: str) -> list[str]:
    """Ids of the workers that consumed `target`'s queue within their last beats."""
    now = int(time.time() * 1000)
    return sorted(as_text(m) for m in client.zrangebyscore(keys.consumers(target), now, "+inf"))


class Heartbeat(threading.Thread):
    """The worker's beat, in its main process: started when the worker is ready."""

    def __init__(
        self, client: redis.Redis, worker_id: str, queues: list[str], interval: float
    ) -> None:
        super().__init__(name="importq-consumer-beat", daemon=True)
        self.client, self.worker_id, self.queues = client, worker_id, queues
        self.interval = interval
        self.stopped = threading.Event()

    def start(self) -> None:
        """Beat once, then every interval from the thread: the worker is counted before Celery
        logs "ready." (worker_ready comes first), which tests and deploy checks wait for."""
        self._beat()
        super().start()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self._beat()

    def _beat(self) -> None:
        try:
            beat(self.client, self.worker_id, self.queues, ttl_for(self.interval))
        except redis.RedisError as error:  # a Redis blip: the next beat may get through
            log.warning("could not renew the worker's consumer heartbeat", error=str(error))

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)  # no beat after the leave
        try:
            leave(self.client, self.worker_id, self.queues)
        except redis.RedisError as error:  # it drops out by itself after its TTL
            log.warning("could not remove the worker's consumer heartbeat", error=str(error))
