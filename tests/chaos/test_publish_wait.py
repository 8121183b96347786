"""`importq publish --wait` (the CLI, a subprocess) across a Redis restart (defect 5)."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from importq.processes import Process
from tests.chaos.harness import (
    Fleet,
    Site,
    latest_job_id,
    publish_wait_command,
    publish_wait_end,
    sourcing_data_job,
    wait_until,
)
from tests.faults import AofRedis

pytestmark = pytest.mark.chaos

DOWN_SECONDS = 3.0  # Redis stays away this long


def test_publish_wait_across_a_redis_restart_exits_with_the_jobs_true_state(
    tmp_path: Path,
    fresh_simulators: dict[str, Any],
    aof_redis: AofRedis,
    aof_site: Site,
    fleets: Callable[[str], Fleet],
    figure: Callable[[str], None],
) -> None:
    spec = sourcing_data_job(4000 * 2, latency=0.1, concurrency=2)
    spec.prepare(fresh_simulators)
    fleet = fleets(aof_redis.url)
    fleet.start("sourcing_data", spec.concurrency)
    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in spec.records))
    began = time.monotonic()
    cli = Process(publish_wait_command(records), fleet.base_env, tmp_path / "publish.log")
    try:
        job_id = wait_until("the job to be published", lambda: latest_job_id(aof_site),
                            timeout=120)  # fmt: skip
        seen = spec.progress(fresh_simulators)
        wait_until("the job to make headway", lambda: spec.progress(fresh_simulators) > seen + 2)
        aof_redis.restart(signal.SIGTERM, down_seconds=DOWN_SECONDS)
        end = publish_wait_end(cli, aof_site, spec, fresh_simulators, job_id, fleet)
    finally:
        cli.stop()
    figure(f"chaos publish --wait across a Redis restart ({DOWN_SECONDS:.0f} s down): exit "
           f"{end.exit_code}, job {end.job.state}, {end.verdict.line()}, "
           f"{time.monotonic() - began:.0f} s")  # fmt: skip
    assert (end.verdict.lost, end.verdict.twice) == (0, 0), end.verdict
    assert end.job.state == "succeeded", end.job
    assert end.exit_code == 0, end.said[-3000:]
    assert "Traceback" not in end.said, end.said[-3000:]
