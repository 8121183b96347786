"""`importq serve` against the CLI: records/s staged, and the server's RSS under a huge body.

Side by side in one run, against one private Redis (no worker: units stay queued):

- the CLI's staging rate: child processes run `importq publish`'s path (read_records,
  then publish without the credentials check) over 1,000-record JSON Lines files, once
  with one producer and once with 8 at a time;
- the API: 8 concurrent producers POST the same bodies to `importq serve` (a process per
  core).

The two alternate in turns (which goes first alternates too); the verdict is the median of
the turns' records/s ratios, and the ratio of the CPU both sides spent a body, which moves far
less when other work shares the cores: the output says whether each meets the goal.

Then one body of `--body-mb` megabytes streams into the server while its RSS is sampled:
the body is spooled to disk and read back as a stream, so the peak should not grow with
the body.

    python -m bench.serve_throughput [--bodies 25] [--body-mb 1024]
    python -m bench.serve_throughput --child FILE --count N   # one CLI producer (internal)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import redis

from bench import env
from importq.processes import Process

PRODUCERS = 8
RECORDS_PER_BODY = 1000
DEFAULT_BODIES = 25  # per producer
DEFAULT_BODY_MB = 1024
# Turns side by side: on a shared 2-core machine one turn's records/s ratio swings by half
# (0.53-0.87 in one run), so the verdict takes the median of several, each turn running
# both sides back to back, in alternating order.
DEFAULT_REPEAT = 7
GOAL = 0.8  # issue 14: the API's records/s within 0.8 of the CLI's
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
    started, cpu = time.time(), time.process_time()
    for _ in range(count):
        once()
    return {"started": started, "ended": time.time(), "records": count * RECORDS_PER_BODY,
            "cpu": time.process_time() - cpu}  # fmt: skip


@dataclass
class Phase:
    """One side's run: records/s from the first start to the last end, and the CPU seconds
    each party spent (the producers or the server, the HTTP clients, Redis)."""

    rate: float
    bodies: int
    cpu: dict[str, float]

    def per_body_ms(self) -> dict[str, float]:
        return {who: round(seconds * 1000 / self.bodies, 2) for who, seconds in self.cpu.items()}


def _tree(pid: int) -> list[int]:
    """`pid` and every process under it (uvicorn's workers)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # ended meanwhile
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
    return found


def _cpu_seconds(pid: int) -> float:
    """user + system CPU of `pid` and every process under it, so far."""
    total = 0.0
    for each in _tree(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _cli_rate(
    path: Path, producers: int, bodies: int, environ: dict[str, str], redis_pid: int
) -> Phase:
    """`producers` CLI producers at once, each a process that publishes `path` `bodies` times."""
    command = [sys.executable, "-m", "bench.serve_throughput", "--child", str(path),
               "--count", str(bodies)]  # fmt: skip
    pipes: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
    children = [subprocess.Popen(command, env=environ, **pipes) for _ in range(producers)]
    for c in children:
        assert c.stdout is not None and c.stdout.readline().strip() == "ready"
    redis_before = _cpu_seconds(redis_pid)
    for c in children:
        assert c.stdin is not None
        c.stdin.write("go\n")
        c.stdin.flush()
    results = [json.loads(c.communicate(timeout=1800)[0].splitlines()[-1]) for c in children]
    assert all(c.returncode == 0 for c in children)
    elapsed = max(r["ended"] for r in results) - min(r["started"] for r in results)
    cpu = {"producers": sum(r["cpu"] for r in results),
           "redis": _cpu_seconds(redis_pid) - redis_before}  # fmt: skip
    return Phase(sum(r["records"] for r in results) / elapsed, producers * bodies, cpu)


def _request(body: bytes) -> bytes:
    """One POST as bytes on the wire: the same for every body, so sending costs no Python."""
    head = (f"POST /v1/targets/{TARGET}/jobs?{urlencode(PARAMS)} HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/x-ndjson\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
    return head.encode() + body


def _publish_cpu(log: Path, offset: int) -> float:
    """CPU seconds the server's publishes took (its "job published" lines past `offset`):
    the body's staging, as the CLI does it; the rest of the server's CPU is the HTTP's."""
    total = 0.0
    with log.open("rb") as lines:
        lines.seek(offset)
        for line in lines:
            if line.startswith(b"{") and b'"job published"' in line:
                total += json.loads(line)["publish_cpu_ms"] / 1000
    return total


def post_bodies(port: int, body: bytes, bodies: int) -> list[str]:
    """8 producers POST `body` `bodies` times each over keep-alive connections; the
    answers that were not 201.

    A producer is a thread that writes the request's bytes, built once, and reads the
    answer by its Content-Length: on this machine the producers share the server's cores,
    so every millisecond they spend is one the server does not get (http.client, which
    parses each answer's headers with the email package, cost 0.3-0.4 ms CPU a body; httpx
    more), and a producer on another machine would cost the server nothing.
    """
    failures: list[str] = []
    request = _request(body)

    def producer() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=300) as connection:
            for _ in range(bodies):
                connection.sendall(request)
                status, text = _answer(connection)
                if status != 201:
                    failures.append(text[:300].decode(errors="replace"))

    threads = [threading.Thread(target=producer) for _ in range(PRODUCERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)


def _answer(connection: socket.socket) -> tuple[int, bytes]:
    """The status and body of one HTTP/1.1 answer with a Content-Length (uvicorn's to a
    request that asked for nothing else)."""
    received = b""
    while (end := received.find(b"\r\n\r\n")) < 0:
        received += _more(connection)
    head, content = received[:end], received[end + 4 :]
    found = _CONTENT_LENGTH.search(head)
    assert found is not None, f"an answer without Content-Length: {head[:200]!r}"
    length = int(found.group(1))
    while len(content) < length:
        content += _more(connection)
    return int(head[9:12]), content


def _more(connection: socket.socket) -> bytes:
    chunk = connection.recv(65536)
    if not chunk:
        raise ConnectionError("the server closed the connection")
    return chunk


def _api_rate(url: str, body: bytes, bodies: int, server: Process, redis_pid: int) -> Phase:
    """The API's side: post_bodies, timed, with the CPU of the server, clients and Redis."""
    port = int(url.rsplit(":", 1)[1])
    server_pid, log_offset = server.process.pid, server.log_path.stat().st_size
    before = {"server": _cpu_seconds(server_pid), "clients": time.process_time(),
              "redis": _cpu_seconds(redis_pid)}  # fmt: skip
    started = time.perf_counter()
    failures = post_bodies(port, body, bodies)
    elapsed = time.perf_counter() - started
    after = {"server": _cpu_seconds(server_pid), "clients": time.process_time(),
             "redis": _cpu_seconds(redis_pid)}  # fmt: skip
    if failures:
        raise RuntimeError(f"{len(failures)} publishes failed: {failures[0]}")
    cpu = {who: after[who] - before[who] for who in before}
    time.sleep(0.5)  # the log lines of the last answers reach the file
    cpu["server_publish"] = _publish_cpu(server.log_path, log_offset)
    cpu["server"] -= cpu["server_publish"]
    return Phase(PRODUCERS * bodies * RECORDS_PER_BODY / elapsed, PRODUCERS * bodies, cpu)


def _rss_mb(pid: int) -> float:
    """The largest RSS among `pid` and its workers: the one a body streams into."""
    largest = 0.0
    for each in _tree(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    largest = max(largest, int(line.split()[1]) / 1024)
    return largest


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
    bodies: int = DEFAULT_BODIES,
    body_mb: int = DEFAULT_BODY_MB,
    workers: int | None = None,
    repeat: int = DEFAULT_REPEAT,
) -> dict[str, Any]:
    """`repeat` turns of the CLI's 8 producers then the API's, side by side in one run."""
    from importq.serve.auth import token_line

    workers = workers or 1  # importq serve's default: one HTTP process, a publisher per core
    with env.private_redis() as redis_url, tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch)
        path = env.write_jsonl(home / "body.jsonl", RECORDS_PER_BODY)
        environ = {**os.environ, "REDIS_URL": redis_url, "IMPORTQ_HOME": str(home),
                   "IMPORTQ_LOG_LEVEL": "WARNING",
                   "IMPORTQ_SERVE_TOKENS": token_line("bench", TOKEN, "write", "*")}  # fmt: skip
        redis_pid = int(redis.Redis.from_url(redis_url).info("server")["process_id"])
        port = env.free_port()
        command = [sys.executable, "-m", "importq.cli", "serve", "--port", str(port),
                   "--workers", str(workers)]  # fmt: skip
        logged = {**environ, "IMPORTQ_LOG_LEVEL": "INFO", "IMPORTQ_LOG_FORMAT": "json"}
        server = Process(command, logged, home / "serve.log")
        try:
            server.wait_ready(marker=b"Application startup complete")
            url, pid = f"http://127.0.0.1:{port}", server.process.pid
            cli_one = _cli_rate(path, 1, PRODUCERS * bodies, environ, redis_pid)
            turns = []
            for turn in range(repeat):  # alternating which side goes first
                if turn % 2:
                    api = _api_rate(url, path.read_bytes(), bodies, server, redis_pid)
                    cli = _cli_rate(path, PRODUCERS, bodies, environ, redis_pid)
                else:
                    cli = _cli_rate(path, PRODUCERS, bodies, environ, redis_pid)
                    api = _api_rate(url, path.read_bytes(), bodies, server, redis_pid)
                turns.append((cli, api))
            small_peak = _rss_mb(pid)
            big = _big_body_rss(url, pid, body_mb) if body_mb else None
        finally:
            server.stop()
    ratios = sorted(api.rate / cli.rate for cli, api in turns)
    # What one body costs all the cores together: with every core busy (8 producers on 2
    # cores), records/s is cores / this, so its ratio is what the rates' ratio tends to
    # on a quiet machine, and it moves far less than they do when other work shares the cores.
    cpu_ratios = sorted(sum(cli.cpu.values()) / sum(api.cpu.values()) for cli, api in turns)
    return {
        "producers": PRODUCERS, "server_workers": workers, "cores": os.cpu_count(),
        "publishers_per_server": publisher_count(),
        "records_per_body": RECORDS_PER_BODY, "bodies": PRODUCERS * bodies,
        "cli_one_producer_rps": round(cli_one.rate),
        "turns": [{"cli_8_producers_rps": round(cli.rate), "api_8_producers_rps": round(api.rate),
                   "api_vs_cli_8": round(api.rate / cli.rate, 2),
                   "cli_cpu_ms_per_body": cli.per_body_ms(),
                   "api_cpu_ms_per_body": api.per_body_ms()} for cli, api in turns],
        "api_vs_cli_8_median": round(statistics.median(ratios), 2),
        "api_vs_cli_8_range": [round(ratios[0], 2), round(ratios[-1], 2)],
        "api_vs_cli_8_cpu_median": round(statistics.median(cpu_ratios), 2),
        "api_vs_cli_8_cpu_range": [round(cpu_ratios[0], 2), round(cpu_ratios[-1], 2)],
        "goal": GOAL,
        "goal_met": {"records_per_second": statistics.median(ratios) >= GOAL,
                     "cpu_per_body": statistics.median(cpu_ratios) >= GOAL},
        "rss_after_small_bodies_mb": round(small_peak, 1), "big_body": big,
    }  # fmt: skip


def publisher_count() -> int:
    """What `importq serve` starts in each server process (IMPORTQ_SERVE_PUBLISHERS)."""
    from importq.serve.app import publisher_count as configured
    from importq.settings import load

    return configured(load())


def report(result: dict[str, Any]) -> list[str]:
    lines = [
        f"importq serve ({result['server_workers']} server process(es), each with "
        f"{result['publishers_per_server']} publishers; {result['cores']} cores): "
        f"8 producers x {result['bodies'] // PRODUCERS} bodies of "
        f"{result['records_per_body']:,} records, {len(result['turns'])} turns side by side",
        f"  the CLI's staging, 1 producer   {result['cli_one_producer_rps']:>9,} records/s "
        "(for reference)",
    ]
    for number, turn in enumerate(result["turns"], start=1):
        cli, api = turn["cli_cpu_ms_per_body"], turn["api_cpu_ms_per_body"]
        lines += [
            f"  turn {number}: the CLI's staging, 8 producers {turn['cli_8_producers_rps']:>9,} "
            f"records/s   CPU ms a body: producers {cli['producers']}, redis {cli['redis']}",
            f"          POST .../jobs, 8 producers      {turn['api_8_producers_rps']:>9,} "
            f"records/s   CPU ms a body: server {api['server_publish']} publishing + "
            f"{api['server']} HTTP, clients {api['clients']}, redis {api['redis']}   "
            f"ratio {turn['api_vs_cli_8']:.2f}",
        ]
    low, high = result["api_vs_cli_8_range"]
    rates, cpu = result["api_vs_cli_8_median"], result["api_vs_cli_8_cpu_median"]
    met = {True: "met", False: "NOT met"}
    lines.append(f"  API / CLI records/s (8 producers each)  {rates:.2f} median of "
                 f"{len(result['turns'])} turns, {low:.2f}-{high:.2f}")  # fmt: skip
    low, high = result["api_vs_cli_8_cpu_range"]
    lines.append(f"  CLI / API CPU a body (all processes)    {cpu:.2f} median, {low:.2f}-{high:.2f}"
                 "   (the records/s ratio a quiet machine tends to)")  # fmt: skip
    lines.append(
        f"  goal, the API within {result['goal']} of the CLI, judged on both: records/s "
        f"{met[result['goal_met']['records_per_second']]} (what the issue measures; it swings "
        f"with other work on the cores), CPU a body {met[result['goal_met']['cpu_per_body']]} "
        "(steadier)"
    )
    if big := result["big_body"]:
        lines.append(
            f"  one {big['megabytes']} MB body ({big['records']:,} records, {big['seconds']} s): "
            f"largest server process RSS {big['rss_before_mb']} MB before, "
            f"{big['rss_peak_mb']} MB at its peak"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_throughput")
    parser.add_argument("--bodies", type=int, default=DEFAULT_BODIES, help="per producer")
    parser.add_argument("--body-mb", type=int, default=DEFAULT_BODY_MB, help="0: skip it")
    parser.add_argument("--workers", type=int, help="importq serve --workers (default: 1)")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, help="turns side by side")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.count)))
        return 0
    env.stop_on_sigterm()
    result = measure(args.bodies, args.body_mb, args.workers, args.repeat)
    print("\n".join(report(result)))
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
