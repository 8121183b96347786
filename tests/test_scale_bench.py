"""The scale run's accounting (bench/redis_cost.py): every registered target takes part, its
records are split without loss, and what Redis counted adds up per target and in total.

One tiny run with real workers (one node name, a Redis and the simulators of its own); the
issue's million records run in `make bench`.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench import redis_cost
from simulators import load
from simulators.scale import Committed, job_sizes, shares
from workers.targets import TARGETS

PER_TARGET = 60


def test_every_registered_target_can_join_the_scale_run() -> None:
    missing = [name for name in TARGETS if not callable(getattr(load(name), "scale_plan", None))]
    assert not missing, f"simulators without scale_plan (simulators/scale.py): {missing}"


def test_records_are_split_across_targets_and_jobs_without_loss() -> None:
    split = shares(1_000_003, list(TARGETS))
    assert list(split) == list(TARGETS)
    assert sum(split.values()) == 1_000_003
    assert max(split.values()) - min(split.values()) == 1
    assert job_sizes(25_001, 10_000) == [10_000, 10_000, 5_001]
    assert job_sizes(20_000, 10_000) == [10_000, 10_000]


def test_a_record_lost_or_committed_twice_fails_the_run() -> None:
    assert redis_cost.exactly_once(100, Committed(100, 0), [])
    assert not redis_cost.exactly_once(100, Committed(99, 0), [])
    assert not redis_cost.exactly_once(100, Committed(100, 1), [])
    assert not redis_cost.exactly_once(100, Committed(100, 0), ["job-1 partial"])


@pytest.fixture(scope="module")
def tiny_run() -> dict[str, Any]:
    return redis_cost.run_in_subprocess(PER_TARGET * len(TARGETS), nodes=1, idle_seconds=0.5)


def test_each_target_reports_what_redis_counted_for_its_units(tiny_run: dict[str, Any]) -> None:
    assert list(tiny_run["targets"]) == list(TARGETS)
    for name, target in tiny_run["targets"].items():
        assert target["records"] == PER_TARGET, name
        assert target["committed"] == PER_TARGET and target["exactly_once"], name
        assert target["units"] >= 1, name
        by_name = target["commands_by_name"]
        assert target["commands"] == sum(by_name.values()) > 0, name
        assert target["commands_per_unit"] == round(target["commands"] / target["units"], 1)
        assert "info" not in by_name, f"{name}: the bench's own readings were counted"
        assert target["records_delivered"] == PER_TARGET, name


def test_the_total_adds_up_the_targets(tiny_run: dict[str, Any]) -> None:
    targets, total = tiny_run["targets"].values(), tiny_run["total"]
    assert tiny_run["exactly_once"]
    assert total["records"] == PER_TARGET * len(TARGETS)
    assert total["units"] == sum(t["units"] for t in targets)
    assert total["commands"] == sum(t["commands"] for t in targets)
    for command, count in total["commands_by_name"].items():
        assert count == sum(t["commands_by_name"].get(command, 0) for t in targets), command
    assert tiny_run["worker_processes"] == redis_cost.PROCESSES_PER_NODE
    assert "\n".join(redis_cost.report(tiny_run)).count(" yes") == len(TARGETS) + 1
