"""Redis commands per unit, on the producer's side and the worker's, read with MONITOR.

Publishes a SourcingData job of N one-record units (no latency at the simulator) to one
worker (-c 1) and counts every command Redis received while the job ran, split by the
process that sent it: this one (the producer) or the worker. Commands from the idle
worker (kombu's BRPOP wake-ups, the reaper, consumer heartbeats) are counted too; with
enough units they are a small part per unit.

    python -m bench.round_trips [--units 40] [--target sourcing_data]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis

from bench import env

PUBLISHED = "importq-bench-published"


def own_ports() -> set[int]:
    """Local TCP ports of this process's sockets (Linux: /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


# A command as MONITOR saw it: Redis's time, the client's port, its name, and a detail.
Event = tuple[float, int, str, str]
Describe = Callable[[str, list[str]], str]


def _name_and_script(name: str, words: list[str]) -> str:
    if name in ("EVALSHA", "EVAL") and len(words) > 1:
        return f"{name} {words[1][:8]}"
    if name == "ECHO":
        return " ".join(words[1:])
    return name


class Monitor:
    """Every command Redis receives (not those run inside a script), until stopped;
    `describe(name, words)` gives each one's detail."""

    def __init__(self, url: str, describe: Describe = _name_and_script) -> None:
        self.client = redis.Redis.from_url(url)
        self.describe = describe
        self.seen: list[Event] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Monitor:
        self._thread.start()
        time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.client.ping()  # wakes the MONITOR read
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        with self.client.monitor() as monitor:  # type: ignore[no-untyped-call]
            for entry in monitor.listen():
                if self._stop.is_set():
                    return
                if entry.get("client_type") == "lua":
                    continue  # run inside a script: no round trip of its own
                port = int(entry.get("client_port") or 0)
                words = str(entry["command"]).split()
                name = words[0].upper() if words else "?"
                detail = self.describe(name, words)
                self.seen.append((float(entry["time"]), port, name, detail))


@contextlib.contextmanager
def sourcing_site(poll_seconds: float, **settings: str) -> Iterator[tuple[Any, str, Path]]:
    """A private Redis, a SourcingData simulator that answers at once and one worker (-c 1)
    with `settings`; yields the simulator, its base URL and a temporary directory."""
    from simulators.http import serve
    from simulators.sourcing_data import SourcingDataSimulator

    sim = SourcingDataSimulator()
    sim.configure(token=env.TOKEN, agents={env.AGENT}, latency_seconds=0.0,
                  processing_seconds=0.0, fault_rate=0.0)  # fmt: skip
    with ExitStack() as stack:
        url = stack.enter_context(env.private_redis())
        base_url = stack.enter_context(serve(sim)).url + "/api/asol/ds"
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="importq-bench-")))
        os.environ.update(REDIS_URL=url, IMPORTQ_HOME=str(tmp / "home"), IMPORTQ_LOG_FORMAT="json",
                          SOURCING_DATA_URL=base_url, SOURCING_DATA_TOKEN=env.TOKEN,
                          SOURCING_DATA_AGENT_ID=env.AGENT,
                          SOURCING_DATA_POLL_INTERVAL=str(poll_seconds), **settings)  # fmt: skip
        stack.enter_context(env.worker(dict(os.environ), tmp / "worker.log", 1))
        yield sim, base_url, tmp


def measure(units: int) -> dict[str, Any]:
    with sourcing_site(0.01, SOURCING_DATA_RECORDS_PER_ITEM="1"):
        from producers.publish import locate, publish
        from workers import app
        from workers.jobs import JobStore

        store = JobStore(app.redis_client())
        store.redis.ping()
        time.sleep(1.0)  # the worker's start-up traffic is over
        with Monitor(os.environ["REDIS_URL"]) as monitor:
            started = time.perf_counter()
            job_id = publish("sourcing_data", locate(env.sample_records(units)),
                             {"operation_id": env.OPERATION}, settings=app.settings(),
                             store=store, publish_unit=app.publish_unit)  # fmt: skip
            store.redis.echo(PUBLISHED)  # marks the end of the producer's part
            while not (job := store.get(job_id)) or not job.finished:
                time.sleep(0.01)
            seconds = time.perf_counter() - started
            mine = own_ports()
        assert job.state == "succeeded", job
    seen = [(port, name, d) for _, port, name, d in monitor.seen]
    marker = next(i for i, (_, _, d) in enumerate(seen) if PUBLISHED in d)
    producer = [(port, name, d) for port, name, d in seen[:marker] if port in mine]
    worker = [(port, name, d) for port, name, d in seen if port not in mine]
    return {
        "units": units,
        "seconds": round(seconds, 2),
        "producer_round_trips_per_unit": round(round_trips(producer) / units, 2),
        "worker_round_trips_per_unit": round(round_trips(worker) / units, 2),
        "producer": _per_unit(producer, units),
        "worker": _per_unit(worker, units),
        "one_unit": [d for _, _, d in _one_unit(worker)],
    }


def _one_unit(worker: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
    """The worker's commands from the middle unit's BRPOP to the next one."""
    fetches = [i for i, (_, name, _) in enumerate(worker) if name == "BRPOP"]
    middle = len(fetches) // 2
    return worker[fetches[middle] : fetches[middle + 1]] if len(fetches) > 2 else []


def round_trips(seen: list[tuple[int, str, str]]) -> int:
    """Requests, counting a MULTI ... EXEC transaction as one (pipelines without a
    transaction are counted per command: an upper bound)."""
    inside: set[int] = set()
    count = 0
    for port, name, _ in seen:
        if name == "MULTI":
            inside.add(port)
        elif name == "EXEC":
            inside.discard(port)
            count += 1
        elif port not in inside:
            count += 1
    return count


def _per_unit(seen: list[tuple[int, str, str]], units: int) -> dict[str, float]:
    counts = Counter(detail for _, _, detail in seen)
    return {k: round(v / units, 2) for k, v in counts.most_common()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.round_trips")
    parser.add_argument("--units", type=int, default=40)
    args = parser.parse_args(argv)
    env.stop_on_sigterm()
    print(json.dumps(measure(args.units), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
