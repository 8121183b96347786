"""One claimed unit on its way through the runner, and what its run can come to.

A run ends in one of these results, and the router routes each the same way for
every target: `Delivered` (the sink's answer), an error the sink stopped with (a
TargetError or a control signal), or an outcome a middleware decided before the
sink ran (workers/middleware/): wait for a turn or slot, wait out a paused target,
or stop on the worker's own configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from importq.errors import ConfigError
from workers.heartbeat import Slot
from workers.leases import Claim
from workers.targets.base import Delivered, Record, Sink


@dataclass
class UnitRun:
    """One claimed unit and what it needs while it runs."""

    unit_id: str
    target: str
    sink: Sink[Any, Any]
    claim: Claim
    params: dict[str, Any]
    records: list[Record]
    unit: dict[str, str]
    worker_id: str = ""  # whose shutdown signal hands this unit back (app.shutdown_id)
    probing: bool = False  # its target is paused and this unit is the probe
    limits: Any = None  # the target's limits and client, loaded once the unit may run
    client: Any = None
    slot: Slot | None = None  # the in-flight place it holds while it runs


@dataclass(frozen=True)
class Defer:
    """Wait without using an attempt (for a slot, a turn, the vendor), bounded in total
    unless `bounded` is False (a hold only an operator lifts)."""

    waits_for: str
    why: str = ""
    bounded: bool = True
    retry_after: float | None = None


@dataclass(frozen=True)
class Paused:
    """Wait `delay` seconds, using no attempt and without a ceiling: the target is paused."""

    delay: float
    why: str
    waits_for: str = "breaker"


@dataclass(frozen=True)
class Misconfigured:
    """This worker's environment is wrong for the target: the unit cannot run here."""

    error: ConfigError


Outcome = Defer | Paused | Misconfigured
Result = Outcome | Delivered | Exception
