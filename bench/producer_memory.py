"""Producer memory: peak RSS of a process publishing 100k vs 1M SourcingData records.

The parent writes a JSON Lines file of generated records (into a temporary
directory, deleted afterwards), then runs a fresh child process per size that
streams the file through `importq publish`'s path (producers.readers.records_of, read
twice: checked, then staged unit by unit) into a private Redis (no worker: the units stay
queued) and reports its peak RSS. Publishing is streaming, so the peak should
hardly depend on the input's size: a 1M/100k ratio near 1 means flat memory.

    python -m bench.producer_memory [--sizes 100000,1000000]          # the measurement
    python -m bench.producer_memory --records N --redis URL --file F  # one child (internal)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis

from bench import env

DEFAULT_SIZES = (100_000, 1_000_000)
CHILD_TIMEOUT_SECONDS = 600


def _ru_maxrss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux (bytes on macOS).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM where /proc has it, else ru_maxrss.

    On Linux, ru_maxrss survives execve: a child started by a large parent (the
    benchmark holds 40k records and a Celery app by now) reports at least the RSS
    the parent had when it forked. VmHWM belongs to the new address space, so it
    counts the producer alone.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _ru_maxrss_mb()


def json_loads_seconds(path: Path) -> float:
    """The issue's reference: the stdlib json.loads of every line of `path`, nothing else."""
    started = time.perf_counter()
    with path.open("rb") as lines:
        for line in lines:
            json.loads(line)
    return time.perf_counter() - started


def publish_file(path: Path, store: Any) -> str:
    """`importq publish` of a SourcingData JSON Lines file, in this process; the job id."""
    from producers.publish import publish
    from producers.readers import records_of
    from workers import app

    return publish(
        "sourcing_data",
        records_of(path, target="sourcing_data"),
        {"operation_id": env.OPERATION},
        settings=app.settings(),
        store=store,
        publish_unit=app.publish_unit,
    )


# -- the child: one producer process ----------------------------------------------------------


def child(records: int, redis_url: str, path: Path, rounds: int = 1) -> dict[str, Any]:
    """Publish the file at `path`; figures of this process as a dict.

    With `rounds` > 1 (the rate run), publish and json.loads take turns that many times
    and the best of each counts: one burst of other work on a shared machine then moves
    neither figure. The memory runs publish once: their peak is the first publish's.
    """
    os.environ["REDIS_URL"] = redis_url  # before workers.app first reads its settings
    os.environ.setdefault("SOURCING_DATA_AGENT_ID", env.AGENT)
    from workers import app
    from workers.jobs import JobStore

    store = JobStore(app.redis_client())
    store.redis.ping()
    after_import = _peak_rss_mb()
    timings: list[tuple[float, float]] = []
    for _ in range(max(1, rounds)):
        started = time.perf_counter()
        job_id = publish_file(path, store)
        timings.append((time.perf_counter() - started, json_loads_seconds(path)))
    seconds = min(publish for publish, _ in timings)
    loads_seconds = min(loads for _, loads in timings)
    job = store.get(job_id)
    if job is None or job.records_total != records:
        raise RuntimeError(f"job {job_id} holds {job and job.records_total} records, not {records}")
    return {
        "records": records,
        "units": job.units_total,
        "publish_seconds": round(seconds, 3),
        "records_per_second": round(records / seconds, 1),
        "json_loads_per_second": round(records / loads_seconds, 1),
        "rss_after_import_mb": round(after_import, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "ru_maxrss_mb": round(_ru_maxrss_mb(), 1),
    }


# -- the parent: one fresh child per size -----------------------------------------------------


def _run_child(
    records: int, redis_url: str, path: Path, home: Path, rounds: int = 1
) -> dict[str, Any]:
    child_env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "IMPORTQ_HOME": str(home),
        "IMPORTQ_LOG_FORMAT": "json",
        "SOURCING_DATA_AGENT_ID": env.AGENT,
    }
    command = [
        sys.executable,
        "-m",
        "bench.producer_memory",
        "--records",
        str(records),
        "--redis",
        redis_url,
        "--file",
        str(path),
        "--rounds",
        str(rounds),
    ]
    done = subprocess.run(
        command,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"the producer child for {records:,} records failed ({done.returncode}):\n"
            f"{done.stderr[-3000:]}"
        )
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def measure(sizes: tuple[int, ...] = DEFAULT_SIZES) -> dict[str, Any]:
    """Peak RSS and publish rate for each size; ratios of the largest to the smallest."""
    runs: list[dict[str, Any]] = []
    with ExitStack() as stack:
        redis_url = stack.enter_context(env.private_redis())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="importq-bench-")))
        client = redis.Redis.from_url(redis_url)
        stack.callback(client.close)
        for records in sizes:
            path = env.write_jsonl(tmp / f"sourcing_data-{records}.jsonl", records)
            try:
                run = _run_child(records, redis_url, path, tmp / "home")
                run["file_mb"] = round(path.stat().st_size / (1024 * 1024), 1)
                run["redis_used_mb"] = round(
                    int(client.info("memory")["used_memory"]) / (1024 * 1024), 1
                )
                runs.append(run)
            finally:
                client.flushdb()
                path.unlink(missing_ok=True)
    small, large = runs[0], runs[-1]
    small_growth = small["peak_rss_mb"] - small["rss_after_import_mb"]
    large_growth = large["peak_rss_mb"] - large["rss_after_import_mb"]
    return {
        "runs": runs,
        "peak_ratio": round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
        "growth_ratio": round(large_growth / small_growth, 3) if small_growth > 0 else None,
        "rate_ratio": round(large["records_per_second"] / small["records_per_second"], 3),
    }


def measure_rate(records: int, rounds: int = 3) -> dict[str, Any]:
    """Publish rate of `records` (read + validate + plan + stage) over json.loads of the lines.

    One fresh child publishes the file into a private Redis with no worker, then times
    the stdlib json.loads of the same lines in the same process, `rounds` times in turn;
    the best of each counts.
    """
    with ExitStack() as stack:
        redis_url = stack.enter_context(env.private_redis())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="importq-bench-")))
        path = env.write_jsonl(tmp / f"sourcing_data-{records}.jsonl", records)
        run = _run_child(records, redis_url, path, tmp / "home", rounds)
    run["rounds"] = rounds
    run["vs_json_loads"] = round(run["records_per_second"] / run["json_loads_per_second"], 3)
    return run


def report_rate(result: dict[str, Any]) -> list[str]:
    return [
        f"Producer rate: {result['records']:,} records from a JSON Lines file into Redis"
        f" (importq publish FILE's path: checked, then each unit staged as it is sent;"
        f" no worker; best of {result['rounds']})",
        f"  importq publish     {result['records_per_second']:>10,.0f} records/s",
        f"  stdlib json.loads   {result['json_loads_per_second']:>10,.0f} lines/s"
        " (the same lines, nothing else)",
        f"  publish/json.loads  {result['vs_json_loads']:>10.2f}",
    ]


def report(result: dict[str, Any]) -> list[str]:
    """The memory table as lines of text."""
    lines = [
        "Producer memory (importq publish FILE's path, fresh process per size, no worker;"
        " peak RSS is VmHWM)",
        f"  {'records':>9} {'file MB':>8} {'units':>6} {'after import':>13} {'peak RSS':>9} "
        f"{'publish s':>10} {'records/s':>10}",
    ]
    for run in result["runs"]:
        lines.append(
            f"  {run['records']:>9,} {run['file_mb']:>8.1f} {run['units']:>6} "
            f"{run['rss_after_import_mb']:>10.1f} MB {run['peak_rss_mb']:>6.1f} MB "
            f"{run['publish_seconds']:>10.2f} {run['records_per_second']:>10,.0f}"
        )
    small, large = result["runs"][0]["records"], result["runs"][-1]["records"]
    growth = result["growth_ratio"]
    lines.append(
        f"  peak {large:,}/{small:,}: {result['peak_ratio']:.2f}   "
        f"growth over import: {'n/a' if growth is None else f'{growth:.2f}'}   "
        f"rate: {result['rate_ratio']:.2f}"
    )
    return lines


def parse_sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    if len(sizes) < 2:
        raise argparse.ArgumentTypeError("give at least two sizes, e.g. 100000,1000000")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.producer_memory", description=None)
    parser.add_argument(
        "--sizes", type=parse_sizes, default=DEFAULT_SIZES, help="e.g. 100000,1000000"
    )
    parser.add_argument("--records", type=int, help="(child) records in --file")
    parser.add_argument("--redis", help="(child) the Redis to publish to")
    parser.add_argument("--file", type=Path, help="(child) the JSON Lines file to publish")
    parser.add_argument("--rounds", type=int, default=1, help="(child) publish rounds; best")
    args = parser.parse_args(argv)
    env.stop_on_sigterm()
    if args.redis:
        if args.file is None or args.records is None:
            parser.error("a child run needs --records, --redis and --file")
        print(json.dumps(child(args.records, args.redis, args.file, args.rounds)))
        return 0
    result = measure(args.sizes)
    print("\n".join(report(result)))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
