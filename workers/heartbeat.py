"""The heartbeat of a running unit: renews its lease and slot, and notices shutdown.

Sinks call `checkpoint()` between vendor requests; it raises LeaseLost when the
lease (or the slot) could not be renewed, and HandBack when this worker was
asked to shut down, so the unit stops at a clean point instead of being cut.

`check_lease()` also runs before every vendor request (workers/vendor_calls.py).
A lease is trusted only while its last renewal is younger than half the lease:
a worker cut off from Redis (a stall, a partition) cannot tell whether its lease
still stands, so it stops before the TTL could have handed the unit to a successor.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import redis
import structlog

from workers import keys
from workers.leases import Leases
from workers.signals import HandBack, LeaseLost, LeaseUnconfirmed

log = structlog.get_logger("importq.heartbeat")
SHUTDOWN_CHECK_SECONDS = 0.5  # at most one Redis read per half second from checkpoint()


@dataclass(frozen=True)
class Slot:
    """The in-flight place a unit holds while it runs (see Sink.slot)."""

    key: str
    cap: int
    gap: float


class Heartbeat:
    """Renews the lease (and the in-flight slot) until stopped; notes when either is lost."""

    def __init__(
        self,
        leases: Leases,
        unit_id: str,
        token: str,
        slot: Slot | None,
        worker_id: str = "",
        leased_at: float | None = None,
        *,
        running_on: bool = False,
    ) -> None:
        """`running_on`: the claim saw this worker not shutting down (at `leased_at`), so the
        first checkpoint need not ask Redis again before SHUTDOWN_CHECK_SECONDS."""
        self.leases, self.unit_id, self.token, self.slot = leases, unit_id, token, slot
        self.shutdown_key = keys.shutdown(worker_id) if worker_id else ""
        self.lost = threading.Event()
        # The claim set the lease: it counts as the first renewal (time.monotonic()).
        self.renewed_at = time.monotonic() if leased_at is None else leased_at
        self.trusted_for = leases.lease_ms / 2000
        self.interval = leases.lease_ms / 3000
        self._renewing = threading.Lock()
        self._next_shutdown_check = (
            self.renewed_at + SHUTDOWN_CHECK_SECONDS if running_on and leased_at else 0.0
        )

    def __enter__(self) -> Heartbeat:
        _beats().add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        # Not waited for: a renewal still under way when the unit ends is fenced on the
        # lease (the finish deleted it) and finds nothing to renew.
        _beats().discard(self)

    def beat(self) -> bool:
        """One renewal from the beat thread; False once the lease is lost (beat no more)."""
        try:
            self._renew()
        except LeaseLost:
            return False
        except Exception as error:  # a blip must not stop the beat; check_lease decides
            log.warning("lease renewal failed", error=str(error))
        return True

    def _renew(self) -> None:
        """Renew the lease (and slot) once; raise LeaseLost if someone else holds it now."""
        started = time.monotonic()
        with self._renewing:
            alive = self.leases.renew(self.unit_id, self.token)
            if alive and self.slot:
                alive = self.leases.renew_slot(self.slot.key, self.token)
            if not alive:
                self.lost.set()
                raise LeaseLost(f"unit {self.unit_id}: lease lost; another worker may hold it")
            # The new expiry runs from when Redis got the renewal, which is after `started`.
            self.renewed_at = max(self.renewed_at, started)

    def check_lease(self) -> None:
        """Raise LeaseLost unless the lease is surely still this worker's."""
        if self.lost.is_set():
            raise LeaseLost(f"unit {self.unit_id}: lease lost; another worker may hold it")
        if time.monotonic() - self.renewed_at <= self.trusted_for:
            return
        try:  # the beat may only be late (a busy machine): renew here before giving up
            self._renew()
        except LeaseLost:
            raise
        except Exception as error:
            raise LeaseUnconfirmed(self._silent(f"renewal failed: {error}")) from None
        if time.monotonic() - self.renewed_at > self.trusted_for:
            raise LeaseUnconfirmed(self._silent("the renewal came back too late"))

    def _silent(self, why: str) -> str:
        silent = time.monotonic() - self.renewed_at
        return (
            f"unit {self.unit_id}: the lease was not renewed for {silent:.1f} s ({why}; Redis "
            "unreachable?); stopping before the next vendor request, as another worker may "
            "take the unit over"
        )

    def checkpoint(self) -> None:
        self.check_lease()
        if self.shutdown_key and time.monotonic() >= self._next_shutdown_check:
            self._next_shutdown_check = time.monotonic() + SHUTDOWN_CHECK_SECONDS
            try:
                shutting_down = bool(self.leases.redis.exists(self.shutdown_key))
            except redis.RedisError:  # unreachable: the lease check below decides
                shutting_down = False
            self.check_lease()  # that read may have waited on a stalled Redis
            if shutting_down:
                raise HandBack(f"unit {self.unit_id}: the worker is shutting down")


class Beats:
    """One thread per process renews every running unit's lease, each at its own interval.

    A thread of its own per unit cost two thread switches on every unit's way to its first
    vendor request and after its last (starting it, then joining it): a good part of a
    millisecond on a busy machine, for a first renewal due only a third of a lease later.
    """

    def __init__(self) -> None:
        self._due: dict[Heartbeat, float] = {}
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="importq-leases", daemon=True)
        self._thread.start()

    def add(self, heartbeat: Heartbeat) -> None:
        with self._changed:
            self._due[heartbeat] = time.monotonic() + heartbeat.interval
            self._changed.notify()

    def discard(self, heartbeat: Heartbeat) -> None:
        with self._changed:
            self._due.pop(heartbeat, None)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while True:
            for heartbeat in self._wait_for_due():
                beating = heartbeat.beat()
                with self._changed:
                    if heartbeat in self._due:  # not ended meanwhile
                        if beating:
                            self._due[heartbeat] = time.monotonic() + heartbeat.interval
                        else:
                            del self._due[heartbeat]

    def _wait_for_due(self) -> list[Heartbeat]:
        with self._changed:
            while True:
                now = time.monotonic()
                due = [beat for beat, when in self._due.items() if when <= now]
                if due:
                    return due
                soonest = min(self._due.values(), default=None)
                self._changed.wait(None if soonest is None else soonest - now)


_process_beats: list[Beats] = []  # this process's, once started
_beats_lock = threading.Lock()


def _beats() -> Beats:
    """This process's beat thread, started on first use (in a forked child, its own)."""
    if not _process_beats or not _process_beats[0].alive:
        with _beats_lock:
            if not _process_beats or not _process_beats[0].alive:
                _process_beats[:] = [Beats()]
    return _process_beats[0]


def _forget_the_parents() -> None:
    """In a forked child: the parent's beat thread is not there, and its locks may be held."""
    global _beats_lock
    _beats_lock = threading.Lock()
    _process_beats.clear()


os.register_at_fork(after_in_child=_forget_the_parents)
