"""SourcingData throughput: importq end to end vs a plain httpx loop, a Celery peer, the limit.

One run measures side by side, against the same simulator served over real HTTP
(latency per request, a short processing time, no faults) and the same records
cut into the same queue items:

  importq   a private Redis and one `celery -A workers.app worker -Q sourcing_data -c C`;
            timed from the start of publish() until the job is finished.
  baseline  C threads, each with its own httpx.Client, sending each queue item as
            start + appends (500 records per request) and polling its status until
            Success, exactly as the sink does; the items are cut before the clock starts.
  peer      a plain Celery task per queue item carrying its records in the message
            (bench/peer.py; `-c C`, the same private Redis): what a team writes without
            importq; timed from the first message sent until every task's result is in.
  limit     C * 500 / latency records/s: C requests in flight all the time, no other cost.

Every run must commit every record exactly once (the simulator's ledger says so).

    python -m bench.sourcing_throughput [--records N] [--concurrency C] [--latency-rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

from bench import env

# The setup: 200,000 records of ~300 bytes, 8 concurrent (items of 4,000 records).
DEFAULT_RECORDS = 200_000
DEFAULT_CONCURRENCY = 8
DEFAULT_REPEAT = 3
LATENCY_SECONDS = 0.05
PROCESSING_SECONDS = 0.01
POLL_INTERVAL_SECONDS = 0.02
JOB_TIMEOUT_SECONDS = 600.0

Record = dict[str, Any]


@dataclass
class RunResult:
    """One timed run and what the simulator's ledger says about it."""

    name: str
    records: int
    seconds: float
    committed_records: int
    distinct_committed: int
    duplicates: int
    requests: int
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    @property
    def exactly_once(self) -> bool:
        return (
            self.committed_records == self.records
            and self.distinct_committed == self.records
            and self.duplicates == 0
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["records_per_second"] = round(self.records_per_second, 1)
        data["exactly_once"] = self.exactly_once
        data["seconds"] = round(self.seconds, 3)
        data["phases"] = {k: round(v, 3) for k, v in self.phases.items()}
        return data


def _ledger_result(
    name: str, records: int, seconds: float, ledger: dict[str, Any], phases: dict[str, float]
) -> RunResult:
    return RunResult(
        name=name,
        records=records,
        seconds=seconds,
        committed_records=int(ledger["committed_records"]),
        distinct_committed=len(ledger["commits"]),
        duplicates=int(ledger["duplicates"]),
        requests=int(ledger["requests"]),
        phases=phases,
    )


# -- the plain httpx baseline -----------------------------------------------------------------


def vendor_client(base_url: str) -> httpx.Client:
    """An httpx.Client on the simulator's API, as a team's own loop would hold one."""
    from workers.targets.sourcing_data.client import API

    return httpx.Client(
        base_url=base_url.rstrip("/") + API,
        headers={"Authorization": f"Bearer {env.TOKEN}"},
        timeout=httpx.Timeout(60.0, connect=10.0),
    )


def send_item(
    client: httpx.Client, records: list[Record], per_request: int, poll_interval: float
) -> None:
    """One queue item the way the sink sends it: start + appends, then poll until Success.

    The httpx baseline, the Celery peer and the one-record latency all send with this.
    """
    chunks = [records[i : i + per_request] for i in range(0, len(records), per_request)]
    params = {"agentId": env.AGENT}
    body = _post(
        client,
        "/start",
        {**params, "operationId": env.OPERATION},
        chunks[0],
        incomplete=len(chunks) > 1,
    )
    item_id = str(body["queueItemId"])
    for number, chunk in enumerate(chunks[1:], start=2):
        last = number == len(chunks)
        body = _post(client, f"/append/{item_id}", params, chunk, incomplete=not last)
    interval = poll_interval
    while body["status"] != "Success":
        if body["status"] in ("Failed", "Canceled"):
            raise RuntimeError(f"queue item {item_id} ended {body['status']}: {body}")
        time.sleep(interval)
        interval = min(interval * 1.5, 5.0)
        response = client.get(f"/status/{item_id}", params=params)
        response.raise_for_status()
        body = response.json()


def _post(
    client: httpx.Client,
    path: str,
    params: dict[str, str],
    chunk: list[Record],
    *,
    incomplete: bool,
) -> dict[str, Any]:
    response = client.post(path, params=params, json={"items": chunk, "incompleteData": incomplete})
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


class Baseline:
    """Send queue items the way the sink does, from C threads with one httpx.Client each."""

    def __init__(self, base_url: str, records_per_request: int, poll_interval: float) -> None:
        self.base_url = base_url
        self.per_request = records_per_request
        self.poll_interval = poll_interval

    def run(self, items: list[list[Record]], concurrency: int) -> list[float]:
        """Send every item; the seconds each item took, start to Success."""
        item_seconds: list[float] = []
        work: queue.SimpleQueue[list[Record]] = queue.SimpleQueue()
        for item in items:
            work.put(item)
        errors: list[BaseException] = []

        def loop() -> None:
            try:
                with vendor_client(self.base_url) as client:
                    while not errors:
                        try:
                            item = work.get_nowait()
                        except queue.Empty:
                            return
                        started = time.perf_counter()
                        send_item(client, item, self.per_request, self.poll_interval)
                        item_seconds.append(time.perf_counter() - started)
            except BaseException as error:  # surfaced by run() after the join
                errors.append(error)

        threads = [
            threading.Thread(target=loop, name=f"baseline-{n}", daemon=True)
            for n in range(concurrency)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise RuntimeError(f"the httpx baseline failed: {errors[0]!r}") from errors[0]
        return item_seconds


# -- importq ----------------------------------------------------------------------------------


def _worker_app(redis_url: str) -> ModuleType:
    """workers.app, used only now: it reads REDIS_URL and the limits once, on first use."""
    chosen = getattr(sys.modules.get("workers.app"), "_state", {}).get("redis_choice")
    if chosen is not None and chosen.url != redis_url:
        raise RuntimeError("workers.app picked its Redis before the benchmark set REDIS_URL")
    from workers import app

    return app


def run_importq(
    app: ModuleType,
    records: list[Record],
    poll: float = 0.005,
    params: dict[str, str] | None = None,
) -> tuple[float, dict[str, float]]:
    """Publish `records` as one job and wait until it is finished (read every `poll` s).

    The seconds from publish() to the finished job, and where they went. `params`: the
    job's (default: one --operation-id shared by its units, as the baselines send).
    """
    from producers.publish import locate, publish
    from workers.jobs import JobStore

    store = JobStore(app.redis_client())
    started = time.perf_counter()
    job_id = publish(
        "sourcing_data",
        locate(records),
        {"operation_id": env.OPERATION} if params is None else params,
        settings=app.settings(),
        store=store,
        publish_unit=app.publish_unit,
    )
    published = time.perf_counter()
    deadline = published + JOB_TIMEOUT_SECONDS
    while True:
        job = store.get(job_id)
        if job is not None and job.finished:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"job {job_id} did not finish in {JOB_TIMEOUT_SECONDS:.0f} s: {job}")
        time.sleep(poll)
    finished = time.perf_counter()
    if job.state != "succeeded" or job.records_delivered != len(records):
        raise RuntimeError(f"job {job_id} ended {job.state}: {job.as_dict()}")
    phases = {"publish": published - started, "drain": finished - published}
    phases.update(_unit_spans(store, job_id, started_wall=time.time() - (finished - started)))
    return finished - started, phases


def _unit_spans(store: Any, job_id: str, started_wall: float) -> dict[str, float]:
    """Where the worker side spent its time, from the units' own timestamps (if kept)."""
    finished = [
        float(unit["finished_at"]) for _, unit in store.units(job_id) if unit.get("finished_at")
    ]
    if not finished:
        return {}
    return {
        "first_unit_done": min(finished) - started_wall,
        "last_unit_done": max(finished) - started_wall,
    }


def queue_items(settings: Any, records: list[Record]) -> tuple[Any, list[list[Record]]]:
    """SourcingData's limits and the queue items importq cuts `records` into.

    Cut before the clock starts: the baseline and the peer are the HTTP work alone, with
    nothing to read, validate or stage.
    """
    from producers.publish import locate
    from workers.targets.base import batched
    from workers.targets.sourcing_data.limits import SourcingDataLimits

    limits = SourcingDataLimits.from_settings(settings)
    return limits, list(batched(locate(records), limits.records_per_item, limits.bytes_per_item))


# -- the measurement --------------------------------------------------------------------------


_TASK_SECONDS = re.compile(rb"\] succeeded in ([0-9.]+)s")


def _task_seconds(log: bytes) -> list[float]:
    """How long each task ran, from celery's "Task ... succeeded in 0.61s" log lines."""
    return [float(m) for m in _TASK_SECONDS.findall(log)]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def measure(
    records: int = DEFAULT_RECORDS,
    concurrency: int = DEFAULT_CONCURRENCY,
    repeat: int = DEFAULT_REPEAT,
    keep_log: Path | None = None,
    latency_rounds: int = 0,
) -> dict[str, Any]:
    """Run the baseline, the peer and importq in turn, `repeat` times; the best of each counts.

    Every run, not only the best, must commit every record exactly once. `keep_log`
    receives a copy of the worker's log. With `latency_rounds`, the one-record latency
    (bench.one_record) runs afterwards against the same simulator and worker.
    """
    from bench import one_record, peer
    from simulators.http import serve
    from simulators.sourcing_data import SourcingDataSimulator

    sim = SourcingDataSimulator()
    sim.configure(
        token=env.TOKEN,
        agents={env.AGENT},
        latency_seconds=LATENCY_SECONDS,
        processing_seconds=PROCESSING_SECONDS,
        fault_rate=0.0,
    )
    data = env.sample_records(records)
    with ExitStack() as stack:
        redis_url = stack.enter_context(env.private_redis())
        server = stack.enter_context(serve(sim))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="importq-bench-")))
        base_url = f"{server.url}/api/asol/ds"
        os.environ.update(
            {
                "REDIS_URL": redis_url,
                "IMPORTQ_HOME": str(tmp / "home"),
                "IMPORTQ_LOG_FORMAT": "json",
                "SOURCING_DATA_URL": base_url,
                "SOURCING_DATA_TOKEN": env.TOKEN,
                "SOURCING_DATA_AGENT_ID": env.AGENT,
                "SOURCING_DATA_POLL_INTERVAL": str(POLL_INTERVAL_SECONDS),
                "SOURCING_DATA_ITEMS_IN_FLIGHT": str(concurrency),
            }
        )
        app = _worker_app(redis_url)
        log_path = tmp / "worker.log"
        stack.enter_context(env.worker(dict(os.environ), log_path, concurrency))
        peer_env = {**os.environ, **peer.use_broker(redis_url)}
        stack.enter_context(peer.worker(peer_env, tmp / "peer.log", concurrency))

        limits, items = queue_items(app.settings(), data)
        baseline = Baseline(base_url, limits.records_per_request, limits.poll_interval_seconds)
        base_runs: list[RunResult] = []
        importq_runs: list[RunResult] = []
        peer_runs: list[RunResult] = []
        # Warm-up, uncounted: the pool processes' first tasks import and connect.
        warm = [[record] for record in env.sample_records(2 * concurrency)]
        peer.run(warm, limits.records_per_request, limits.poll_interval_seconds)
        run_importq(app, env.sample_records(2 * concurrency))
        for _ in range(max(1, repeat)):
            sim.reset()
            started = time.perf_counter()
            item_seconds = baseline.run(items, concurrency)
            seconds = time.perf_counter() - started
            phases = {"mean_item": _mean(item_seconds)}
            base_runs.append(_ledger_result("baseline", records, seconds, sim.ledger(), phases))
            sim.reset()
            seconds = peer.run(items, limits.records_per_request, limits.poll_interval_seconds)
            peer_runs.append(_ledger_result("peer", records, seconds, sim.ledger(), {}))
            sim.reset()
            log_offset = log_path.stat().st_size
            seconds, phases = run_importq(app, data)
            time.sleep(0.1)  # the pool's last "succeeded in" lines reach the log
            with log_path.open("rb") as log:
                log.seek(log_offset)
                phases["mean_item"] = _mean(_task_seconds(log.read()))
            importq_runs.append(_ledger_result("importq", records, seconds, sim.ledger(), phases))
        sim.reset()
        latency = (
            one_record.measure(
                app, sim, base_url, limits.poll_interval_seconds, LATENCY_SECONDS, latency_rounds
            )
            if latency_rounds
            else None
        )
        if keep_log is not None:
            keep_log.write_bytes(log_path.read_bytes())

    base_result = min(base_runs, key=lambda run: run.seconds)
    importq_result = min(importq_runs, key=lambda run: run.seconds)
    peer_result = min(peer_runs, key=lambda run: run.seconds)
    every_run_once = all(run.exactly_once for run in base_runs + importq_runs + peer_runs)
    limit = concurrency * limits.records_per_request / LATENCY_SECONDS
    return {
        "records": records,
        "concurrency": concurrency,
        "latency_seconds": LATENCY_SECONDS,
        "processing_seconds": PROCESSING_SECONDS,
        "records_per_item": limits.records_per_item,
        "importq": importq_result.as_dict(),
        "baseline": base_result.as_dict(),
        "peer": peer_result.as_dict(),
        "limit_records_per_second": limit,
        "importq_vs_baseline": round(
            importq_result.records_per_second / base_result.records_per_second, 3
        ),
        "importq_vs_peer": round(
            importq_result.records_per_second / peer_result.records_per_second, 3
        ),
        "peer_vs_baseline": round(
            peer_result.records_per_second / base_result.records_per_second, 3
        ),
        "importq_vs_limit": round(importq_result.records_per_second / limit, 3),
        "baseline_vs_limit": round(base_result.records_per_second / limit, 3),
        "repeat": len(base_runs),
        "importq_seconds_all": [round(run.seconds, 3) for run in importq_runs],
        "baseline_seconds_all": [round(run.seconds, 3) for run in base_runs],
        "peer_seconds_all": [round(run.seconds, 3) for run in peer_runs],
        "one_record": latency,
        "exactly_once": every_run_once,
    }


def report(result: dict[str, Any]) -> list[str]:
    """The throughput table as lines of text."""
    lines = [
        f"SourcingData throughput: {result['records']:,} records, concurrency "
        f"{result['concurrency']}, latency {result['latency_seconds'] * 1000:.0f} ms/request",
        f"  {'run':<10} {'seconds':>8} {'records/s':>10} {'requests':>9} {'committed':>10} "
        f"{'dups':>5}  exactly once",
    ]
    for name in ("importq", "baseline", "peer"):
        run = result[name]
        lines.append(
            f"  {name:<10} {run['seconds']:>8.2f} {run['records_per_second']:>10,.0f} "
            f"{run['requests']:>9} {run['committed_records']:>10,} {run['duplicates']:>5}  "
            f"{'yes' if run['exactly_once'] else 'NO'}"
        )
    lines.append(f"  {'limit':<10} {'':>8} {result['limit_records_per_second']:>10,.0f}")
    for name in ("importq", "baseline"):
        phases = result[name]["phases"]
        shown = ", ".join(f"{k} {v:.2f} s" for k, v in phases.items())
        lines.append(f"  {name} phases: {shown}")
    lines.append(
        f"  importq/baseline {result['importq_vs_baseline']:.2f}   "
        f"importq/limit {result['importq_vs_limit']:.2f}   "
        f"baseline/limit {result['baseline_vs_limit']:.2f}   "
        f"importq/peer {result['importq_vs_peer']:.2f}"
    )
    if result["one_record"] is not None:
        from bench import one_record

        lines += ["", *one_record.report(result["one_record"])]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sourcing_throughput", description=None)
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument(
        "--repeat", type=int, default=DEFAULT_REPEAT, help="runs of each; best counts"
    )
    parser.add_argument("--keep-log", type=Path, default=None, help="copy the worker log here")
    parser.add_argument(
        "--latency-rounds", type=int, default=0, help="one-record latency rounds (0: none)"
    )
    args = parser.parse_args(argv)
    env.stop_on_sigterm()
    result = measure(
        args.records, args.concurrency, args.repeat, args.keep_log, args.latency_rounds
    )
    print("\n".join(report(result)))
    print(json.dumps(result))
    return 0 if result["exactly_once"] else 1


if __name__ == "__main__":
    sys.exit(main())
