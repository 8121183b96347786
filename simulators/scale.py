"""What the scale run (bench/redis_cost.py) asks of each target's simulator module.

Every `simulators/<target>.py` provides `scale_plan(sim, count, stack, *, largest=False)
-> ScalePlan`: the jobs that carry `count` records to that simulator, cut so the run has
many units (`largest`: units as large as the vendor allows, the sizes the ceiling of one
Redis is worked out at), the worker settings those jobs need, and a count of what the
simulator committed. The bench takes the targets from the registry, so a new target
joins the scale run by writing its simulator's `scale_plan`; the bench does not change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

Records = Iterable[dict[str, Any]]


@dataclass(frozen=True)
class Committed:
    """What a simulator's ledger shows for the scale run's records."""

    records: int
    """Distinct records the vendor holds (committed at least once)."""
    twice: int
    """Records committed more than once (0 when every record was committed once)."""


@dataclass(frozen=True)
class ScaleJob:
    params: dict[str, Any]
    records: Records | None
    """None: a job without records (a bare trigger)."""


@dataclass
class ScalePlan:
    jobs: list[ScaleJob]
    committed: Callable[[], Committed]
    """Read after the jobs ended: what the simulator committed."""
    env: dict[str, str] = field(default_factory=dict)
    """Settings the workers and the publisher need for these jobs (unit sizes, S3...)."""
    unit_note: str = ""
    """How the records are cut into jobs and units, for the report."""


def job_sizes(count: int, per_job: int) -> list[int]:
    """`count` records as jobs of `per_job` records, the last one holding the rest."""
    full, rest = divmod(count, per_job)
    return [per_job] * full + ([rest] if rest else [])


def shares(count: int, targets: list[str]) -> dict[str, int]:
    """`count` records split evenly across `targets`, the first ones taking the remainder."""
    each, rest = divmod(count, len(targets))
    return {name: each + (1 if index < rest else 0) for index, name in enumerate(targets)}
