"""The loop around one unit: claim -> middleware before -> sink.run -> route -> middleware after.

Outcomes are routed the same way for every target: delivered records are
counted, a retryable failure is rescheduled with backoff (or fails for good
once attempts run out), a record-level refusal is bisected until the bad
record stands alone in the dead-letter store, and any other final error sends
the unit's records there with the vendor's reason. Every write is fenced on
the lease, so a worker presumed dead cannot commit over its successor.

The rules that cut across targets (order per key, the circuit breaker,
in-flight slots, rate limits, pipelines) are middleware around this loop:
workers/middleware/, one module per rule, hooks described in base.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import structlog
from celery.exceptions import SoftTimeLimitExceeded

from importq import broker
from importq.errors import (
    ConfigError,
    FinalError,
    RejectedError,
    RetryableError,
    TargetError,
    VendorBusy,
)
from importq.settings import Settings
from workers import breaker, keys, targets, vendor_calls
from workers.heartbeat import Heartbeat
from workers.jobs import JobStore, UnitState, encode_records, unit_fields
from workers.leases import Finish, Leases, now_ms
from workers.middleware.base import Check, Middleware, Publish, Waker
from workers.middleware.breaker import CircuitBreaker
from workers.middleware.ordering import Ordering
from workers.middleware.ratelimit import RateLimit
from workers.middleware.slots import Slots
from workers.outcomes import Defer, Misconfigured, Outcome, Paused, Result, UnitRun
from workers.retry import unit_delay
from workers.signals import HandBack, LeaseLost, LeaseUnconfirmed
from workers.target_state import TargetState
from workers.targets.base import Delivered, Record, RunContext

log = structlog.get_logger("importq.runner")

WAIT_BASE = 1.0  # first wait of a unit whose slot or turn is taken; grows to WAIT_MAX
WAIT_MAX = 10.0  # a freed slot or turn wakes its waiter at once, so this only bounds churn
# A unit handed back at shutdown uses no attempt, this many times; after that each
# hand-back counts one, so a worker restarted in a loop cannot keep a unit going forever.
FREE_HANDBACKS = 3
JOB_FINISHED = 2
MISSING_PAYLOAD = (
    "the unit's staged records are missing from Redis ({key}): deleted by hand, or evicted "
    "by a Redis whose maxmemory-policy is not noeviction; publish the records again"
)


class Runner:
    def __init__(
        self, settings: Settings, store: JobStore, publish: Publish, redis_url: str = ""
    ) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.store = store
        self.leases = Leases(store.redis, settings.lease_seconds, settings.retry_grace)
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

    def add_middleware(self, middleware: Middleware) -> None:
        """Run `middleware` inside the built-in ones (its before last, its after first)."""
        self.middleware.append(middleware)

    def client(self, target: str) -> Any:
        # One client per target per process: connection pools are reused across units.
        if target not in self._clients:
            self._clients[target] = targets.get(target).client(self.settings)
        return self._clients[target]

    def run(self, target: str, unit_id: str, worker_id: str = "") -> str:
        claim = self.leases.claim(unit_id, self.settings.max_crashes)
        if claim.status == "early":
            return self._early(unit_id, target, claim.due)
        if claim.status not in ("claimed", "poisoned"):
            # A duplicate or redelivered message: the unit is done or a live worker has it.
            log.info("message acknowledged without running", unit=unit_id, found=claim.status)
            return claim.status
        job = self.store.get(keys.job_of(unit_id))
        records = self.store.payload(unit_id)
        run = UnitRun(
            unit_id,
            target,
            targets.get(target).sink,
            claim,
            job.params if job else {},
            records or [],
            self.store.unit(unit_id),
            worker_id,
        )
        context = {"job": keys.job_of(unit_id), "unit": unit_id, "target": target}
        with structlog.contextvars.bound_contextvars(**context, attempt=claim.attempts):
            if claim.status == "poisoned":
                reason = f"the worker died {claim.crashes} times while running this unit"
                return self._fail(run, reason)
            if job is None or job.cancelled:
                return self._cancel(run)
            if records is None:  # never "zero records": that would send a bare trigger
                return self._fail(run, MISSING_PAYLOAD.format(key=keys.payload(unit_id)))
            return self._run_claimed(run)

    def _early(self, unit_id: str, target: str, due: float) -> str:
        """A message came before the unit's due time: send it again for then, use nothing."""
        delay = max(0.0, due - time.time())
        log.info("message came before the unit is due; rescheduled without an attempt",
                 unit=unit_id, due_in=round(delay, 2))  # fmt: skip
        self._send_when_due(unit_id, target, delay)
        return "early"

    def _send_when_due(self, unit_id: str, target: str, delay: float) -> None:
        # A countdown message waits in a worker's memory and is redelivered after the
        # visibility timeout; a longer wait is left to the reaper, which sends it when due.
        if delay <= self.settings.visibility_timeout / 4:
            self.publish(unit_id, target, delay)

    def _cancel(self, run: UnitRun) -> str:
        if isinstance(settled := self._abandon(run), Delivered):
            return self._delivered(run, settled)  # committed before the cancel came
        return self._finish(run, Finish(UnitState.CANCELLED, terminal=True))

    def _run_claimed(self, run: UnitRun) -> str:
        entered: list[Middleware] = []  # those whose before_unit let the unit through
        status: str | None = None
        try:
            outcome = self._before_unit(run, entered)
            result = self._run_sink(run) if outcome is None else outcome
            for middleware in reversed(entered):
                replaced = middleware.on_result(run, result)
                result = result if replaced is None else replaced
            status = self._route(run, result)
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
                          run.worker_id, run.claim.sent_at) as beat,
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

    def _route(self, run: UnitRun, result: Result) -> str:
        match result:
            case Delivered():
                return self._delivered(run, result)
            case Defer(waits_for, why, bounded, retry_after):
                return self._defer(run, waits_for, retry_after, why, bounded)
            case Paused(delay, why, waits_for):
                return self._reschedule(run, delay, retry=False, attempts_delta=-1, error=why,
                                        fields={"waits_for": waits_for})  # fmt: skip
            case Misconfigured(error):
                return self._fail(run, str(error))
            case HandBack():
                log.info("worker shutting down: the unit goes back to the queue at its checkpoint")
                return self._hand_back(run, exact=True)
            case LeaseUnconfirmed():
                # Stopped before the next vendor request; back to the queue if still ours (the
                # fenced finish decides), with no resume point: a request may have been cut.
                log.warning("stopped without committing", reason=str(result))
                return self._hand_back(run, exact=False, error=str(result))
            case LeaseLost():
                log.warning("stopped without committing", reason=str(result))
                return "lease lost"
            case RetryableError():
                return self._retry(run, result)
            case FinalError():
                return self._refused(run, result)
        raise TypeError(f"no route for {result!r}")

    def _request_checks(self, run: UnitRun) -> list[Check | None]:
        return [middleware.request_check(run) for middleware in self.middleware]

    def _hand_back(self, run: UnitRun, *, exact: bool, error: str = "") -> str:
        """Back to the queue now; `exact`: stopped at a checkpoint the next run may trust."""
        handbacks = int(run.unit.get("handbacks") or 0) + 1
        free = handbacks <= FREE_HANDBACKS
        if not free and run.claim.attempts >= self.settings.max_attempts:
            return self._fail(run, f"handed back {handbacks} times (workers shutting down or "
                                   f"cut off from Redis), and {run.claim.attempts} attempts "
                                   "are used up")  # fmt: skip
        fields = {"handed_back": "1" if exact else "", "handbacks": str(handbacks)}
        return self._reschedule(run, 0.0, retry=False, attempts_delta=-1 if free else 0,
                                error=error, fields=fields)  # fmt: skip

    def _defer(self, run: UnitRun, waits_for: str, retry_after: float | None = None,
               why: str = "", bounded: bool = True) -> str:  # fmt: skip
        """Wait without using an attempt (a slot, a turn, the vendor), bounded in total."""
        since = float(run.unit.get("waiting_since") or time.time())
        waited = time.time() - since
        ceiling = self.settings.max_wait(run.target)
        if bounded and waited > ceiling:
            what = why or f"its {waits_for}"
            limit = f"{ceiling:.0f} s allowed (IMPORTQ_MAX_WAIT_SECONDS)"
            return self._fail(run, f"waited {waited:.0f} s for {what}, over the {limit}")
        waits = int(run.unit.get("deferrals") or 0) + 1
        delay = unit_delay(waits, WAIT_BASE, WAIT_MAX, retry_after)
        fields = {"deferrals": str(waits), "waits_for": waits_for, "waiting_since": str(since)}
        return self._reschedule(run, delay, retry=False, attempts_delta=-1, error=why,
                                fields=fields)  # fmt: skip

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

    def _delivered(self, run: UnitRun, delivered: Delivered) -> str:
        dead = [self._dead_letter(run, record, reason) for record, reason in delivered.rejected]
        state = UnitState.SUCCEEDED
        fields = {"delivered": str(delivered.count), "finished_at": str(time.time())}
        if delivered.warnings:
            fields["warnings"] = json.dumps(delivered.warnings[:100])
        outcome = Finish(
            state,
            terminal=True,
            fields=fields,
            delivered=delivered.count,
            dead=len(dead),
            dead_letters=dead,
        )
        log.info("unit delivered", records=delivered.count, dead_letters=len(dead))
        return self._finish(run, outcome)

    def _retry(self, run: UnitRun, error: RetryableError) -> str:
        if isinstance(error, VendorBusy):  # waiting, not failing: no attempt is used
            log.info("unit waits", reason=str(error), retry_after=error.retry_after)
            return self._defer(run, "vendor", error.retry_after, str(error))
        if run.claim.attempts >= self.settings.max_attempts:
            return self._fail(run, f"gave up after {run.claim.attempts} attempts: {error}")
        delay = unit_delay(
            run.claim.attempts,
            self.settings.backoff_base,
            self.settings.backoff_max,
            error.retry_after,
        )
        log.warning("unit will be retried", error=str(error), delay=round(delay, 2))
        return self._reschedule(run, delay, retry=True, error=str(error))

    def _refused(self, run: UnitRun, error: FinalError) -> str:
        if (
            isinstance(error, RejectedError)
            and len(run.records) > 1
            and targets.get(run.target).splittable
        ):
            return self._split(run, error)
        return self._fail(run, str(error), settle=False)  # the sink settled before raising

    def _split(self, run: UnitRun, error: TargetError) -> str:
        half = len(run.records) // 2
        children = []
        for index, part in enumerate((run.records[:half], run.records[half:])):
            child_id = f"{run.unit_id}.{index}"
            fields = unit_fields(keys.job_of(run.unit_id), run.target, len(part), run.unit_id)
            children.append((child_id, fields, encode_records(part)))
        log.info(
            "unit refused as a whole; splitting it to find the bad record",
            error=str(error),
            records=len(run.records),
        )
        outcome = Finish(
            UnitState.SPLIT, terminal=True, fields={"last_error": str(error)}, children=children
        )
        status = self._finish(run, outcome)
        if status == UnitState.SPLIT:
            for child_id, _, _ in children:
                self.publish(child_id, run.target, None)
        return status

    def _fail(self, run: UnitRun, reason: str, *, settle: bool = True) -> str:
        """Dead-letter the unit's records, after settling what earlier attempts left open."""
        settled = self._abandon(run) if settle else ""
        if isinstance(settled, Delivered):  # it had committed: not a failure at all
            log.warning("the vendor had committed the unit", reason=reason)
            return self._delivered(run, settled)
        return self._dead_lettered(run, reason + settled)

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

    def _dead_lettered(self, run: UnitRun, reason: str) -> str:
        dead = [self._dead_letter(run, record, reason) for record in run.records]
        log.error(
            "unit failed; records sent to the dead-letter store", reason=reason, records=len(dead)
        )
        # A unit without records (a bare trigger) leaves one letter without a record, so its
        # job is in `importq dlq list` and can be replayed; it counts no dead record.
        letters = dead or [self._dead_letter(run, None, reason)]
        outcome = Finish(
            UnitState.FAILED,
            terminal=True,
            fields={"last_error": reason},
            dead=len(dead),
            dead_letters=letters,
        )
        return self._finish(run, outcome)

    def _reschedule(
        self,
        run: UnitRun,
        delay: float,
        *,
        retry: bool,
        attempts_delta: int = 0,
        error: str = "",
        fields: dict[str, str] | None = None,
    ) -> str:
        due = now_ms() + int(delay * 1000)
        fields = {"next_attempt_at": str(due / 1000), **(fields or {})}
        if error:
            fields["last_error"] = error
        outcome = Finish(
            UnitState.WAITING,
            terminal=False,
            fields=fields,
            retry=retry,
            attempts_delta=attempts_delta,
            deadline_ms=due + self.leases.grace_ms,
        )
        status = self._finish(run, outcome)
        if status == UnitState.WAITING:
            self._send_when_due(run.unit_id, run.target, delay)
        return status

    def _finish(self, run: UnitRun, outcome: Finish) -> str:
        # Ran (or ended): the next wait starts short and its ceiling counts from then.
        for name in ("deferrals", "waits_for", "waiting_since"):
            outcome.fields.setdefault(name, "")
        recorded = self.leases.finish(run.unit_id, run.claim.token, outcome)
        if not recorded:
            log.warning("lease lost before the outcome was recorded; another worker owns the unit")
            return "lease lost"
        if recorded == JOB_FINISHED:
            self._job_finished(keys.job_of(run.unit_id))
        return str(outcome.state)

    def _job_finished(self, job_id: str) -> None:
        job = self.store.get(job_id)
        if job is None:
            return
        log.info("job finished", job_state=str(job.state), delivered=job.records_delivered,
                 dead=job.records_dead)  # fmt: skip
        for middleware in self.middleware:
            middleware.after_job_finished(job)
        # A job with dead letters (a failed trigger has one) stays until they are replayed.
        if job.records_dead == 0 and job.units_failed == 0:
            self.store.expire(job.id, self.settings.job_ttl)

    def wake_turn(self, target: str, job_id: str | None) -> int:
        """Wake the units of `job_id` that wait for their turn (`importq release`)."""
        return self.ordering.wake_turn(target, job_id)

    def _dead_letter(self, run: UnitRun, record: Record | None, reason: str) -> str:
        entry = {
            "record": record,
            "reason": reason,
            "unit": run.unit_id,
            "target": run.target,
            "attempts": run.claim.attempts,
            "at": time.time(),
        }
        return json.dumps(entry, separators=(",", ":"))


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
