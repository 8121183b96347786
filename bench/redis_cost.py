"""What one Redis pays per unit and per record: 16 worker processes under 4 node names (standing
in for 4 machines) against one private Redis, a SourcingData job through its simulator.

Figures from the server itself, before and after the job (INFO commandstats, cpu,
memory): every command any process sent (producer, workers, Celery's own polling,
events and heartbeats, the reaper), Redis CPU seconds, and the peak memory while the
job's records are staged. Divided by the job's units and records, they give the
ceiling of one Redis on paper (docs/operations.md, "The ceiling of one Redis").

Only SourcingData: the other targets' units cost Redis the same core bookkeeping
(claim, heartbeat, finish, one message) plus what their sinks keep in target_state.

    python -m bench.redis_cost [--records N] [--json]

It runs in its own process; `make bench` calls it through `run_in_subprocess()`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis

from bench import env

DEFAULT_RECORDS = 200_000
NODES, PROCESSES_PER_NODE = 4, 4
RECORDS_PER_ITEM = 1000  # a unit: smaller than the vendor's 4000, so a job has many units
JOB_TIMEOUT_SECONDS = 1800.0


def _server(client: redis.Redis) -> dict[str, Any]:
    stats = client.info("commandstats")
    cpu = client.info("cpu")
    memory = client.info("memory")
    return {
        "calls": {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()},
        "cpu": float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
        "used_memory": int(memory["used_memory"]),
        "peak_memory": int(memory["used_memory_peak"]),
    }


def _run(records: int, workers_env: dict[str, str], client: redis.Redis) -> dict[str, Any]:
    from producers.publish import locate, publish
    from workers import app
    from workers.jobs import JobStore

    store = JobStore(app.redis_client())
    before = _server(client)
    started = time.perf_counter()
    job_id = publish("sourcing_data", locate(env.sample_records(records)),
                     {"operation_id": env.OPERATION}, settings=app.settings(), store=store,
                     publish_unit=app.publish_unit)  # fmt: skip
    staged = _server(client)  # every record staged, few units run yet: near the peak
    deadline = time.perf_counter() + JOB_TIMEOUT_SECONDS
    while not ((job := store.get(job_id)) and job.finished):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"job {job_id} did not finish in {JOB_TIMEOUT_SECONDS:.0f} s")
        time.sleep(0.5)  # the benchmark's own polling stays a rounding error in the counts
    seconds = time.perf_counter() - started
    after = _server(client)
    if job.state != "succeeded" or job.records_delivered != records:
        raise RuntimeError(f"job {job_id} ended {job.state}: {job.as_dict()}")
    calls = {n: after["calls"][n] - before["calls"].get(n, 0) for n in after["calls"]}
    total = sum(calls.values())
    units = job.units_total
    peak = max(staged["peak_memory"], after["peak_memory"]) - before["used_memory"]
    top = sorted(calls.items(), key=lambda item: -item[1])[:8]
    return {
        "records": records,
        "units": units,
        "worker_processes": NODES * PROCESSES_PER_NODE,
        "node_names": NODES,
        "seconds": round(seconds, 1),
        "records_per_second": round(records / seconds),
        "units_per_second": round(units / seconds, 1),
        "commands": total,
        "commands_per_unit": round(total / units, 1),
        "commands_per_record": round(total / records, 3),
        "top_commands_per_unit": {name: round(n / units, 1) for name, n in top},
        "redis_cpu_seconds": round(after["cpu"] - before["cpu"], 2),
        "redis_cpu_ms_per_unit": round((after["cpu"] - before["cpu"]) * 1000 / units, 2),
        "peak_bytes_per_staged_record": round(peak / records, 1),
    }


def measure(records: int = DEFAULT_RECORDS) -> dict[str, Any]:
    from simulators.http import serve
    from simulators.sourcing_data import SourcingDataSimulator

    sim = SourcingDataSimulator()
    sim.configure(token=env.TOKEN, agents={env.AGENT}, latency_seconds=0.05,
                  processing_seconds=0.01, fault_rate=0.0)  # fmt: skip
    with ExitStack() as stack:
        redis_url = stack.enter_context(env.private_redis())
        server = stack.enter_context(serve(sim))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="importq-bench-")))
        os.environ.update({
            "REDIS_URL": redis_url,
            "IMPORTQ_HOME": str(tmp / "home"),
            "IMPORTQ_LOG_FORMAT": "json",
            "SOURCING_DATA_URL": f"{server.url}/api/asol/ds",
            "SOURCING_DATA_TOKEN": env.TOKEN,
            "SOURCING_DATA_AGENT_ID": env.AGENT,
            "SOURCING_DATA_POLL_INTERVAL": "0.02",
            "SOURCING_DATA_RECORDS_PER_ITEM": str(RECORDS_PER_ITEM),
            "SOURCING_DATA_ITEMS_IN_FLIGHT": str(NODES * PROCESSES_PER_NODE),
        })  # fmt: skip
        for node in range(NODES):
            name = f"bench-node{node}-{os.getpid()}@localhost"
            log_path = tmp / f"worker{node}.log"
            stack.enter_context(env.worker(dict(os.environ), log_path, PROCESSES_PER_NODE, name))
        client = redis.Redis.from_url(redis_url)
        stack.callback(client.close)
        figures = _run(records, dict(os.environ), client)
    commits = sim.ledger()["commits"]
    twice = sum(1 for n in commits.values() if n > 1)
    figures["exactly_once"] = len(commits) == records and twice == 0
    return figures


def report(figures: dict[str, Any]) -> list[str]:
    top = ", ".join(f"{name} {n}" for name, n in figures["top_commands_per_unit"].items())
    return [
        f"Redis cost at scale ({figures['worker_processes']} worker processes under "
        f"{figures['node_names']} node names, one Redis, sourcing_data)",
        f"  {figures['records']:,} records in {figures['units']} units: "
        f"{figures['seconds']} s, {figures['records_per_second']:,} records/s, "
        f"{figures['units_per_second']} units/s",
        f"  Redis commands      {figures['commands_per_unit']} per unit, "
        f"{figures['commands_per_record']} per record",
        f"  most sent per unit  {top}",
        f"  Redis CPU           {figures['redis_cpu_seconds']} s, "
        f"{figures['redis_cpu_ms_per_unit']} ms per unit",
        f"  peak memory         {figures['peak_bytes_per_staged_record']} bytes per staged record",
        f"  exactly once        {'yes' if figures['exactly_once'] else 'NO'}",
    ]


def run_in_subprocess(records: int = DEFAULT_RECORDS) -> dict[str, Any]:
    """Run this benchmark in a fresh interpreter (workers.app reads REDIS_URL once, on first
    use) and return its figures."""
    done = subprocess.run([sys.executable, "-m", "bench.redis_cost", "--json", "--records",
                           str(records)], capture_output=True, text=True, check=True)  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_cost")
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS)
    parser.add_argument("--json", action="store_true", help="the figures as one JSON line")
    args = parser.parse_args()
    env.stop_on_sigterm()
    figures = measure(args.records)
    print(json.dumps(figures) if args.json else "\n".join(report(figures)))


if __name__ == "__main__":
    main()
