"""The heartbeat of a running unit: renews its lease and slot, and notices shutdown.

Sinks call `checkpoint()` between vendor requests; it raises LeaseLost when the
lease (or the slot) could not be renewed, and HandBack when this worker was
asked to shut down, so the unit stops at a clean point instead of being cut.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import structlog

from importq.errors import HandBack, LeaseLost
from workers import keys
from workers.leases import Leases

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
        self, leases: Leases, unit_id: str, token: str, slot: Slot | None, hostname: str = ""
    ) -> None:
        self.leases, self.unit_id, self.token, self.slot = leases, unit_id, token, slot
        self.shutdown_key = keys.shutdown(hostname) if hostname else ""
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._next_shutdown_check = 0.0
        self._thread = threading.Thread(target=self._beat, name=f"lease:{unit_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        interval = self.leases.lease_ms / 3000
        while not self._stop.wait(interval):
            try:
                alive = self.leases.renew(self.unit_id, self.token)
                if alive and self.slot:
                    alive = self.leases.renew_slot(self.slot.key, self.token)
            except Exception as error:  # a blip must not kill the beat; the TTL decides
                log.warning("lease renewal failed", error=str(error))
                continue
            if not alive:
                self.lost.set()
                return

    def checkpoint(self) -> None:
        if self.lost.is_set():
            raise LeaseLost(f"unit {self.unit_id}: lease lost; another worker may hold it")
        if self.shutdown_key and time.monotonic() >= self._next_shutdown_check:
            self._next_shutdown_check = time.monotonic() + SHUTDOWN_CHECK_SECONDS
            if self.leases.redis.exists(self.shutdown_key):
                raise HandBack(f"unit {self.unit_id}: the worker is shutting down")
