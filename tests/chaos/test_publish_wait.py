"""`importq publish --wait` (the CLI, a subprocess) across a Redis restart (defect 5)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from importq.processes import Process
from tests.chaos.harness import Fleet, Site, sourcing_data_job, wait_until
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
    # -c rather than the console script: the importq of this checkout, like the workers.
    main = "import sys; from importq.cli import main; sys.exit(main())"
    command = [sys.executable, "-c", main, "publish", "sourcing_data", str(records),
               "--operation-id", "op-chaos", "--wait"]  # fmt: skip
    began = time.monotonic()
    cli = Process(command, fleet.base_env, tmp_path / "publish.log")
    try:
        job_id = wait_until("the job to be published", lambda: _job_id(aof_site), timeout=120)
        seen = spec.progress(fresh_simulators)
        wait_until("the job to make headway", lambda: spec.progress(fresh_simulators) > seen + 2)
        aof_redis.restart(signal.SIGTERM, down_seconds=DOWN_SECONDS)
        try:
            code = cli.process.wait(timeout=300)
        except subprocess.TimeoutExpired:
            code = None
    finally:
        cli.stop()
    job = aof_site.wait_job(job_id)
    verdict = spec.verdict(fresh_simulators, job, aof_site)
    said = cli.log_path.read_text(errors="replace")
    figure(f"chaos publish --wait across a Redis restart ({DOWN_SECONDS:.0f} s down): exit {code}, "
           f"job {job.state}, {verdict.line()}, {time.monotonic() - began:.0f} s")  # fmt: skip
    assert (verdict.lost, verdict.twice) == (0, 0), verdict
    assert job.state == "succeeded", job
    assert code == 0, said[-3000:]
    assert "Traceback" not in said, said[-3000:]


def _job_id(site: Site) -> str | None:
    try:
        jobs = site.store.recent(1)
    except Exception:
        return None
    return jobs[0].id if jobs else None
