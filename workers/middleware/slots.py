"""In-flight slots: a unit runs only holding a place in its slot (Sink.slot), and the place
it frees wakes the unit that has waited longest for it."""

from __future__ import annotations

from workers import keys
from workers.heartbeat import Slot
from workers.leases import Leases
from workers.middleware.base import Middleware, Waker
from workers.outcomes import Defer, UnitRun


class Slots(Middleware):
    def __init__(self, leases: Leases, wake: Waker) -> None:
        self.leases, self.wake = leases, wake

    def before_unit(self, run: UnitRun) -> Defer | None:
        slot = self._slot(run)
        if slot is None:
            return None
        if not self.leases.acquire_slot(slot.key, run.claim.token, slot.cap, run.unit_id):
            self.leases.wait_for_slot(slot.key, run.unit_id)
            return Defer("slot")
        run.slot = slot  # renewed by the heartbeat while the unit runs
        return None

    def after_unit(self, run: UnitRun, status: str | None) -> None:
        """Give the slot back and wake the unit that has waited longest for it."""
        if run.slot is None:
            return
        slot, run.slot = run.slot, None
        waiter = self.leases.hand_on_slot(slot.key, run.claim.token, slot.gap)
        if waiter:  # a second message: its claim decides
            self.wake(waiter, run.target, "slot", slot.gap or None)

    def _slot(self, run: UnitRun) -> Slot | None:
        found = run.sink.slot(run.params, run.limits)
        if found is None:
            return None
        gap = run.sink.slot_gap(run.params, run.limits)
        return Slot(keys.slots(run.target, found[0]), found[1], gap)
