"""`importq demo`: the whole path on one machine with nothing installed but importq.

Starts the embedded Redis (unless REDIS_URL is set), the SourcingData
simulator and a worker; publishes a sample file; shows progress; prints a
summary read from the simulator's ledger and the job; stops what it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from importq import broker
from importq import settings as importq_settings

DEMO_AGENT = "demo-agent"
DEMO_TOKEN = "demo-fake-token"  # the simulator's own; not a real credential


def write_sample(path: Path, count: int) -> Path:
    """A deterministic sample file of SourcingData records (JSON Lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for n in range(count):
            record = {
                "entityId": "ORG_DEPT",
                "recordId": f"dept-{n:06d}",
                "data": {"Code": f"D{n:06d}", "Name": f"Department {n}", "Type": "Workroom"},
                "customData": {"CostCentre": f"CC{n % 97:02d}"},
            }
            out.write(json.dumps(record) + "\n")
    return path


def _start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.app",
            "worker",
            "-Q",
            "sourcing_data",
            "-c",
            "4",
            "-n",
            f"demo-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_ready(worker: subprocess.Popen[bytes], log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while b" ready." not in log_path.read_bytes():
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the demo worker did not start; see {log_path}")
        time.sleep(0.1)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def run_demo(count: int) -> int:
    settings = importq_settings.load()
    with ExitStack() as cleanup:
        choice = (
            broker.choose(settings, prefer_embedded=True, start=False)
            if (settings.redis_url or broker.embedded_url(settings))
            else None
        )
        if choice is None:
            choice = broker.RedisChoice(broker.start_embedded(settings), "embedded")
            cleanup.callback(broker.stop_embedded, settings)
            print(f"started the embedded Redis at {choice.url} (AOF on, data in {settings.home})")
        else:
            print(f"using Redis at {broker.safe_url(choice.url)} ({choice.source})")
        return _run(count, choice.url, settings.home, cleanup)


def _run(count: int, redis_url: str, home: Path, cleanup: ExitStack) -> int:
    from simulators.http import serve
    from simulators.sourcing_data import SourcingDataSimulator

    sim = SourcingDataSimulator()
    sim.configure(
        token=DEMO_TOKEN,
        agents={DEMO_AGENT},
        latency_seconds=0.01,
        processing_seconds=0.2,
        fault_rate=0.02,
        retry_after_seconds=1,
    )
    server = cleanup.enter_context(serve(sim))
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "SOURCING_DATA_URL": f"{server.url}/api/asol/ds",
        "SOURCING_DATA_TOKEN": DEMO_TOKEN,
        "SOURCING_DATA_AGENT_ID": DEMO_AGENT,
        "IMPORTQ_LOG_FORMAT": "json",
    }
    os.environ.update(env)
    print(f"SourcingData simulator at {server.url}/api/asol/ds")
    sample = write_sample(home / "demo" / "sourcing_data.jsonl", count)
    log_path = home / "demo" / "worker.log"
    worker = _start_worker(env, log_path)
    cleanup.callback(_stop, worker)
    _wait_ready(worker, log_path)
    print(f"worker started (4 processes), log in {log_path}")
    started = time.monotonic()
    job = _publish_and_wait(sample)
    elapsed = time.monotonic() - started
    _summary(job, sim.ledger(), elapsed)
    return 0 if job.state == "succeeded" else 1


def _publish_and_wait(sample: Path) -> Any:
    from importq.cli import _wait
    from producers.publish import publish
    from producers.readers import read_records
    from workers import app
    from workers.jobs import JobStore

    store = JobStore(app.redis_client())
    job_id = publish(
        "sourcing_data",
        read_records(sample, target="sourcing_data"),
        {"operation_id": "demo-operation"},
        settings=app.SETTINGS,
        store=store,
        publish_unit=app.publish_unit,
    )
    print(f"published {sample} as job {job_id}")
    return _wait(store, job_id, quiet=False)


def _summary(job: Any, ledger: dict[str, Any], elapsed: float) -> None:
    rate = job.records_delivered / elapsed if elapsed else 0.0
    print("\nsummary")
    print(f"  job            {job.id}: {job.state}")
    print(
        f"  records        {job.records_total} published, {job.records_delivered} delivered, "
        f"{job.records_dead} dead-lettered"
    )
    print(
        f"  at the target  {ledger['committed_records']} committed, "
        f"{ledger['duplicates']} committed twice"
    )
    print(
        f"  queue items    {ledger['items'].get('Success', 0)} succeeded "
        f"(largest {ledger['max_records_in_item']} records)"
    )
    print(
        f"  requests       {ledger['requests']} (largest {ledger['max_records_in_request']} "
        f"records), {ledger['faults']} faults injected"
    )
    print(f"  retries        {job.retries} unit retries")
    print(f"  time           {elapsed:.1f} s ({rate:.0f} records/s)")
