"""The Celery app: one queue and one task per target, JSON only, late acks.

`celery -A workers.app worker -Q sourcing_data` runs a worker pool; every
worker also runs the reaper that re-enqueues units whose lease expired.
"""

from __future__ import annotations

import threading
from typing import Any

import redis
import structlog
from celery import Celery, Task, signals
from kombu import Queue  # type: ignore[attr-defined]

from importq import broker
from importq import logging as importq_logging
from importq import settings as importq_settings
from workers import keys, pipelines, targets
from workers.jobs import JobStore
from workers.leases import Leases
from workers.runner import Runner

SETTINGS = importq_settings.load()
REDIS = broker.choose(SETTINGS)
REDIS_URL = REDIS.url
log = structlog.get_logger("importq.worker")


def task_name(target: str) -> str:
    return f"importq.{target}"


def _configure(app: Celery) -> None:
    app.conf.update(
        broker_url=REDIS_URL,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],  # pickle is refused
        event_serializer="json",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_extended=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_retry_on_startup=True,
        task_queues=[Queue(name) for name in targets.SINKS],
        task_routes={task_name(name): {"queue": name} for name in targets.SINKS},
        task_default_queue=next(iter(targets.SINKS)),
        broker_transport_options={
            # The last safety net only: the reaper requeues a dead worker's unit after
            # its lease (30 s). Longer than the longest unit (a Blue prepare: an hour).
            "visibility_timeout": SETTINGS.visibility_timeout,
            "socket_timeout": 30,
            "socket_connect_timeout": 10,
            "health_check_interval": 25,
        },
    )


app = Celery("importq")
_configure(app)
_state: dict[str, Any] = {}


def redis_client() -> redis.Redis:
    if "redis" not in _state:
        # Timeouts: a half-open connection must not hang a heartbeat or the reaper forever.
        _state["redis"] = redis.Redis.from_url(
            REDIS_URL,
            health_check_interval=25,
            socket_timeout=30,
            socket_connect_timeout=10,
            socket_keepalive=True,
        )
    client: redis.Redis = _state["redis"]
    return client


def publish_unit(unit_id: str, target: str, countdown: float | None = None) -> None:
    """Send the small message that wakes a worker for one unit (no records, no secrets)."""
    envelope = {
        "unit_id": unit_id,
        "job_id": keys.job_of(unit_id),
        "target": target,
        "schema_version": 1,
    }
    app.send_task(
        task_name(target),
        args=[envelope],
        queue=target,
        countdown=countdown,
        argsrepr=f"job={envelope['job_id']} unit={unit_id}",
        kwargsrepr="{}",
    )


def runner() -> Runner:
    if "runner" not in _state:
        _state["runner"] = Runner(SETTINGS, JobStore(redis_client()), publish_unit, REDIS_URL)
        _state["runner"].job_finished_hooks.append(
            pipelines.on_job_finished(
                JobStore(redis_client()), publish_unit, SETTINGS.visibility_timeout
            )
        )
    result: Runner = _state["runner"]
    return result


def _register(target: str) -> None:
    @app.task(
        name=task_name(target),
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        max_retries=0,
        ignore_result=True,
    )
    def run_unit(self: Task, envelope: dict[str, Any]) -> str:
        return runner().run(target, envelope["unit_id"], self.request.hostname or "")


for _name in targets.SINKS:
    _register(_name)


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    importq_logging.configure(SETTINGS)


def reap_once(leases: Leases) -> int:
    """Re-enqueue every unit whose lease expired or whose retry is overdue."""
    store = JobStore(leases.redis)
    due = leases.reap(rescue_seconds=SETTINGS.visibility_timeout)
    for unit_id in due:
        target = store.unit(unit_id).get("target")
        if target:
            log.warning(
                "re-enqueuing unit: its lease expired or its retry is overdue",
                unit=unit_id,
                target=target,
            )
            publish_unit(unit_id, target)
    return len(due)


def _reaper_loop(stop: threading.Event) -> None:
    leases = Leases(redis_client(), SETTINGS.lease_seconds, SETTINGS.retry_grace)
    interval_ms = int(SETTINGS.reaper_interval * 1000)
    while not stop.wait(SETTINGS.reaper_interval):
        try:
            # One sweep per interval across all workers: the lock expires by itself.
            if leases.redis.set(keys.REAPER_LOCK, "1", nx=True, px=interval_ms):
                reap_once(leases)
                store = JobStore(leases.redis)
                # Pipelines whose job-finished hook died with its worker move on here.
                pipelines.sweep(store, publish_unit, SETTINGS.visibility_timeout)
                store.forget_expired(SETTINGS.job_ttl)
        except Exception as error:  # keep sweeping through Redis blips
            log.warning("reaper sweep failed", error=str(error))


@signals.worker_ready.connect
def _start_reaper(sender: Any = None, **_: Any) -> None:
    log.info("worker ready", redis=broker.safe_url(REDIS_URL), redis_source=REDIS.source)
    if sender is not None:  # a restarted worker with the same name is not shutting down
        redis_client().delete(keys.shutdown(sender.hostname))
    stop = threading.Event()
    _state["reaper_stop"] = stop
    threading.Thread(target=_reaper_loop, args=(stop,), name="importq-reaper", daemon=True).start()


@signals.worker_shutting_down.connect
def _shutting_down(sender: Any = None, **_: Any) -> None:
    """Ask this worker's running units to stop at their next checkpoint and hand back."""
    if sender:
        redis_client().set(keys.shutdown(str(sender)), "1", ex=3600)
        log.info("shutting down: running units will be handed back at their next checkpoint")
    stop = _state.get("reaper_stop")
    if isinstance(stop, threading.Event):
        stop.set()
