"""The producer's own cost: `publish` of N SourcingData records from a JSON Lines file.

Runs against a private Redis with no worker. Prints records/s of the whole publish and
the time until the first unit message was sent; with --profile, the top of cProfile.

    python -m bench.producer_profile [--records 200000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import env


def run(records: int, profile: bool, once: bool = False) -> dict[str, Any]:
    """`once`: read the file as a one-pass stream (all staged, then sent) instead of twice
    (checked, then each unit sent as it is staged)."""
    with env.private_redis() as url, tempfile.TemporaryDirectory() as tmp:
        os.environ["REDIS_URL"] = url
        os.environ.setdefault("SOURCING_DATA_AGENT_ID", env.AGENT)
        os.environ["IMPORTQ_HOME"] = str(Path(tmp) / "home")
        from producers.publish import publish
        from producers.readers import read_records, records_of
        from workers import app
        from workers.jobs import JobStore

        path = env.write_jsonl(Path(tmp) / "records.jsonl", records)
        store = JobStore(app.redis_client())
        store.redis.ping()
        sent: list[float] = []

        def publish_unit(unit_id: str, target: str, countdown: float | None) -> None:
            sent.append(time.perf_counter())
            app.publish_unit(unit_id, target, countdown)

        profiler = cProfile.Profile() if profile else None
        started, cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        job_id = publish(
            "sourcing_data",
            (read_records if once else records_of)(path, target="sourcing_data"),
            {"operation_id": env.OPERATION},
            settings=app.settings(),
            store=store,
            publish_unit=publish_unit,
        )
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
        job = store.get(job_id)
        assert job is not None and job.records_total == records, job
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
        return {
            "records": records,
            "units": job.units_total,
            "seconds": round(seconds, 3),
            "records_per_second": round(records / seconds),
            "cpu_seconds": round(cpu, 3),
            "first_unit_seconds": round(sent[0] - started, 3),
            "redis_commands": _commands(store.redis),
        }


def _commands(client: Any) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.producer_profile")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--once", action="store_true", help="read the file as a stream")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.records, args.profile, args.once)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
