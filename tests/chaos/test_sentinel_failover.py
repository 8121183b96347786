"""Redis Sentinel failovers mid-job at full strength: tens of thousands of records, the primary
SIGKILLed several times at random moments (the killed one back as the replica in between).

`make test` runs the one-failover case (tests/test_sentinel.py); this runs in `make chaos`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import ROUNDS
from tests.failover import run_failovers
from tests.sentinel import SentinelGroup

ONLY_IN_MAKE_CHAOS = "make chaos runs it; make test runs one failover (tests/test_sentinel.py)"
pytestmark = [
    pytest.mark.chaos,
    pytest.mark.skipif(ROUNDS < 4, reason=ONLY_IN_MAKE_CHAOS),
    pytest.mark.timeout(1800),
]

RECORDS = 20_000


def test_repeated_failovers_mid_job_lose_nothing_and_commit_nothing_twice(
    fresh_sentinel_group: SentinelGroup,
    fresh_simulators: dict[str, Any],
    tmp_path: Path,
    figure: Callable[[str], None],
) -> None:
    kills = max(2, ROUNDS // 4)
    run = run_failovers(fresh_sentinel_group, fresh_simulators, tmp_path, RECORDS, kills,
                        records_per_item=250)  # fmt: skip
    figure(run.line(f"chaos sourcing_data Sentinel failover x{kills}, {RECORDS} records"))
    end = run.end
    assert run.failovers >= 2, "the job ended before a second failover: make it larger"
    assert (end.verdict.lost, end.verdict.twice) == (0, 0), end.verdict
    assert end.job.state == "succeeded", end.job
    assert end.exit_code == 0, end.said[-3000:]
    assert "Traceback" not in end.said, end.said[-3000:]
