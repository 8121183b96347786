"""`make bench`: SourcingData throughput, producer memory, Blue's slot, `importq serve` against
the CLI's staging, the replica wait's cost, the Redis cost per unit at scale; a report and one
JSON line.

    python -m bench [--records N] [--concurrency C] [--repeat R] [--sizes 100000,1000000]
                    [--serve-body-mb 1024] [--scale-records N]

The last line of the output is JSON with every figure. The exit status is 1 if a
run did not commit every record exactly once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import (
    blue_slot,
    env,
    producer_memory,
    redis_cost,
    replica_wait,
    serve_throughput,
    sourcing_throughput,
)

# Every option: its flag, type, default and help.
_OPTIONS: list[tuple[str, Callable[[str], Any], Any, str]] = [
    ("--records", int, sourcing_throughput.DEFAULT_RECORDS, "records of the throughput runs"),
    ("--concurrency", int, sourcing_throughput.DEFAULT_CONCURRENCY,
     "worker processes and baseline threads"),
    ("--repeat", int, sourcing_throughput.DEFAULT_REPEAT,
     "throughput runs of each kind; the best counts"),
    ("--sizes", producer_memory.parse_sizes, producer_memory.DEFAULT_SIZES,
     "producer memory sizes, e.g. 100000,1000000"),
    ("--serve-body-mb", int, serve_throughput.DEFAULT_BODY_MB,
     "the body streamed into importq serve while its RSS is watched (0: skip)"),
    ("--scale-records", int, redis_cost.DEFAULT_RECORDS,
     "records of the Redis cost run (16 worker processes under 4 node names)"),
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="importq benchmarks")
    for flag, kind, default, what in _OPTIONS:
        parser.add_argument(flag, type=kind, default=default, help=what)
    args = parser.parse_args(argv)
    env.stop_on_sigterm()

    started = time.monotonic()
    throughput = sourcing_throughput.measure(args.records, args.concurrency, args.repeat)
    print("\n".join(sourcing_throughput.report(throughput)), flush=True)
    print()
    memory = producer_memory.measure(args.sizes)
    print("\n".join(producer_memory.report(memory)))
    print("\n".join(["", *blue_slot.report_all()]), flush=True)
    serving = serve_throughput.measure(body_mb=args.serve_body_mb)
    print("\n".join(["", *serve_throughput.report(serving)]), flush=True)
    waits = replica_wait.measure()
    print("\n".join(["", *replica_wait.report(waits)]), flush=True)
    cost = redis_cost.run_in_subprocess(args.scale_records)
    print("\n".join(["", *redis_cost.report(cost)]), flush=True)

    small, large = memory["runs"][0], memory["runs"][-1]
    print("\nratios")
    print(f"  importq / httpx baseline     {throughput['importq_vs_baseline']:.2f}")
    print(f"  importq / latency limit      {throughput['importq_vs_limit']:.2f}")
    print(
        f"  producer peak RSS {large['records']:,} / {small['records']:,}   "
        f"{memory['peak_ratio']:.2f}"
    )
    print(f"  POST .../jobs / CLI staging  {serving['api_vs_cli']:.2f}")
    print(f"  exactly once (every run)     {'yes' if throughput['exactly_once'] else 'NO'}")
    elapsed = time.monotonic() - started
    print(f"  (benchmarks took {elapsed:.0f} s)")
    summary = {
        "sourcing_throughput": throughput,
        "producer_memory": memory,
        "serve_throughput": serving,
        "ratios": {
            "api_vs_cli_staging": serving["api_vs_cli"],
            "importq_vs_baseline": throughput["importq_vs_baseline"],
            "importq_vs_limit": throughput["importq_vs_limit"],
            "producer_peak_rss_large_vs_small": memory["peak_ratio"],
            "replica_wait_vs_none": waits["with_vs_without"],
        },
        "replica_wait": waits,
        "redis_cost": cost,
        "ok": bool(throughput["exactly_once"] and cost["exactly_once"]),
        "seconds": round(elapsed, 1),
    }
    print(json.dumps(summary, separators=(",", ":")))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
