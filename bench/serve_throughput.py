"""`importq serve` against the CLI: records/s staged, and the server's RSS under a huge body.

Side by side in one run, against one private Redis (no worker: units stay queued):

- the CLI's staging rate: child processes run `importq publish`'s path (read_records,
  then publish without the credentials check) over 1,000-record JSON Lines files, once
  with one producer and once with 8 at a time;
- the API: 8 concurrent producers POST the same bodies to one `importq serve` process.

Then one body of `--body-mb` megabytes streams into the server while its RSS is sampled:
the body is spooled to disk and read back as a stream, so the peak should not grow with
the body.

    python -m bench.serve_throughput [--bodies 25] [--body-mb 1024]
    python -m bench.serve_throughput --child FILE --count N   # one CLI producer (internal)
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
from pathlib import Path
from typing import Any

import httpx

from bench import env
from importq.processes import Process

PRODUCERS = 8
RECORDS_PER_BODY = 1000
DEFAULT_BODIES = 25  # per producer
DEFAULT_BODY_MB = 1024
TARGET = "sourcing_data"
PARAMS = {"operation_id": env.OPERATION}
TOKEN = "bench-fake-api-token-0001"  # made up here; only its hash reaches the server


def child(path: Path, count: int) -> dict[str, Any]:
    """One CLI producer: publish `path` `count` times, as `importq publish --no-check` does.

    It says "ready" once imported and warmed up (one publish), then waits for "go" on
    stdin, so start-up is in no producer's clock, as it is in no request's of the server.
    """
    from producers.publish import publish
    from producers.readers import read_records
    from workers import app
    from workers.jobs import JobStore

    store = JobStore(app.redis_client())

    def once() -> None:
        publish(TARGET, read_records(path, target=TARGET), dict(PARAMS),
                settings=app.settings(), store=store, publish_unit=app.publish_unit)  # fmt: skip

    once()
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.time()
    for _ in range(count):
        once()
    return {"started": started, "ended": time.time(), "records": count * RECORDS_PER_BODY}


def _cli_rate(path: Path, producers: int, bodies: int, environ: dict[str, str]) -> float:
    """Records/s of `producers` CLI producers at once, from the first start to the last end."""
    command = [sys.executable, "-m", "bench.serve_throughput", "--child", str(path),
               "--count", str(bodies)]  # fmt: skip
    pipes: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
    children = [subprocess.Popen(command, env=environ, **pipes) for _ in range(producers)]
    for c in children:
        assert c.stdout is not None and c.stdout.readline().strip() == "ready"
    for c in children:
        assert c.stdin is not None
        c.stdin.write("go\n")
        c.stdin.flush()
    results = [json.loads(c.communicate(timeout=1800)[0].splitlines()[-1]) for c in children]
    assert all(c.returncode == 0 for c in children)
    elapsed = max(r["ended"] for r in results) - min(r["started"] for r in results)
    return float(sum(r["records"] for r in results) / elapsed)


def _api_rate(url: str, body: bytes, bodies: int) -> float:
    failures: list[str] = []

    def producer() -> None:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
        with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
            for _ in range(bodies):
                answer = client.post(f"/v1/targets/{TARGET}/jobs", content=body, params=PARAMS)
                if answer.status_code != 201:
                    failures.append(answer.text[:300])

    threads = [threading.Thread(target=producer) for _ in range(PRODUCERS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} publishes failed: {failures[0]}")
    return PRODUCERS * bodies * RECORDS_PER_BODY / elapsed


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _lines(megabytes: int) -> Iterator[bytes]:
    """JSON Lines of sample records, about `megabytes` MB, in 1 MB chunks."""
    sent, number, block = 0, 0, []
    while sent < megabytes * 1024 * 1024:
        block.append(json.dumps(env.sample_record(number)))
        number += 1
        if len(block) == 5000:
            chunk = ("\n".join(block) + "\n").encode()
            sent += len(chunk)
            block.clear()
            yield chunk
    if block:
        yield ("\n".join(block) + "\n").encode()


def _big_body_rss(url: str, pid: int, megabytes: int) -> dict[str, Any]:
    before = _rss_mb(pid)
    peak, done = before, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_mb(pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    try:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
        answer = httpx.post(f"{url}/v1/targets/{TARGET}/jobs", content=_lines(megabytes),
                            headers=headers, params=PARAMS, timeout=3600)  # fmt: skip
    finally:
        done.set()
        sampler.join()
    if answer.status_code != 201:
        raise RuntimeError(f"the big body was refused: {answer.text[:300]}")
    return {"megabytes": megabytes, "records": answer.json()["records_total"],
            "seconds": round(time.perf_counter() - started, 1),
            "rss_before_mb": round(before, 1), "rss_peak_mb": round(peak, 1)}  # fmt: skip


def measure(
    bodies: int = DEFAULT_BODIES, body_mb: int = DEFAULT_BODY_MB, workers: int = 1
) -> dict[str, Any]:
    from importq.serve.auth import token_line

    with env.private_redis() as redis_url, tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch)
        path = env.write_jsonl(home / "body.jsonl", RECORDS_PER_BODY)
        environ = {**os.environ, "REDIS_URL": redis_url, "IMPORTQ_HOME": str(home),
                   "IMPORTQ_LOG_LEVEL": "WARNING",
                   "IMPORTQ_SERVE_TOKENS": token_line("bench", TOKEN, "write", "*")}  # fmt: skip
        port = env.free_port()
        command = [sys.executable, "-m", "importq.cli", "serve", "--port", str(port),
                   "--workers", str(workers)]  # fmt: skip
        server = Process(command, environ, home / "serve.log")
        try:
            server.wait_ready(marker=b"Application startup complete")
            url = f"http://127.0.0.1:{port}"
            total = PRODUCERS * bodies
            cli_one = _cli_rate(path, 1, total, environ)
            cli_eight = _cli_rate(path, PRODUCERS, bodies, environ)
            api = _api_rate(url, path.read_bytes(), bodies)
            small_peak = _rss_mb(server.process.pid)
            big = _big_body_rss(url, server.process.pid, body_mb) if body_mb else None
        finally:
            server.stop()
    return {
        "producers": PRODUCERS, "server_workers": workers,
        "records_per_body": RECORDS_PER_BODY, "bodies": total,
        "cli_one_producer_rps": round(cli_one), "cli_8_producers_rps": round(cli_eight),
        "api_8_producers_rps": round(api), "api_vs_cli": round(api / cli_one, 2),
        "api_vs_cli_8": round(api / cli_eight, 2), "rss_after_small_bodies_mb":
        round(small_peak, 1), "big_body": big,
    }  # fmt: skip


def report(result: dict[str, Any]) -> list[str]:
    lines = [
        f"importq serve ({result['server_workers']} server process(es)): {result['bodies']} "
        f"bodies of {result['records_per_body']:,} records",
        f"  the CLI's staging, 1 producer   {result['cli_one_producer_rps']:>9,} records/s",
        f"  the CLI's staging, 8 producers  {result['cli_8_producers_rps']:>9,} records/s",
        f"  POST .../jobs, 8 producers      {result['api_8_producers_rps']:>9,} records/s",
        f"  API / CLI (1 producer)          {result['api_vs_cli']:.2f}   (goal: 0.8 or more)",
        f"  API / CLI (8 producers)         {result['api_vs_cli_8']:.2f}",
    ]
    if big := result["big_body"]:
        lines.append(
            f"  one {big['megabytes']} MB body ({big['records']:,} records, {big['seconds']} s): "
            f"server RSS {big['rss_before_mb']} MB before, {big['rss_peak_mb']} MB at its peak"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_throughput")
    parser.add_argument("--bodies", type=int, default=DEFAULT_BODIES, help="per producer")
    parser.add_argument("--body-mb", type=int, default=DEFAULT_BODY_MB, help="0: skip it")
    parser.add_argument("--workers", type=int, default=1, help="importq serve --workers")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.count)))
        return 0
    env.stop_on_sigterm()
    result = measure(args.bodies, args.body_mb, args.workers)
    print("\n".join(report(result)))
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
