"""One record's latency: publish -> the vendor's commit, through importq and sent directly.

A SourcingData simulator with no latency and no processing time, one worker (-c 1),
alternating runs: `publish_records([record])` until the simulator has committed it, and
the plain httpx loop (bench/sourcing_throughput.py) sending the same record. What importq
adds is the difference; p50 and p99 over --runs.

    python -m bench.one_record [--runs 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench import env
from bench.round_trips import sourcing_site
from bench.sourcing_throughput import _Baseline

POLL_INTERVAL_SECONDS = 0.005


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _committed(sim: Any) -> int:
    return int(sim.ledger()["committed_records"])


def measure(runs: int, keep_log: Path | None = None) -> dict[str, Any]:
    with ExitStack() as stack:
        sim, base_url, tmp = stack.enter_context(sourcing_site(POLL_INTERVAL_SECONDS))
        from producers.publish import publish_records

        baseline = _Baseline(base_url, 1000, POLL_INTERVAL_SECONDS)
        client = stack.enter_context(
            httpx.Client(base_url=baseline.url, headers={"Authorization": f"Bearer {env.TOKEN}"})
        )
        direct: list[float] = []
        queued: list[float] = []
        producer: list[float] = []
        for number in range(runs + 3):  # the first runs warm connections and scripts up
            record = env.sample_record(number)
            started = time.perf_counter()
            baseline._send_item(client, [record])  # a warm client, as the worker's is
            direct_seconds = time.perf_counter() - started
            before = _committed(sim)
            started = time.perf_counter()
            publish_records("sourcing_data", [record], {"operation_id": env.OPERATION})
            published = time.perf_counter() - started
            while _committed(sim) == before:
                time.sleep(0.0005)
            queued_seconds = time.perf_counter() - started
            if number >= 3:
                direct.append(direct_seconds)
                queued.append(queued_seconds)
                producer.append(published)
        if keep_log is not None:
            keep_log.write_bytes((tmp / "worker.log").read_bytes())
    added = [q - d for q, d in zip(queued, direct, strict=True)]
    return {
        "runs": runs,
        "direct_p50_ms": ms(statistics.median(direct)),
        "importq_p50_ms": ms(statistics.median(queued)),
        "added_p50_ms": ms(statistics.median(added)),
        "added_p99_ms": ms(_percentile(added, 0.99)),
        "importq_p99_ms": ms(_percentile(queued, 0.99)),
        "publish_call_p50_ms": ms(statistics.median(producer)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.one_record")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--keep-log", type=Path, help="copy the worker's log here")
    args = parser.parse_args(argv)
    env.stop_on_sigterm()
    print(json.dumps(measure(args.runs, args.keep_log)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
