"""`importq demo`: the whole path on one machine with nothing installed but importq.

Starts the embedded Redis (unless REDIS_URL is set), every target's simulator
and one worker for all queues; publishes each target's sample job; shows
progress; prints a summary read from the simulators' ledgers and the jobs;
stops what it started.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from importq import broker, sentinel
from importq import settings as importq_settings
from importq.processes import Process, stop_all, worker_commands
from importq.progress import follow_jobs
from producers.publish import locate, publish
from simulators import load
from simulators.http import serve
from workers import app
from workers.jobs import JobStore
from workers.targets import TARGETS

WORKER_CONCURRENCY = 4


def _start_workers(env: dict[str, str], log_dir: Path) -> list[Process]:
    """Workers for every queue, as `importq worker` starts them (Blue alone at -c 1)."""
    commands = worker_commands(list(TARGETS), WORKER_CONCURRENCY, f"demo-{os.getpid()}@%h")
    quiet = ["--without-gossip", "--without-mingle"]
    workers = []
    for number, command in enumerate(commands):
        log_path = log_dir / f"worker-{number}.log"
        log_path.write_bytes(b"")
        workers.append(Process([*command, *quiet], env, log_path))
    return workers


def run_demo(count: int) -> int:
    settings = importq_settings.load()
    with ExitStack() as cleanup:
        if settings.redis_url or sentinel.config(settings) or broker.embedded_url(settings):
            choice = broker.choose(settings, start=False)
            print(choice.describe())
        else:
            choice = broker.RedisChoice(broker.start_embedded(settings), "embedded")
            cleanup.callback(broker.stop_embedded, settings)
            print(f"started the embedded Redis at {choice.url} (AOF on, data in {settings.home})")
        return _run(count, choice.url, settings.home, cleanup)


def _serve_simulators(cleanup: ExitStack) -> tuple[dict[str, Any], dict[str, str]]:
    """Every target's simulator, with mild latency and faults; and the env to reach them."""
    sims: dict[str, Any] = {}
    env: dict[str, str] = {}
    for name in TARGETS:
        module = load(name)
        sim = module.SIMULATOR()
        sim.configure(latency_seconds=0.01, fault_rate=0.02, retry_after_seconds=1)
        server = cleanup.enter_context(serve(sim))
        env.update(module.client_env(server.url))
        sims[name] = sim
        print(f"{name} simulator at {server.url}{sim.base_path}")
    return sims, env


def _run(count: int, redis_url: str, home: Path, cleanup: ExitStack) -> int:
    sims, sim_env = _serve_simulators(cleanup)
    env = {**os.environ, **sim_env, "REDIS_URL": redis_url, "IMPORTQ_LOG_FORMAT": "json"}
    os.environ.update(env)  # before workers.app first reads its settings (once)
    log_dir = home / "demo"
    log_dir.mkdir(parents=True, exist_ok=True)
    workers = _start_workers(env, log_dir)
    cleanup.callback(stop_all, workers, 30)
    for worker in workers:
        worker.wait_ready()
    print(f"workers started ({WORKER_CONCURRENCY} processes; blue alone at 1), logs in {log_dir}")
    started = time.monotonic()
    jobs = {name: _publish(name, count) for name in sims}
    finished = follow_jobs(JobStore(app.redis_client()), jobs)
    elapsed = time.monotonic() - started
    _summary(finished, sims, elapsed)
    return 0 if all(job.state == "succeeded" for job in finished.values()) else 1


def _publish(target: str, count: int) -> str:

    params, records = load(target).demo_job(count)
    located = locate(records, f"{target} sample") if records is not None else None
    job_id = publish(target, located, params, settings=app.settings(),
                     store=JobStore(app.redis_client()), publish_unit=app.publish_unit)  # fmt: skip
    print(f"published the {target} sample as job {job_id}")
    return job_id


def _summary(jobs: dict[str, Any], sims: dict[str, Any], elapsed: float) -> None:

    print(f"\nsummary ({elapsed:.1f} s in all)")
    for name, job in jobs.items():
        print(f"  {name}: job {job.id} {job.state}: {job.records_delivered}/{job.records_total} "
              f"delivered, {job.records_dead} dead-lettered, {job.units_total} units, "
              f"{job.retries} retries")  # fmt: skip
        for line in load(name).summarize(sims[name].ledger()):
            print(f"      at the target: {line}")
