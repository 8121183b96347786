"""The loop around one unit: claim -> slot -> heartbeat -> sink.run -> route the outcome.

Outcomes are routed the same way for every target: delivered records are
counted, a retryable failure is rescheduled with backoff (or fails for good
once attempts run out), a record-level refusal is bisected until the bad
record stands alone in the dead-letter store, and any other final error sends
the unit's records there with the vendor's reason. Every write is fenced on
the lease, so a worker presumed dead cannot commit over its successor.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from importq.errors import (
    ConfigError,
    FinalError,
    HandBack,
    LeaseLost,
    RetryableError,
    TargetError,
)
from importq.settings import Settings
from workers import keys, ordering, ratelimit, targets
from workers.heartbeat import Heartbeat, Slot
from workers.jobs import JobStore, JobView, UnitState, encode_records, unit_fields
from workers.leases import Claim, Finish, Leases, now_ms
from workers.retry import unit_delay
from workers.targets.base import Delivered, Record, RunContext, Sink

Publish = Callable[[str, str, float | None], None]  # unit id, target, countdown
log = structlog.get_logger("importq.runner")

DEFER_SECONDS = 1.0  # first wait of a unit whose slot or turn is taken; grows to DEFER_MAX
DEFER_MAX = 10.0  # a freed slot wakes its longest waiter at once, so this only bounds churn
JOB_FINISHED = 2


@dataclass
class UnitRun:
    """One claimed unit and what it needs while it runs."""

    unit_id: str
    target: str
    sink: Sink
    claim: Claim
    params: dict[str, Any]
    records: list[Record]
    unit: dict[str, str]
    hostname: str = ""


class Runner:
    def __init__(
        self, settings: Settings, store: JobStore, publish: Publish, redis_url: str = ""
    ) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.store = store
        self.leases = Leases(store.redis, settings.lease_seconds, settings.retry_grace)
        self.publish = publish
        self._clients: dict[str, Any] = {}
        self._throttles: dict[str, ratelimit.Throttle | None] = {}
        # Called once with the JobView when a job's last unit finishes (e.g. pipelines).
        self.job_finished_hooks: list[Callable[[JobView], None]] = []

    def client(self, sink: Sink) -> Any:
        # One client per target per process: connection pools are reused across units.
        if sink.name not in self._clients:
            self._clients[sink.name] = sink.make_client(self.settings)
        return self._clients[sink.name]

    def throttle(self, target: str) -> ratelimit.Throttle | None:
        if target not in self._throttles and self.redis_url:
            self._throttles[target] = ratelimit.throttle_for(target, self.settings, self.redis_url)
        return self._throttles.get(target)

    def run(self, target: str, unit_id: str, hostname: str = "") -> str:
        claim = self.leases.claim(unit_id, self.settings.max_crashes)
        if claim.status not in ("claimed", "poisoned"):
            # A duplicate or redelivered message: the unit is done or a live worker has it.
            log.info("message acknowledged without running", unit=unit_id, found=claim.status)
            return claim.status
        job = self.store.get(keys.job_of(unit_id))
        records = self.store.payload(unit_id) or []
        run = UnitRun(
            unit_id,
            target,
            targets.get(target),
            claim,
            job.params if job else {},
            records,
            self.store.unit(unit_id),
            hostname,
        )
        context = {"job": keys.job_of(unit_id), "unit": unit_id, "target": target}
        with structlog.contextvars.bound_contextvars(**context, attempt=claim.attempts):
            if claim.status == "poisoned":
                reason = f"the worker died {claim.crashes} times while running this unit"
                return self._fail(run, reason)
            if job is None or job.cancelled:
                return self._finish(run, Finish(UnitState.CANCELLED, terminal=True))
            return self._run_claimed(run)

    def _run_claimed(self, run: UnitRun) -> str:
        if not ordering.my_turn(
            self.store, run.target, run.sink.order_key(run.params), run.unit_id
        ):
            log.info("an earlier job on the same order key is not finished; waiting")
            return self._defer(run)
        try:
            limits = run.sink.load_limits(self.settings)
            client = self.client(run.sink)
        except ConfigError as error:  # this worker's environment is wrong: no traceback
            log.error("the worker's configuration is incomplete", error=str(error))
            return self._retry(run, RetryableError(f"worker configuration: {error}",
                                                   target=run.target))  # fmt: skip
        slot = self._slot(run, limits)
        token = run.claim.token
        if slot and not self.leases.acquire_slot(slot.key, token, slot.cap):
            self.leases.wait_for_slot(slot.key, run.unit_id)
            return self._defer(run)
        if slot:
            self.leases.stop_waiting(slot.key, run.unit_id)
        try:
            with (
                Heartbeat(self.leases, run.unit_id, token, slot, run.hostname) as beat,
                ratelimit.applied(self.throttle(run.target)),
            ):
                delivered = run.sink.run(self._context(run, limits, client, beat))
        except HandBack:
            log.info("worker shutting down: the unit goes back to the queue at its checkpoint")
            return self._reschedule(run, 0.0, retry=False, attempts_delta=-1,
                                    fields={"handed_back": "1"})  # fmt: skip
        except LeaseLost as error:
            log.warning("stopped without committing", reason=str(error))
            return "lease lost"
        except RetryableError as error:
            return self._retry(run, error)
        except FinalError as error:
            return self._refused(run, error)
        except Exception as error:
            # A bug or an unreadable answer: retried like a timeout, bounded, then dead-lettered.
            log.exception("unexpected error while running the unit")
            unexpected = RetryableError(
                f"unexpected {type(error).__name__}: {error}", target=run.target
            )
            return self._retry(run, unexpected)
        finally:
            if slot:
                self._release(run, slot, token)
        return self._delivered(run, delivered)

    def _defer(self, run: UnitRun) -> str:
        """Wait for a slot or a turn without using an attempt, a little longer each time."""
        deferrals = int(run.unit.get("deferrals") or 0)
        delay = min(DEFER_SECONDS * 1.5**deferrals, DEFER_MAX)
        return self._reschedule(run, delay, retry=False, attempts_delta=-1,
                                fields={"deferrals": str(deferrals + 1)})  # fmt: skip

    def _release(self, run: UnitRun, slot: Slot, token: str) -> None:
        """Give the slot back and wake the unit that has waited longest for it."""
        self.leases.release_slot(slot.key, token, slot.gap)
        waiter = self.leases.next_waiter(slot.key)
        if waiter:  # a second message for it: harmless, its claim decides
            self.publish(waiter, run.target, slot.gap or None)

    def _slot(self, run: UnitRun, limits: Any) -> Slot | None:
        found = run.sink.slot(run.params, limits)
        if found is None:
            return None
        gap = run.sink.slot_gap(run.params, limits)
        return Slot(keys.slots(run.target, found[0]), found[1], gap)

    def _context(self, run: UnitRun, limits: Any, client: Any, beat: Heartbeat) -> RunContext:
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
            redis=self.store.redis,
            handed_back=run.unit.get("handed_back") == "1",
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
        if not error.counts_attempt:
            delay = error.retry_after or DEFER_SECONDS
            log.info("unit waits", reason=str(error), delay=round(delay, 2))
            return self._reschedule(run, delay, retry=False, attempts_delta=-1, error=str(error))
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
        if error.record_level and len(run.records) > 1 and run.sink.splittable:
            return self._split(run, error)
        return self._fail(run, str(error))

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

    def _fail(self, run: UnitRun, reason: str) -> str:
        dead = [self._dead_letter(run, record, reason) for record in run.records]
        log.error(
            "unit failed; records sent to the dead-letter store", reason=reason, records=len(dead)
        )
        outcome = Finish(
            UnitState.FAILED,
            terminal=True,
            fields={"last_error": reason},
            dead=len(dead),
            dead_letters=dead,
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
        # A countdown message waits in a worker's memory and is redelivered after the
        # visibility timeout; a longer wait is left to the reaper, which sends it when due.
        if status == UnitState.WAITING and delay <= self.settings.visibility_timeout / 4:
            self.publish(run.unit_id, run.target, delay)
        return status

    def _finish(self, run: UnitRun, outcome: Finish) -> str:
        outcome.fields.setdefault("handed_back", "")  # a hand-back holds for one claim only
        outcome.fields.setdefault("deferrals", "0")  # ran (or ended): the next wait starts short
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
        ordering.release(self.store.redis, job)
        if job.records_dead == 0:  # a job with dead letters stays until they are replayed
            self.store.expire(job.id, self.settings.job_ttl)
        for hook in self.job_finished_hooks:
            hook(job)

    def _dead_letter(self, run: UnitRun, record: Record, reason: str) -> str:
        entry = {
            "record": record,
            "reason": reason,
            "unit": run.unit_id,
            "target": run.target,
            "attempts": run.claim.attempts,
            "at": time.time(),
        }
        return json.dumps(entry, separators=(",", ":"))
