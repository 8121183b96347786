"""Blue's single import slot under a queue of imports: how much of the time is it busy?

Twenty imports are queued at once against the Blue simulator (served over real
HTTP) whose prepare takes N seconds, with one and then three `blue` worker
processes (concurrency 1 each, a private Redis). From the simulator's ledger:

  busy share   time a transaction was open / time from the first RegisterImport
               to the last FinalizeImport (goal >= 0.95)
  gap          from one FinalizeImport to the next RegisterImport: what importq adds
               between imports (task pickup, the datasource/block/current-import
               checks, and the wait of units that found the slot taken)

    python -m bench.blue_slot [--prepare N] [--imports 20] [--rows 200] [--json]

It runs in its own process (workers.app reads REDIS_URL once, on first use), so
`make bench` calls it through `run_in_subprocess()`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from statistics import mean
from typing import Any

from bench import env

DEFAULT_PREPARE = 2.0
DEFAULT_IMPORTS = 20
DEFAULT_ROWS = 200
TIMEOUT_SECONDS = 900.0


def occupancy(timeline: list[dict[str, Any]]) -> dict[str, float]:
    """Busy share of the slot and the gaps between imports, from the simulator's timeline."""
    done = sorted((t for t in timeline if t["ended_at"]), key=lambda t: t["registered_at"])
    if not done:
        return {"busy_share": 0.0, "gap_mean": 0.0, "gap_max": 0.0, "imports": 0}
    window = done[-1]["ended_at"] - done[0]["registered_at"]
    busy = sum(t["ended_at"] - t["registered_at"] for t in done)
    gaps = [b["registered_at"] - a["ended_at"] for a, b in itertools.pairwise(done)]
    return {
        "busy_share": round(busy / window, 4) if window > 0 else 1.0,
        "gap_mean": round(mean(gaps), 3) if gaps else 0.0,
        "gap_max": round(max(gaps), 3) if gaps else 0.0,
        "imports": len(done),
    }


def _run(app: Any, sim: Any, imports: int, rows: int) -> dict[str, float]:
    from producers.publish import locate, publish
    from workers.jobs import JobStore

    store = JobStore(app.redis_client())
    sim.reset()
    jobs = []
    for n in range(imports):
        records = (
            {"USER_ID": f"u{n}-{r}", "FIRST_NAME": "F", "LAST_NAME": "L", "EMAIL": "e"}
            for r in range(rows)
        )
        params = {"datasource": "Users"}
        job_id = publish("blue", locate(records), params, settings=app.settings(), store=store,
                         publish_unit=app.publish_unit)  # fmt: skip
        jobs.append(job_id)
    deadline = time.monotonic() + TIMEOUT_SECONDS
    for job_id in jobs:
        while not (job := store.get(job_id)) or not job.finished:
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} did not finish: {job}")
            time.sleep(0.05)
        if job.state != "succeeded":
            raise RuntimeError(f"job {job_id} ended {job.state}")
    ledger = sim.ledger()
    if ledger["duplicates"] or ledger["max_open"] != 1:
        raise RuntimeError(f"the slot did not hold: {ledger['max_open']} open at once")
    return occupancy(ledger["timeline"])


def measure(
    prepare: float, imports: int, rows: int, worker_counts: tuple[int, ...]
) -> dict[str, Any]:
    from simulators.blue import FAKE_API_KEY, BlueSimulator
    from simulators.http import serve

    sim = BlueSimulator()
    sim.configure(prepare_seconds=prepare)
    results: dict[str, Any] = {"prepare_seconds": prepare, "imports": imports, "rows": rows}
    with ExitStack() as stack:
        redis_url = stack.enter_context(env.private_redis())
        server = stack.enter_context(serve(sim))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="importq-bench-blue-")))
        os.environ.update({"REDIS_URL": redis_url, "IMPORTQ_HOME": str(tmp / "home"),
                           "IMPORTQ_LOG_FORMAT": "json", "BLUE_API_KEY": FAKE_API_KEY,
                           "BLUE_ENDPOINT_URL": f"{server.url}{sim.base_path}"})  # fmt: skip
        from workers import app

        for count in worker_counts:
            workers = [env.Worker(dict(os.environ), tmp / f"w{count}-{n}.log", 1, queue="blue")
                       for n in range(count)]  # fmt: skip
            try:
                for worker in workers:
                    worker.wait_ready()
                results[f"workers_{count}"] = _run(app, sim, imports, rows)
            finally:
                for worker in workers:
                    worker.stop()
    return results


def report(result: dict[str, Any]) -> list[str]:
    lines = [f"blue: {result['imports']} queued imports of {result['rows']} rows, "
             f"simulated prepare {result['prepare_seconds']:.1f} s"]  # fmt: skip
    for key, run in result.items():
        if key.startswith("workers_"):
            lines.append(
                f"  {key.split('_')[1]} worker(s): slot busy {run['busy_share']:.1%} of the time; "
                f"gap finalize -> next register mean {run['gap_mean'] * 1000:.0f} ms, "
                f"max {run['gap_max'] * 1000:.0f} ms"
            )
    return lines


def run_in_subprocess(prepare: float = DEFAULT_PREPARE) -> dict[str, Any]:
    """Run this benchmark in a fresh interpreter and return its JSON result."""
    done = subprocess.run([sys.executable, "-m", "bench.blue_slot", "--json", "--prepare",
                           str(prepare)], capture_output=True, text=True, check=True)  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def report_all(prepare: float = DEFAULT_PREPARE) -> list[str]:
    """Both Blue benchmarks for `make bench`: the slot (in its own process), the envelope."""
    from bench import blue_envelope

    return report(run_in_subprocess(prepare)) + blue_envelope.report(blue_envelope.measure())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.blue_slot", description=__doc__)
    parser.add_argument("--prepare", type=float, default=DEFAULT_PREPARE, help="seconds")
    parser.add_argument("--imports", type=int, default=DEFAULT_IMPORTS)
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args(argv)
    env.stop_on_sigterm()
    result = measure(args.prepare, args.imports, args.rows, (1, 3))
    if not args.json:
        print("\n".join(report(result)))
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
