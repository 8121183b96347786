"""The Celery app: one queue and one task per target, JSON only, late acks.

`celery -A workers.app worker -Q sourcing_data` runs a worker pool; every
worker also runs the reaper that re-enqueues units whose lease expired.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import click
import redis
import structlog
from celery import Celery, Task, signals
from kombu import Queue  # type: ignore[attr-defined]

from importq import broker
from importq import logging as importq_logging
from importq import settings as importq_settings
from importq.errors import ConfigError, ImportqError, RedisUnavailable
from importq.settings import Settings
from importq.settings_table import CORE
from workers import consumers, keys, pipelines, ratelimit, targets
from workers.jobs import JobStore
from workers.leases import Leases
from workers.middleware.pipelines import Pipelines
from workers.queues import SENT_AT_HEADER
from workers.runner import Runner
from workers.task_states import HandBacks, RefusedRecords, UnitFailed, end_of_task

log = structlog.get_logger("importq.worker")

# What this process resolved on first use: settings, its Redis, clients, the runner.
# Nothing is read or started at import: `celery -A workers.app` and `import workers.app`
# load settings (and pick, or start, a Redis) only once the app's configuration is read.
_state: dict[str, Any] = {}


def task_name(target: str) -> str:
    return f"importq.{target}"


def settings() -> Settings:
    """This process's settings, read from the environment once, on first use."""
    if "settings" not in _state:
        read = importq_settings.load()
        mask_declared_secrets(read)
        _state["settings"] = read
    loaded: Settings = _state["settings"]
    return loaded


def mask_declared_secrets(settings: Settings) -> None:
    """Give the log redaction every configured secret (the core's rows and each target's),
    so a line that quotes one shows *** even in a process that never reads it: `importq
    purge` ends a Blue unit without building Blue's client, yet may log its last error."""
    rows = [*CORE, *(row for target in targets.TARGETS.values() for row in target.settings)]
    for name in (name for row in rows if row.secret for name in row.names):
        if "<" in name:  # one variable per token or target: IMPORTQ_SERVE_CALLBACK_SECRET_<NAME>
            prefix = name[: name.index("<")]
            found = [variable for variable in settings.env if variable.startswith(prefix)]
        else:
            found = [name]
        for variable in found:
            if settings.get(variable):  # blank is unset: it must not mask every space
                settings.secret(variable)


def redis_choice() -> broker.RedisChoice:
    """The Redis this process uses, resolved once on first use: may start the embedded one."""
    if "redis_choice" not in _state:
        _state["redis_choice"] = broker.choose(settings())
    choice: broker.RedisChoice = _state["redis_choice"]
    return choice


def redis_url() -> str:
    return redis_choice().url


def _config() -> dict[str, Any]:
    """The app's configuration: Celery calls this the first time it reads `app.conf`."""
    try:
        broker_url = redis_choice().broker_url()
    except ImportqError as error:
        raise _refusal(error) from None
    return dict(
        broker_url=broker_url,
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
        # Celery's consumer, kept alive when kombu fails to close a lost Redis connection.
        worker_consumer="workers.celery_consumer:Consumer",
        broker_connection_retry_on_startup=True,
        task_queues=[Queue(name) for name in targets.TARGETS],
        task_routes={task_name(name): {"queue": name} for name in targets.TARGETS},
        task_default_queue=next(iter(targets.TARGETS)),
        # The runner turns it into a retry (an attempt) that names the setting; the next
        # attempt settles what this one left open with the vendor.
        task_annotations={
            task_name(name): {"soft_time_limit": settings().unit_time_limit}
            for name in targets.TARGETS
        },
        broker_transport_options={
            # The last safety net only: the reaper requeues a dead worker's unit after
            # its lease (30 s). Longer than the longest unit (a Blue prepare: an hour).
            "visibility_timeout": settings().visibility_timeout,
            "socket_timeout": 30,
            "socket_connect_timeout": 10,
            "health_check_interval": 25,
            # A Sentinel group: the primary's name and how to reach the sentinels.
            **redis_choice().transport_options(),
        },
    )


class StartRefused(click.ClickException):
    """A setting the app cannot start with (REDIS_URL that is no Redis URL, a lease of 0 s),
    met while Celery's own command line reads the configuration (`celery -A workers.app
    worker`, as the Procfile and docker-compose run it). Celery's command is a click group,
    and click shows a ClickException as one line, `Error: ...`, and exits with its code:
    the same line and code `importq worker` gives, where Celery would print a traceback."""

    def __init__(self, error: ImportqError) -> None:
        super().__init__(str(error))
        self.exit_code = 5 if isinstance(error, RedisUnavailable) else 1  # type: ignore[misc]


def _refusal(error: ImportqError) -> Exception:
    """StartRefused under Celery's command line; elsewhere the error as it is, for callers
    (importq's own commands, producers) that catch it by type."""
    context = click.get_current_context(silent=True)
    if context is None:
        return error
    from celery.bin.celery import celery as celery_command

    return StartRefused(error) if context.find_root().command is celery_command else error


app = Celery("importq")
# A promise Celery keeps until the configuration is first needed (a worker starting, a
# message sent): importing this module reads no setting and connects nowhere.
app.add_defaults(_config)


def redis_client() -> redis.Redis:
    if "redis" not in _state:
        # Retries ride out a Redis restart; one try times out well within the lease, so a
        # stalled connection cannot hold a unit past the point where it must stop.
        timeout = max(1.0, min(5.0, settings().lease_seconds / 4))
        _state["redis"] = broker.connect(redis_choice(), socket_timeout=timeout)
    client: redis.Redis = _state["redis"]
    return client


# A stopping worker's writes (its shutdown signal, its consumer heartbeat's leave) try once
# for this long: `docker stop` allows 10 s before SIGKILL.
STOPPING_WRITE_SECONDS = 2.0


def shutdown_id(hostname: str) -> str:
    """This worker process's name for its shutdown signal: node name plus main process id.

    Node names need not be unique (two workers on one host, a Procfile run with
    concurrency), so a signal keyed by name alone would stop every worker sharing it.
    Pool children inherit the main process's id from before the fork.
    """
    return f"{hostname}:{_state.get('main_pid', os.getpid())}"


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
        # No limits in the message: Celery would stamp this process's IMPORTQ_UNIT_TIME_LIMIT
        # (a producer's, say) and the worker would obey it over its own.
        time_limit=None,
        soft_time_limit=None,
        argsrepr=f"job={envelope['job_id']} unit={unit_id}",
        kwargsrepr="{}",
        # When it was sent, for the age of the oldest waiting message (`importq queues`):
        # kombu's messages carry no time of their own.
        headers={SENT_AT_HEADER: time.time()},
    )


def runner() -> Runner:
    if "runner" not in _state:
        _state["runner"] = Runner(settings(), JobStore(redis_client()), publish_unit, redis_url())
        _state["runner"].add_middleware(
            Pipelines(JobStore(redis_client()), publish_unit, settings().rescue_seconds)
        )
        _state["runner"].add_middleware(RefusedRecords())
        _state["runner"].add_middleware(HandBacks())
    result: Runner = _state["runner"]
    return result


def _register(target: str) -> None:
    @app.task(
        name=task_name(target),
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        acks_on_failure_or_timeout=True,
        max_retries=0,
        ignore_result=True,
        throws=(UnitFailed,),  # a failed unit is expected: one log line, no traceback
    )
    def run_unit(self: Task, envelope: dict[str, Any]) -> str:
        # Ends in FAILURE or RETRY when the unit failed or waits (workers/task_states.py).
        unit_id = envelope["unit_id"]
        worker = shutdown_id(self.request.hostname or "")
        return end_of_task(lambda: runner().run(target, unit_id, worker), unit_id)


for _name in targets.TARGETS:
    _register(_name)


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    importq_logging.configure(settings())


def reap_once(leases: Leases) -> int:
    """Re-enqueue every unit whose lease expired or whose retry is overdue."""
    store = JobStore(leases.redis)
    due = leases.reap(settings().rescue_seconds, settings().visibility_timeout)
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
    leases = Leases(redis_client(), settings().lease_seconds, settings().retry_grace)
    interval_ms = int(settings().reaper_interval * 1000)
    while not stop.wait(settings().reaper_interval):
        try:
            # One sweep per interval across all workers: the lock expires by itself.
            if leases.redis.set(keys.REAPER_LOCK, "1", nx=True, px=interval_ms):
                reap_once(leases)
                store = JobStore(leases.redis)
                # Pipelines whose job-finished hook died with its worker move on here.
                pipelines.sweep(store, publish_unit, settings().rescue_seconds)
                store.forget_expired(settings().job_ttl)
                for job_id in store.forget_abandoned_staging(settings().staging_ttl):
                    log.warning("discarded a job whose producer died while staging it",
                                job=job_id)  # fmt: skip
        except Exception as error:  # keep sweeping through Redis blips
            log.warning("reaper sweep failed", error=str(error))


def configuration_problems(names: list[str]) -> list[str]:
    """What keeps each of these targets from running here (its settings), in words."""
    problems = []
    for name in names:
        target = targets.TARGETS.get(name)
        if target is None:
            continue
        try:
            target.limits(settings())
            ratelimit.rate_for(name, settings())
            client = target.client(settings())
        except ConfigError as error:
            problems.append(f"{name}: {error}")
            continue
        close = getattr(client, "close", None)
        if callable(close):
            close()
    return problems


@signals.worker_init.connect
def _before_the_pool_starts(sender: Any = None, **_: Any) -> None:
    _state["main_pid"] = os.getpid()  # before the pool forks: its children inherit it
    refusal = broker.eviction_refusal(redis_client(), settings().allow_eviction)
    if refusal:  # a worker on an evicting Redis could run units twice: do not start
        log.error("refusing to start", reason=refusal)
        raise SystemExit(f"importq worker: {refusal}")
    consumed = list(sender.app.amqp.queues.consume_from or []) if sender is not None else []
    problems = configuration_problems(consumed)
    try:
        runner()  # builds the core's parts, reading their settings (the circuit breaker's)
    except ConfigError as error:
        problems.append(str(error))
    if problems:  # said now, not as every unit of the target failing later
        log.error("refusing to start: a target's settings are wrong", problems=problems)
        raise SystemExit("importq worker: fix these settings and start again:\n  "
                         + "\n  ".join(problems))  # fmt: skip


@signals.worker_ready.connect
def _start_reaper(sender: Any = None, **_: Any) -> None:
    choice = redis_choice()
    log.info("worker ready", redis=broker.safe_url(choice.url), redis_source=choice.source)
    stop = threading.Event()
    _state["reaper_stop"] = stop
    threading.Thread(target=_reaper_loop, args=(stop,), name="importq-reaper", daemon=True).start()


@signals.worker_ready.connect
def _start_consumer_heartbeat(sender: Any = None, **_: Any) -> None:
    """Say which queues this worker consumes, until it stops (workers/consumers.py)."""
    if sender is None:
        return
    queues = [str(name) for name in sender.app.amqp.queues.consume_from]
    worker_id = shutdown_id(str(sender.hostname))
    # Beats and the leave at shutdown try once: waiting out an outage (~45 s) would hold
    # a stopping worker past a container's grace.
    client = broker.impatient(redis_client(), STOPPING_WRITE_SECONDS)
    heartbeat = consumers.Heartbeat(client, worker_id, queues, settings().reaper_interval)
    _state["consumer_heartbeat"] = heartbeat
    heartbeat.start()


@signals.worker_shutting_down.connect
def _stop_consumer_heartbeat(**_: Any) -> None:
    heartbeat = _state.pop("consumer_heartbeat", None)
    if isinstance(heartbeat, consumers.Heartbeat):
        heartbeat.stop()


@signals.worker_shutting_down.connect
def _shutting_down(sender: Any = None, **_: Any) -> None:
    """Ask this worker's running units to stop at their next checkpoint and hand back."""
    if sender:
        key = keys.shutdown(shutdown_id(str(sender)))
        try:
            broker.impatient(redis_client(), STOPPING_WRITE_SECONDS).set(key, "1", ex=3600)
        except redis.RedisError as error:
            log.warning("shutting down: could not ask the running units to hand back (Redis "
                        "is unreachable); their leases run out and they run again elsewhere",
                        error=str(error))  # fmt: skip
        else:
            _state["shutdown_key"] = key
            log.info("shutting down: running units will be handed back at their next checkpoint")
    stop = _state.get("reaper_stop")
    if isinstance(stop, threading.Event):
        stop.set()


@signals.worker_shutdown.connect
def _shut_down(**_: Any) -> None:
    """The signal belonged to this process alone: gone with it."""
    key = _state.pop("shutdown_key", None)
    if key:
        try:
            broker.impatient(redis_client(), STOPPING_WRITE_SECONDS).delete(key)
        except redis.RedisError as error:  # it expires within the hour
            log.warning("could not remove this worker's shutdown signal", error=str(error))
