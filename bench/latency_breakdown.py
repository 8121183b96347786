"""Where one record's added time goes: timestamps along its path, publish to job finished.

Runs what bench/one_record.py runs (a one-record job, no --operation-id, against the
SourcingData simulator over real HTTP, an idle worker) and watches it three ways at once:

  - Redis's MONITOR: every command with Redis's own timestamp (microseconds) and the
    client that sent it, so the producer's staging, the message's LPUSH, the worker's
    claim, its notes, its finish and the bench's poll each have a time on one clock;
  - the simulator: when the vendor request arrived and when its answer went back
    (latency included), on the same machine's clock;
  - the producer: when publish() began and returned, and when the finished job was seen.

Each round's marks are made relative to publish()'s start; the report gives the median
(and the 90th percentile) of each step's length over the rounds, and the Redis round
trips each side made per unit.

    python -m bench.latency_breakdown [--rounds 40] [--concurrency 8] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench import env
from bench.one_record import percentile
from bench.round_trips import Describe, Event, Monitor, own_ports

_ID = re.compile(r"[0-9a-f]{16}(:\d+)?")  # a job id (and unit number) in a key


def script_names() -> dict[str, str]:
    """The lease scripts' SHA1s (as EVALSHA names them) and their names."""
    from workers import leases

    scripts = {"claim": leases._CLAIM, "remember": leases._REMEMBER, "finish": leases._FINISH,
               "renew": leases._RENEW, "acquire_slot": leases._ACQUIRE_SLOT,
               "hand_on_slot": leases._HAND_ON_SLOT}  # fmt: skip
    return {hashlib.sha1(text.encode()).hexdigest(): name for name, text in scripts.items()}


def describer(names: dict[str, str]) -> Describe:
    """A command's detail: a lease script by its name, else the command and its key with
    ids starred (so the same step of every round reads the same)."""

    def describe(name: str, words: list[str]) -> str:
        if name == "EVALSHA" and len(words) > 1:
            return "script " + names.get(words[1], words[1][:8])
        if len(words) > 1:
            return f"{name} {_ID.sub('*', words[1].strip(chr(34)))[:40]}"
        return name

    return describe


class TimedVendor:
    """The simulator, noting when each request came in and when its answer left."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.requests: list[tuple[float, float, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        came = time.time()
        response: httpx.Response = self.sim(request)
        self.requests.append((came, time.time(), request.url.path.rsplit("/", 1)[-1]))
        return response


@contextmanager
def site(concurrency: int, latency: float) -> Iterator[tuple[Any, TimedVendor, str, int]]:
    """A private Redis, the simulator (as bench/sourcing_throughput.py sets it up) and one
    worker; yields the worker app module, the timed simulator, Redis's URL and the worker's
    process group."""
    from bench.sourcing_throughput import POLL_INTERVAL_SECONDS, PROCESSING_SECONDS, _worker_app
    from simulators.http import serve
    from simulators.sourcing_data import SourcingDataSimulator

    sim = SourcingDataSimulator()
    sim.configure(token=env.TOKEN, agents={env.AGENT}, latency_seconds=latency,
                  processing_seconds=PROCESSING_SECONDS, fault_rate=0.0)  # fmt: skip
    vendor = TimedVendor(sim)
    with ExitStack() as stack:
        url = stack.enter_context(env.private_redis())
        base_url = stack.enter_context(serve(vendor)).url + "/api/asol/ds"
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="importq-bench-")))
        os.environ.update(REDIS_URL=url, IMPORTQ_HOME=str(tmp / "home"), IMPORTQ_LOG_FORMAT="json",
                          SOURCING_DATA_URL=base_url, SOURCING_DATA_TOKEN=env.TOKEN,
                          SOURCING_DATA_AGENT_ID=env.AGENT,
                          SOURCING_DATA_POLL_INTERVAL=str(POLL_INTERVAL_SECONDS),
                          SOURCING_DATA_ITEMS_IN_FLIGHT=str(concurrency))  # fmt: skip
        app = _worker_app(url)
        worker = stack.enter_context(env.worker(dict(os.environ), tmp / "worker.log", concurrency))
        yield app, vendor, url, worker.process.pid


def one_round(app: Any, number: int, poll: float) -> dict[str, float]:
    """Publish one record and wait for its job to finish; the producer's own marks."""
    from producers.publish import locate, publish
    from workers.jobs import JobStore

    store = JobStore(app.redis_client())
    began, cpu = time.time(), time.thread_time()
    job_id = publish("sourcing_data", locate([env.sample_record(9_500_000 + number)]), {},
                     settings=app.settings(), store=store,
                     publish_unit=app.publish_unit)  # fmt: skip
    published, cpu = time.time(), time.thread_time() - cpu
    while not (job := store.get(job_id)) or not job.finished:
        time.sleep(poll)
    seen = time.time()
    assert job.state == "succeeded", job
    return {"began": began, "published": published, "seen": seen, "publish_cpu": cpu}


def marks(
    producer: dict[str, float],
    events: list[Event],
    requests: list[tuple[float, float, str]],
    mine: set[int],
) -> dict[str, float]:
    """The round's marks along the path, in ms after publish() began."""
    began = producer["began"]
    inside = [e for e in events if began <= e[0] <= producer["seen"]]
    worker = [e for e in inside if e[1] not in mine]
    own = [e for e in inside if e[1] in mine]
    found: dict[str, float] = {}

    def first(where: list[Event], detail: str, after: float = 0.0) -> float | None:
        return next((e[0] for e in where if e[3].startswith(detail) and e[0] >= after), None)

    found["producer first command"] = own[0][0] if own else began
    lpush = first(own, "LPUSH")
    if lpush is not None:
        found["message LPUSH"] = lpush
    claim = first(worker, "script claim")
    if claim is not None:
        found["claim"] = claim
        # kombu's delivery bookkeeping in the worker's main process, before the pool
        unacked = [e[0] for e in worker if e[0] <= claim and e[2] in ("MULTI", "ZADD", "HSET")]
        if unacked:
            found["worker's first command (unacked)"] = unacked[0]
        found["note before the vendor call"] = first(worker, "script remember", claim) or claim
    if requests:
        found["vendor request in"] = requests[0][0]
        found["vendor answer out"] = requests[-1][1]
    after = requests[-1][1] if requests else 0.0
    note = first(worker, "script remember", after)
    if note is not None:
        found["note of the item id"] = note
    finish = first(worker, "script finish")
    if finish is not None:
        found["finish"] = finish
        after_finish = [e for e in worker if e[0] > finish]
        if after_finish:
            found["job-finished reads"] = after_finish[0][0]
            found["worker's last command"] = after_finish[-1][0]
        seen = [e[0] for e in own if e[0] > finish and e[2] == "HGETALL"]
        if seen:
            found["bench's read that saw it"] = seen[0]
    found.update(extra_marks(began, producer["seen"]))
    found["published (returned)"] = producer["published"]
    found["seen by the bench"] = producer["seen"]
    return {name: round((moment - began) * 1000, 2) for name, moment in found.items()}


def extra_marks(began: float, seen: float) -> dict[str, float]:
    """Marks a temporarily instrumented worker wrote (epoch seconds and a name a line) to
    the file IMPORTQ_BENCH_MARKS names, if set."""
    path = os.environ.get("IMPORTQ_BENCH_MARKS")
    if not path or not os.path.exists(path):
        return {}
    found: dict[str, float] = {}
    with open(path) as lines:
        for line in lines:
            when, _, name = line.strip().partition(" ")
            if began <= float(when) <= seen:
                found.setdefault(name, float(when))
    return found


def direct_round(client: httpx.Client, vendor: TimedVendor, number: int) -> dict[str, float]:
    """One record sent straight to the vendor (bench/one_record.py's direct): its marks, in
    ms after the send began."""
    from bench.sourcing_throughput import POLL_INTERVAL_SECONDS, send_item

    vendor.requests.clear()
    began = time.time()
    send_item(client, [env.sample_record(9_600_000 + number)], 1, POLL_INTERVAL_SECONDS)
    returned = time.time()
    came, left, _ = vendor.requests[0]
    moments = {"vendor request in": came, "vendor answer out": left, "returned": returned}
    return {name: round((moment - began) * 1000, 2) for name, moment in moments.items()}


def measure(rounds: int, concurrency: int, latency: float, poll: float) -> dict[str, Any]:
    from bench.sourcing_throughput import vendor_client

    direct: list[dict[str, float]] = []
    with (
        site(concurrency, latency) as (app, vendor, url, group),
        vendor_client(os.environ["SOURCING_DATA_URL"]) as client,
    ):
        direct_round(client, vendor, -1)
        for number in range(3):  # warm up: imports, connections, the pool's first tasks
            one_round(app, 1_000 + number, poll)
        with Monitor(url, describer(script_names())) as monitor:
            results = []
            worker_cpu = group_cpu_seconds(group)
            for number in range(rounds):
                direct.append(direct_round(client, vendor, number))
                vendor.requests.clear()
                start = len(monitor.seen)
                producer = one_round(app, number, poll)
                time.sleep(0.05)  # the worker's ack and the monitor's last lines
                results.append((producer, monitor.seen[start:], list(vendor.requests)))
            worker_cpu = group_cpu_seconds(group) - worker_cpu
            mine = own_ports()
    per_round = [marks(p, events, requests, mine) for p, events, requests in results]
    steps = sorted({name for m in per_round for name in m}, key=lambda n: _median(per_round, n))
    table = {
        name: {"p50": _median(per_round, name), "p90": _share(per_round, name, 0.9)}
        for name in steps
    }
    table.update({f"direct: {name}": {"p50": _median(direct, name),
                                       "p90": _share(direct, name, 0.9)}
                  for name in direct[0]})  # fmt: skip
    commands = _commands(results, mine)
    cpu = {"worker_ms_per_unit": round(worker_cpu / rounds * 1000, 2),
           "publish_ms_p50": round(percentile([p["publish_cpu"] for p, _, _ in results],
                                              0.5) * 1000, 2)}  # fmt: skip
    return {"rounds": rounds, "concurrency": concurrency, "latency_s": latency, "cpu": cpu,
            "marks_ms": table, "commands_per_unit": commands,
            "one_round": _timeline(*results[len(results) // 2], mine)}  # fmt: skip


def _timeline(
    producer: dict[str, float],
    events: list[Event],
    requests: list[tuple[float, float, str]],
    mine: set[int],
) -> list[str]:
    """One round, every Redis command and vendor request, in ms after publish() began."""
    began = producer["began"]
    lines = [(when, f"{'producer' if port in mine else f'worker:{port}'} {detail}")
             for when, port, _, detail in events]  # fmt: skip
    for came, left, what in requests:
        lines += [(came, f"vendor {what} in"), (left, f"vendor {what} out")]
    lines += [(producer["published"], "publish() returned"), (producer["seen"], "bench saw it")]
    return [f"{(when - began) * 1000:8.2f} {what}" for when, what in sorted(lines)]


def group_cpu_seconds(group: int) -> float:
    """CPU seconds (user + system) of every live process in process group `group` (Linux)."""
    ticks = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:  # pgrp; utime and stime follow at 11 and 12
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _median(rounds: list[dict[str, float]], name: str) -> float:
    return _share(rounds, name, 0.5)


def _share(rounds: list[dict[str, float]], name: str, share: float) -> float:
    values = [m[name] for m in rounds if name in m]
    return round(percentile(values, share), 2) if values else float("nan")


def _commands(
    results: list[tuple[dict[str, float], list[Event], Any]], mine: set[int]
) -> dict[str, dict[str, float]]:
    """Commands each side sent per unit (inside a round), MULTI..EXEC counted as sent."""
    counts: dict[str, dict[str, int]] = {"producer": {}, "worker": {}}
    for producer, events, _ in results:
        for when, port, _, detail in events:
            if not producer["began"] <= when <= producer["seen"]:
                continue
            if port in mine and when > producer["published"]:
                side = "bench poll"
            else:
                side = "producer" if port in mine else "worker"
            counts.setdefault(side, {})
            counts[side][detail] = counts[side].get(detail, 0) + 1
    return {
        side: {k: round(v / len(results), 2) for k, v in sorted(c.items(), key=lambda x: -x[1])}
        for side, c in counts.items()
    }


def report(result: dict[str, Any]) -> list[str]:
    lines = [f"One record's path ({result['rounds']} rounds, -c {result['concurrency']}, "
             f"vendor latency {result['latency_s'] * 1000:.0f} ms): ms after publish() began",
             f"  CPU: the worker (main process and pool) {result['cpu']['worker_ms_per_unit']}"
             f" ms a unit; publish() {result['cpu']['publish_ms_p50']} ms (p50)",
             f"  {'mark':<36} {'p50':>8} {'p90':>8}"]  # fmt: skip
    for name, figure in result["marks_ms"].items():
        lines.append(f"  {name:<36} {figure['p50']:>8.2f} {figure['p90']:>8.2f}")
    for side, counts in result["commands_per_unit"].items():
        shown = ", ".join(f"{k} {v:g}" for k, v in counts.items())
        lines.append(f"  {side} commands per unit: {shown}")
    return [*lines, "  one round:", *(f"  {line}" for line in result["one_round"])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency_breakdown")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--poll", type=float, default=0.001)
    args = parser.parse_args(argv)
    env.stop_on_sigterm()
    result = measure(args.rounds, args.concurrency, args.latency, args.poll)
    print("\n".join(report(result)))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
