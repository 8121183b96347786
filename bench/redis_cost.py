"""What one Redis pays per unit and per record, for every registered target: 16 worker
processes under 4 node names (standing in for 4 machines) against one private Redis, the
records split evenly across the targets' simulators (1,000,000 in all by default).

Each node runs what `importq worker` starts on a machine: one Celery worker for the shared
queues at -c 3, plus one at -c 1 for each one-process target (Blue), so Blue has a process
on every node and its slot lets one import run at a time across them. The simulators answer
at once (no latency, no faults), so what is measured is the queue's cost. The targets run
one after the other with every worker up, so the server's own counters, read before and
after each target (INFO commandstats, cpu, memory), belong to that target alone: every
command any process sent (producer, workers, Celery's polling, events and heartbeats, the
reaper), Redis CPU seconds, and the peak memory while its records were staged (sampled
every 0.1 s, since used_memory_peak never goes down). The bench's own INFO and job polling
are left out. Before the targets, the idle cost of the 16 processes is measured alone.

Each target's share comes from its simulator's `scale_plan` (simulators/scale.py), which
also says whether each record was committed exactly once; the exit status is 1 if not.

    python -m bench.redis_cost [--records N] [--nodes N] [--idle-seconds S]
                               [--largest-units] [--json]

It runs in its own process (workers.app reads REDIS_URL once, on first use); `make bench`
calls it through `run_in_subprocess()`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import redis

from bench import env
from simulators.scale import Committed, ScalePlan

DEFAULT_RECORDS = 1_000_000
NODES, PROCESSES_PER_NODE = 4, 4
IDLE_SECONDS = 10.0
JOB_TIMEOUT_SECONDS = 3600.0
POLL_SECONDS = 0.2  # the bench's job polling: one HGETALL per unfinished job each time
SAMPLE_SECONDS = 0.1
OWN_COMMANDS = ("info",)  # the bench's readings, not importq's traffic
TOP = 6


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


@contextmanager
def _memory_peak(redis_url: str) -> Iterator[list[int]]:
    """Yield a one-item list that holds the highest used_memory seen while the block runs."""
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        with redis.Redis.from_url(redis_url) as client:
            while not done.is_set():
                peak[0] = max(peak[0], int(client.info("memory")["used_memory"]))
                done.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, name="memory-sampler", daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


def _commands(before: dict[str, Any], after: dict[str, Any], polls: int) -> dict[str, int]:
    """Commands sent between two readings, less the bench's own."""
    calls = {n: c - before["calls"].get(n, 0) for n, c in after["calls"].items()}
    calls["hgetall"] = calls.get("hgetall", 0) - polls
    return {n: c for n, c in calls.items() if c > 0 and n not in OWN_COMMANDS}


def figures(
    records: int, units: int, seconds: float, calls: dict[str, int], cpu: float, peak_bytes: int
) -> dict[str, Any]:
    """A target's (or the total's) figures from what the server counted."""
    total = sum(calls.values())
    top = sorted(calls.items(), key=lambda item: -item[1])[:TOP]
    return {
        "records": records,
        "units": units,
        "seconds": round(seconds, 1),
        "records_per_second": round(records / seconds),
        "units_per_second": round(units / seconds, 1),
        "commands": total,
        "commands_per_unit": round(total / units, 1),
        "commands_per_record": round(total / records, 3),
        "top_commands_per_unit": {name: round(n / units, 1) for name, n in top},
        "redis_cpu_seconds": round(cpu, 2),
        "redis_cpu_ms_per_unit": round(cpu * 1000 / units, 2),
        "peak_bytes": peak_bytes,
        "peak_bytes_per_staged_record": round(peak_bytes / records, 1),
        "commands_by_name": dict(sorted(calls.items(), key=lambda item: -item[1])),
    }


def less_idle(result: dict[str, Any], idle: dict[str, Any]) -> dict[str, Any]:
    """`result` with its per-unit figures less what the idle processes would have sent and
    cost over the same seconds: the share that grows with units, not with processes."""
    commands = result["commands"] - idle["commands_per_second"] * result["seconds"]
    cpu_ms = result["redis_cpu_seconds"] * 1000 - idle["cpu_ms_per_second"] * result["seconds"]
    return {
        **result,
        "commands_per_unit_less_idle": round(max(commands, 0) / result["units"], 1),
        "redis_cpu_ms_per_unit_less_idle": round(max(cpu_ms, 0) / result["units"], 2),
    }


def exactly_once(published: int, committed: Committed, failed_jobs: list[str]) -> bool:
    """Every job succeeded, and the vendor holds every published record, none twice."""
    return not failed_jobs and committed.records == published and committed.twice == 0


def _publish_all(name: str, plan: ScalePlan) -> list[str]:
    from producers.publish import locate, publish
    from workers import app
    from workers.jobs import JobStore

    store = JobStore(app.redis_client())
    job_ids = []
    for number, job in enumerate(plan.jobs):
        records = job.records
        located = None if records is None else locate(records, f"{name} scale {number}")
        job_ids.append(
            publish(
                name,
                located,
                job.params,
                settings=app.settings(),
                store=store,
                publish_unit=app.publish_unit,
            )
        )
    return job_ids


def _wait_all(job_ids: list[str]) -> tuple[list[Any], int]:
    """The jobs once all ended, and how many job hashes the bench read while waiting."""
    from workers import app
    from workers.jobs import JobStore

    store = JobStore(app.redis_client())
    deadline = time.perf_counter() + JOB_TIMEOUT_SECONDS
    waiting, polls = list(job_ids), 0
    while True:
        jobs = store.many(waiting)
        polls += len(waiting)
        waiting = [job.id for job in jobs if not job.finished]
        if not waiting:
            return store.many(job_ids), polls + len(job_ids)
        if time.perf_counter() > deadline:
            raise RuntimeError(
                f"{len(waiting)} jobs did not end in {JOB_TIMEOUT_SECONDS:.0f} s; "
                f"first: {waiting[0]}"
            )
        time.sleep(POLL_SECONDS)


def _run_target(
    name: str, plan: ScalePlan, client: redis.Redis, redis_url: str, idle: dict[str, Any]
) -> dict[str, Any]:
    """Publish one target's share, wait for its jobs, and read what Redis paid for them."""
    before = _server(client)
    started = time.perf_counter()
    with _memory_peak(redis_url) as sampled:
        jobs, polls = _wait_all(_publish_all(name, plan))
    seconds = time.perf_counter() - started
    after = _server(client)
    # used_memory_peak is exact when this target set a new high; otherwise the samples tell.
    peak = (
        max(sampled[0], after["peak_memory"] if after["peak_memory"] > before["peak_memory"] else 0)
        - before["used_memory"]
    )
    records, units = (
        sum(getattr(job, n) for job in jobs) for n in ("records_total", "units_total")
    )
    calls, cpu = _commands(before, after, polls), after["cpu"] - before["cpu"]
    result = less_idle(figures(records, units, seconds, calls, cpu, max(peak, 0)), idle)
    failed = [f"{job.id} {job.state}" for job in jobs if job.state != "succeeded"]
    committed = plan.committed()
    result.update(
        {
            "jobs": len(jobs),
            "cut": plan.unit_note,
            "records_delivered": sum(job.records_delivered for job in jobs),
            "jobs_not_succeeded": failed,
            "committed": committed.records,
            "committed_twice": committed.twice,
            "exactly_once": exactly_once(records, committed, failed),
        }
    )
    return result


def _idle(client: redis.Redis, seconds: float) -> dict[str, Any]:
    """What the worker processes cost Redis doing nothing (polling, heartbeats, the reaper)."""
    before = _server(client)
    time.sleep(seconds)
    after = _server(client)
    calls = _commands(before, after, 0)
    return {
        "seconds": seconds,
        "commands_per_second": round(sum(calls.values()) / seconds, 1),
        "cpu_ms_per_second": round((after["cpu"] - before["cpu"]) * 1000 / seconds, 2),
        "top_commands_per_second": {
            n: round(c / seconds, 1)
            for n, c in sorted(calls.items(), key=lambda item: -item[1])[:TOP]
        },
    }


def _start_workers(stack: ExitStack, nodes: int, log_dir: Path) -> int:
    """`importq worker`'s processes on `nodes` node names; returns the pool processes."""
    from importq.processes import Process, worker_commands
    from workers.targets import TARGETS

    solo = sum(1 for target in TARGETS.values() if target.one_process)
    shared = max(1, PROCESSES_PER_NODE - solo)
    started: list[Process] = []
    for node in range(nodes):
        name = f"scale-node{node}-{os.getpid()}@localhost"
        for number, command in enumerate(worker_commands(list(TARGETS), shared, name)):
            log_path = log_dir / f"node{node}-{number}.log"
            log_path.write_bytes(b"")
            started.append(Process(command, dict(os.environ), log_path))
            stack.callback(started[-1].stop, 30)
    for process in started:
        process.wait_ready(timeout=300)
    return nodes * (shared + solo)


def _plans(stack: ExitStack, records: int, largest: bool) -> dict[str, tuple[Any, ScalePlan]]:
    """Every registered target's simulator, served, and its plan for its share of records."""
    from simulators import load
    from simulators.http import serve
    from simulators.scale import shares
    from workers.targets import TARGETS

    plans: dict[str, tuple[Any, ScalePlan]] = {}
    for name, count in shares(records, list(TARGETS)).items():
        module = load(name)
        sim = module.SIMULATOR()
        sim.configure(latency_seconds=0.0, fault_rate=0.0)
        server = stack.enter_context(serve(sim))
        plan = module.scale_plan(sim, count, stack, largest=largest)
        os.environ.update({**module.client_env(server.url), **plan.env})
        plans[name] = (sim, plan)
    return plans


def measure(
    records: int = DEFAULT_RECORDS,
    nodes: int = NODES,
    idle_seconds: float = IDLE_SECONDS,
    largest: bool = False,
) -> dict[str, Any]:
    from workers.targets import TARGETS

    if records < len(TARGETS):
        raise ValueError(f"the scale run needs at least one record per target ({len(TARGETS)})")
    with ExitStack() as stack:
        redis_url = stack.enter_context(env.private_redis())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="importq-scale-")))
        os.environ.update(
            {
                "REDIS_URL": redis_url,
                "IMPORTQ_HOME": str(tmp / "home"),
                "IMPORTQ_LOG_FORMAT": "json",
            }
        )
        plans = _plans(stack, records, largest)
        processes = _start_workers(stack, nodes, tmp)
        client = redis.Redis.from_url(redis_url)
        stack.callback(client.close)
        idle = _idle(client, idle_seconds)
        targets = {}
        for name, (_, plan) in plans.items():
            targets[name] = _run_target(name, plan, client, redis_url, idle)
            print(_line(name, targets[name]), file=sys.stderr, flush=True)
    return {
        "worker_processes": processes,
        "node_names": nodes,
        "largest_units": largest,
        "idle": idle,
        "targets": targets,
        "total": less_idle(_total(targets), idle),
        "exactly_once": all(t["exactly_once"] for t in targets.values()),
    }


def _total(targets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every target's figures added up (they ran one after the other)."""
    calls: dict[str, int] = {}
    for target in targets.values():
        for name, count in target["commands_by_name"].items():
            calls[name] = calls.get(name, 0) + count
    added = {
        key: sum(t[key] for t in targets.values())
        for key in ("records", "units", "seconds", "redis_cpu_seconds", "peak_bytes")
    }
    return figures(
        added["records"],
        added["units"],
        added["seconds"],
        calls,
        added["redis_cpu_seconds"],
        added["peak_bytes"],
    )


def _line(name: str, t: dict[str, Any]) -> str:
    once = f"  {'yes' if t['exactly_once'] else 'NO'}" if "exactly_once" in t else ""
    return (
        f"  {name:<16} {t['records']:>9,} {t['units']:>6,} {t['seconds']:>7.1f} "
        f"{t['records_per_second']:>8,} {t['units_per_second']:>8.1f} "
        f"{t['commands_per_unit']:>9.1f} {t['commands_per_unit_less_idle']:>9.1f} "
        f"{t['commands_per_record']:>8.3f} {t['redis_cpu_seconds']:>6.2f} "
        f"{t['redis_cpu_ms_per_unit']:>8.2f} {t['redis_cpu_ms_per_unit_less_idle']:>8.2f} "
        f"{t['peak_bytes_per_staged_record']:>8.1f}{once}"
    )


HEADER = (
    f"  {'target':<16} {'records':>9} {'units':>6} {'s':>7} {'rec/s':>8} {'units/s':>8} "
    f"{'cmd/unit':>9} {'less idle':>9} {'cmd/rec':>8} {'CPU s':>6} {'CPU ms/u':>8} "
    f"{'less idle':>8} {'peak B/rec':>8}  once"
)


def report(result: dict[str, Any]) -> list[str]:
    idle = result["idle"]
    idle_top = ", ".join(f"{n} {c}" for n, c in idle["top_commands_per_second"].items())
    lines = [
        f"Redis cost at scale ({result['worker_processes']} worker processes under "
        f"{result['node_names']} node names, one Redis, every target one after the other"
        f"{'; units as large as each vendor allows' if result['largest_units'] else ''})",
        HEADER,
        *(_line(name, t) for name, t in result["targets"].items()),
        _line("all targets", result["total"]) + f"  {'yes' if result['exactly_once'] else 'NO'}",
        f"  idle: {idle['commands_per_second']} commands/s, {idle['cpu_ms_per_second']} ms of "
        f"Redis CPU a second ({idle_top})",
        "  most sent per unit:",
    ]
    for name, t in [*result["targets"].items(), ("all targets", result["total"])]:
        top = ", ".join(f"{n} {c}" for n, c in t["top_commands_per_unit"].items())
        cut = f" [{t['cut']}]" if t.get("cut") else ""
        lines.append(f"    {name}: {top}{cut}")
    for name, t in result["targets"].items():
        if not t["exactly_once"]:
            lines.append(
                f"  {name}: NOT exactly once: {t['committed']:,} of {t['records']:,} "
                f"committed, {t['committed_twice']:,} twice, jobs not succeeded: "
                f"{t['jobs_not_succeeded'][:5]}"
            )
    return lines


def run_in_subprocess(
    records: int = DEFAULT_RECORDS,
    nodes: int = NODES,
    idle_seconds: float = IDLE_SECONDS,
    largest: bool = False,
) -> dict[str, Any]:
    """Run this benchmark in a fresh interpreter (workers.app reads REDIS_URL once, on first
    use) and return its figures; its progress lines go to stderr as they come."""
    flags = {"--records": records, "--nodes": nodes, "--idle-seconds": idle_seconds}
    command = [sys.executable, "-m", "bench.redis_cost", "--json"]
    command += ["--largest-units"] if largest else []
    command += [str(part) for flag, value in flags.items() for part in (flag, value)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if not lines or not lines[-1].startswith("{"):
        raise RuntimeError(f"bench.redis_cost exited {done.returncode} without its figures")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_cost")
    parser.add_argument(
        "--records",
        type=int,
        default=DEFAULT_RECORDS,
        help="records in all, split evenly across the targets",
    )
    parser.add_argument(
        "--nodes",
        type=int,
        default=NODES,
        help=f"node names, {PROCESSES_PER_NODE} worker processes each",
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=IDLE_SECONDS, help="the idle measurement's length"
    )
    parser.add_argument(
        "--largest-units",
        action="store_true",
        help="units as large as each vendor allows (the ceiling's sizes), not many small ones",
    )
    parser.add_argument("--json", action="store_true", help="only the figures, as one JSON line")
    args = parser.parse_args(argv)
    env.stop_on_sigterm()
    print(f"scale run, each target as it ends:\n{HEADER}", file=sys.stderr, flush=True)
    result = measure(args.records, args.nodes, args.idle_seconds, args.largest_units)
    if not args.json:
        print("\n".join(report(result)))
    print(json.dumps(result, separators=(",", ":")))
    return 0 if result["exactly_once"] else 1


if __name__ == "__main__":
    sys.exit(main())
