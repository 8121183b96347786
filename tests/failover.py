"""The failover scenario: a SourcingData job through `importq publish --wait` and real workers,
all on a Redis Sentinel group whose primary is SIGKILLed mid-job, once or several times.

Judged from the simulator's ledger (every record committed once), the job's state and the
exit code of `publish --wait`; times are figures, never asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from importq import broker
from importq.processes import Process
from importq.settings import load
from tests.chaos.harness import (
    CHAOS_ENV,
    Fleet,
    PublishWait,
    Site,
    TargetJob,
    latest_job_id,
    mid_job,
    publish_wait_command,
    publish_wait_end,
    sourcing_data_job,
)
from tests.helpers import wait_until
from tests.sentinel import SentinelGroup


@dataclass
class FailoverRun:
    end: PublishWait
    failovers: int
    seconds: float
    restarts: int = 0  # worker processes that ended and were started again

    def line(self, name: str) -> str:
        end = self.end
        return (f"{name}: {self.failovers} failovers, {end.verdict.line()}, job {end.job.state}, "
                f"{end.job.crashes} crashes recovered, publish --wait exit {end.exit_code}, "
                f"{self.restarts} workers restarted, {self.seconds:.0f} s")  # fmt: skip


@contextlib.contextmanager
def supervised(fleet: Fleet, queues: str, concurrency: int) -> Iterator[list[int]]:
    """Start a worker again whenever one ends, as the README asks of every deployment
    (kombu can end a worker while it reconnects after a Redis restart); yields the count."""
    restarts = [0]
    ended: list[Any] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.5):
            for worker in list(fleet.workers):
                if worker.process.poll() is not None and worker not in ended:
                    ended.append(worker)
                    fleet.launch(queues, concurrency)
                    restarts[0] += 1

    watcher = threading.Thread(target=watch, name="supervisor", daemon=True)
    watcher.start()
    try:
        yield restarts
    finally:
        done.set()
        watcher.join(timeout=5)


def run_failovers(
    group: SentinelGroup,
    sims: dict[str, Any],
    tmp_path: Path,
    records: int,
    kills: int,
    records_per_item: int = 100,
) -> FailoverRun:
    """Publish a job of `records`, SIGKILL the primary `kills` times mid-job (the killed one
    comes back as the replica in between), and wait for the job and `publish --wait`."""
    from tests.conftest import TEST_ENV

    spec = sourcing_data_job(records, latency=0.05, concurrency=2)
    spec.publish_env = {"SOURCING_DATA_RECORDS_PER_ITEM": str(records_per_item)}
    spec.prepare(sims)
    env = {**os.environ, **TEST_ENV, **CHAOS_ENV, **group.env}
    choice = broker.choose(load(env))
    site = Site(choice.url, choice)
    fleet = Fleet(tmp_path, env)
    began = time.monotonic()
    try:
        fleet.start("sourcing_data", spec.concurrency)
        with supervised(fleet, "sourcing_data", spec.concurrency) as restarts:
            end = _publish_and_fail_over(group, sims, tmp_path, spec, env, site, kills, fleet)
        return FailoverRun(end, group.failovers, time.monotonic() - began, restarts[0])
    finally:
        fleet.stop_all()
        site.close()


def _publish_and_fail_over(
    group: SentinelGroup,
    sims: dict[str, Any],
    tmp_path: Path,
    spec: TargetJob,
    env: dict[str, str],
    site: Site,
    kills: int,
    fleet: Fleet,
) -> PublishWait:
    """`importq publish --wait` of the job, the primary killed `kills` times mid-job."""
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in spec.records))
    command = publish_wait_command(path)
    cli = Process(command, {**env, **spec.publish_env}, tmp_path / "publish.log")
    try:
        job_id = wait_until("the job to be published", lambda: latest_job_id(site), timeout=120)
        for number in range(kills):
            if not mid_job(spec, sims, site, job_id, fleet):
                break
            group.kill_primary()
            if number < kills - 1:
                group.restart_old()
        return publish_wait_end(cli, site, spec, sims, job_id, fleet)
    finally:
        cli.stop()
