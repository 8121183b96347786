"""Where one POST's HTTP cost goes: cProfile of `importq serve`'s event-loop thread.

One server process in this process (uvicorn, uvloop, httptools, as `importq serve` runs
it), against a private Redis with no worker, while 8 producer threads POST the same
1,000-record JSON Lines body (the bench's requests). The profiler runs on the event-loop
thread only and counts its CPU time (time.thread_time): the publish itself runs in the
publisher processes and is what the CLI does too, so what is profiled is the HTTP's own
cost (uvicorn, FastAPI, handing the body over, the answer, the log line). It prints that
thread's CPU a body and the functions that take it.

    python -m bench.serve_profile [--bodies 25] [--top 40]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvloop

from bench import env
from bench.serve_throughput import PRODUCERS, RECORDS_PER_BODY, TOKEN, post_bodies


def run(bodies: int, top: int, sort: str, profile: bool = True) -> str:
    import uvicorn

    from importq.serve.auth import token_line

    with env.private_redis() as url, tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch)
        tokens = token_line("bench", TOKEN, "write", "*")
        os.environ.update({"REDIS_URL": url, "IMPORTQ_HOME": str(home),
                           "IMPORTQ_LOG_LEVEL": "INFO", "IMPORTQ_LOG_FORMAT": "json",
                           "IMPORTQ_SERVE_TOKENS": tokens})  # fmt: skip
        from importq.serve.app import from_environment

        body = env.write_jsonl(home / "body.jsonl", RECORDS_PER_BODY).read_bytes()
        port = env.free_port()
        config = uvicorn.Config(from_environment(), port=port, log_level="warning")
        server = uvicorn.Server(config)
        measuring, seconds = threading.Event(), [0.0]

        def drive() -> None:
            while not server.started:
                time.sleep(0.01)
            post_bodies(port, body, 2)  # warm up: imports, first connections, caches
            measuring.set()
            time.sleep(0.05)  # the loop thread notices (see _serve)
            started = time.perf_counter()
            post_bodies(port, body, bodies)
            seconds[0] = time.perf_counter() - started
            server.should_exit = True

        driver = threading.Thread(target=drive)
        driver.start()
        profiler = cProfile.Profile(time.thread_time) if profile else None
        loop_cpu = _serve(server, measuring, profiler)
        driver.join()
    count = PRODUCERS * bodies
    out = io.StringIO()
    if profiler:
        pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(top)
    head = (f"{count} bodies of {RECORDS_PER_BODY:,} records, {PRODUCERS} producers: "
            f"event-loop thread CPU {loop_cpu * 1000 / count:.2f} ms a body"
            f"{' (profiled: slower)' if profiler else ''}, "
            f"{count * RECORDS_PER_BODY / seconds[0]:,.0f} records/s")  # fmt: skip
    return head + "\n" + out.getvalue()


def _serve(server: Any, measuring: threading.Event, profiler: cProfile.Profile | None) -> float:
    """Run the server on this thread (uvloop); from when `measuring` is set until the server
    stops, count this thread's CPU and, with a profiler, profile it (sys.setprofile is per
    thread, so it is switched on here, not by the driver). The CPU seconds counted."""
    cpu = [0.0]

    async def watch() -> None:
        while not measuring.is_set():
            await asyncio.sleep(0.001)
        started = time.thread_time()
        if profiler:
            profiler.enable()
        while not server.should_exit:
            await asyncio.sleep(0.01)
        if profiler:
            profiler.disable()
        cpu[0] = time.thread_time() - started

    async def main() -> None:
        watcher = asyncio.create_task(watch())
        await server.serve()
        await watcher

    uvloop.run(main())
    return cpu[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_profile")
    parser.add_argument("--bodies", type=int, default=25, help="per producer")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", default="tottime", help="pstats key: tottime, cumulative")
    parser.add_argument("--no-profile", action="store_true",
                        help="the loop thread's CPU only (unprofiled; for py-spy)")  # fmt: skip
    args = parser.parse_args(argv)
    env.stop_on_sigterm()
    print(run(args.bodies, args.top, args.sort, profile=not args.no_profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
