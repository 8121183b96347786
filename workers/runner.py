"""The loop around one unit: claim -> middleware before -> sink.run -> route -> middleware after.

The rules that cut across targets (order per key, the circuit breaker,
in-flight slots, rate limits, pipelines) are middleware around this loop:
workers/middleware/, one module per rule, hooks described in base.py. Where the
unit's result takes it (delivered, retried, split, dead-lettered, waiting) is
workers/routing.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from celery.exceptions import SoftTimeLimitExceeded

from importq import broker, sentinel
from importq.errors import ConfigError, FinalError, RetryableError
from importq.settings import Settings
from workers import breaker, keys, targets, vendor_calls
from workers.heartbeat import Heartbeat
from workers.jobs import JobStore, decode_records, view
from workers.leases import Leases
from workers.middleware.base import Check, Middleware, Publish, Waker
from workers.middleware.breaker import CircuitBreaker
from workers.middleware.ordering import Ordering
from workers.middleware.ratelimit import RateLimit
from workers.middleware.slots import Slots
from workers.outcomes import Misconfigured, Outcome, Result, UnitRun
from workers.routing import Router
from workers.signals import HandBack, LeaseLost
from workers.target_state import TargetState
from workers.targets.base import Delivered, RunContext

log = structlog.get_logger("importq.runner")

MISSING_PAYLOAD = (
    "the unit's staged records are missing from Redis ({key}): deleted by hand, or evicted "
    "by a Redis whose maxmemory-policy is not noeviction; publish the records again"
)
UNREADABLE_PAYLOAD = (
    "the unit's staged records cannot be read ({error}): changed outside importq, or staged "
    "by a newer release (upgrade every worker); they are kept at {aside}; publish the "
    "records again"
)


class Runner:
    def __init__(
        self, settings: Settings, store: JobStore, publish: Publish, redis_url: str = ""
    ) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.store = store
        # With a Sentinel group, claims, remembered remote ids and finishes wait for a replica.
        wait_ms = sentinel.replica_wait_ms(settings, store.redis)
        group = sentinel.config(settings)
        self.leases = Leases(store.redis, settings.lease_seconds, settings.retry_grace, wait_ms,
                             group.named_primary if group else None)  # fmt: skip
        # Heartbeats renew through a client that tries once and fails fast, so a stalled
        # Redis shows up as an unconfirmed lease instead of a renewal hanging in retries.
        beat_timeout = min(5.0, max(0.25, settings.lease_seconds / 6))
        beat_client = broker.impatient(store.redis, beat_timeout)
        self.beat_leases = Leases(beat_client, settings.lease_seconds, settings.retry_grace)
        self.breaker = breaker.Breaker(store.redis, settings)
        self.publish = publish
        self._clients: dict[str, Any] = {}
        wake = Waker(self.leases, publish)
        self.ordering = Ordering(store, wake)
        # The order is the contract: a unit waits for its turn before it may probe a paused
        # target; a probe is taken before a misconfigured worker counts against the target;
        # the slot is sized by the target's limits, so it comes after they are loaded.
        self.middleware: list[Middleware] = [
            self.ordering,
            CircuitBreaker(self.breaker, wake),
            TargetSetup(settings, self.client),
            Slots(self.leases, wake),
            RateLimit(settings, redis_url),
        ]
        self.router = Router(settings, store, self.leases, publish, self.middleware, self._abandon)

    def add_middleware(self, middleware: Middleware) -> None:
        """Run `middleware` inside the built-in ones (its before last, its after first)."""
        self.middleware.append(middleware)

    def client(self, target: str) -> Any:
        # One client per target per process: connection pools are reused across units.
        if target not in self._clients:
            self._clients[target] = targets.get(target).client(self.settings)
        return self._clients[target]

    def run(self, target: str, unit_id: str, worker_id: str = "") -> str:
        # One round trip: the lease, and the unit, job, records and breaker state with it.
        shutdown_key = keys.shutdown(worker_id) if worker_id else ""
        claim = self.leases.claim(unit_id, self.settings.max_crashes, target, shutdown_key)
        if claim.status == "early":
            return self.router.early(unit_id, target, claim.due)
        if claim.status not in ("claimed", "poisoned"):
            # A duplicate or redelivered message: the unit is done or a live worker has it.
            log.info("message acknowledged without running", unit=unit_id, found=claim.status)
            return claim.status
        job = view(keys.job_of(unit_id), claim.job)
        records, unreadable = _records(claim.payload)
        run = UnitRun(
            unit_id,
            target,
            targets.get(target).sink,
            claim,
            job.params if job else {},
            records or [],
            claim.unit,
            worker_id,
        )
        context = {"job": keys.job_of(unit_id), "unit": unit_id, "target": target}
        with structlog.contextvars.bound_contextvars(**context, attempt=claim.attempts):
            if claim.status == "poisoned":
                reason = f"the worker died {claim.crashes} times while running this unit"
                return self.router.fail(run, reason)
            if job is None or job.cancelled:
                return self.router.cancel(run)
            if unreadable:
                aside = self.store.set_aside_payload(unit_id)
                reason = UNREADABLE_PAYLOAD.format(error=unreadable, aside=aside)
                return self.router.fail(run, reason)
            if records is None:  # never "zero records": that would send a bare trigger
                return self.router.fail(run, MISSING_PAYLOAD.format(key=keys.payload(unit_id)))
            return self._run_claimed(run)

    def _run_claimed(self, run: UnitRun) -> str:
        entered: list[Middleware] = []  # those whose before_unit let the unit through
        status: str | None = None
        try:
            outcome = self._before_unit(run, entered)
            result = self._run_sink(run) if outcome is None else outcome
            for middleware in reversed(entered):
                replaced = middleware.on_result(run, result)
                result = result if replaced is None else replaced
            status = self.router.route(run, result)
            return status
        finally:
            for middleware in reversed(entered):
                middleware.after_unit(run, status)

    def _before_unit(self, run: UnitRun, entered: list[Middleware]) -> Outcome | None:
        for middleware in self.middleware:
            outcome = middleware.before_unit(run)
            if outcome is not None:
                return outcome
            entered.append(middleware)
        return None

    def _run_sink(self, run: UnitRun) -> Result:
        """Run the sink under the unit's heartbeat: what it delivered, or what stopped it."""
        try:
            with (
                Heartbeat(self.beat_leases, run.unit_id, run.claim.token, run.slot,
                          run.worker_id, run.claim.sent_at,
                          running_on=run.claim.shutting_down is False) as beat,
                vendor_calls.before_each_request(beat.check_lease, *self._request_checks(run)),
            ):  # fmt: skip
                return run.sink.run(self._context(run, run.limits, run.client, beat))
        except (HandBack, LeaseLost, RetryableError, FinalError) as error:
            return error  # routed by its type
        except SoftTimeLimitExceeded:
            limit = f"{self.settings.unit_time_limit:.0f} s (IMPORTQ_UNIT_TIME_LIMIT)"
            return RetryableError(f"the unit ran longer than {limit}", target=run.target)
        except Exception as error:
            # A bug or an unreadable answer: retried like a timeout, bounded, then dead-lettered.
            log.exception("unexpected error while running the unit")
            return RetryableError(f"unexpected {type(error).__name__}: {error}", target=run.target)

    def _request_checks(self, run: UnitRun) -> list[Check | None]:
        return [middleware.request_check(run) for middleware in self.middleware]

    def _context(
        self, run: UnitRun, limits: Any, client: Any, beat: Heartbeat
    ) -> RunContext[Any, Any]:
        def remember(values: dict[str, str]) -> None:
            fields = {f"remote.{k}": v for k, v in values.items()}
            if not self.leases.remember(run.unit_id, run.claim.token, fields):
                raise LeaseLost(f"unit {run.unit_id}: lease lost while recording {sorted(values)}")
            run.unit.update(fields)

        remote = {k[7:]: v for k, v in run.unit.items() if k.startswith("remote.") and v}
        return RunContext(
            unit_id=run.unit_id,
            attempt=run.claim.attempts,
            records=run.records,
            params=run.params,
            remote=remote,
            client=client,
            limits=limits,
            settings=self.settings,
            log=log,
            remember=remember,
            checkpoint=beat.checkpoint,
            target_state=TargetState(self.store.redis, run.target, run.unit_id),
            handed_back=run.claim.handed_back,
        )

    def _abandon(self, run: UnitRun) -> Delivered | str:
        """Ask the sink to settle what earlier attempts left open (their remote.* fields);
        Delivered if the vendor had committed, else a note for the reason ("" for none)."""
        if not any(k.startswith("remote.") and v for k, v in run.unit.items()):
            return ""  # nothing was opened at the vendor: nothing to ask
        try:
            limits = targets.get(run.target).limits(self.settings)
            client = self.client(run.target)
            with (
                Heartbeat(self.beat_leases, run.unit_id, run.claim.token, None,
                          leased_at=run.claim.sent_at) as beat,
                vendor_calls.before_each_request(beat.check_lease, *self._request_checks(run)),
            ):  # fmt: skip
                settled = run.sink.abandon(self._context(run, limits, client, beat))
        except (FinalError, ConfigError) as error:
            return f"; {error}"
        except Exception as error:  # vendor down, lease lost: say so, never guess
            log.warning("could not settle what an earlier attempt left open", error=str(error))
            return (f"; what an earlier attempt left open with the vendor could not be settled "
                    f"({error}): check it there before replaying")  # fmt: skip
        return settled if settled is not None else ""

    def wake_turn(self, target: str, job_id: str | None) -> int:
        """Wake the units of `job_id` that wait for their turn (`importq release`)."""
        return self.ordering.wake_turn(target, job_id)


class TargetSetup(Middleware):
    """Loads the target's limits and client onto the run; a wrong environment stops it here."""

    def __init__(self, settings: Settings, client: Callable[[str], Any]) -> None:
        self.settings, self.client = settings, client

    def before_unit(self, run: UnitRun) -> Misconfigured | None:
        try:
            run.limits = targets.get(run.target).limits(self.settings)
            run.client = self.client(run.target)
        except ConfigError as error:  # this worker's environment is wrong: no traceback
            log.error("the worker's configuration is incomplete", error=str(error))
            return Misconfigured(error)
        return None


def _records(payload: bytes | None) -> tuple[list[dict[str, Any]] | None, str]:
    """The staged records (None when there are none), or why they cannot be read."""
    if payload is None:
        return None, ""
    try:
        return decode_records(payload), ""
    except ValueError as error:  # a corrupt frame, or not JSON (orjson's errors are these)
        return None, str(error)
