"""Issue 15's regression check: ratios measured side by side in one run, never absolute times.

Small inputs, so each test takes a few seconds; `make bench` measures the issue's full
setup. The floors sit well below what this machine measures (2 shared cores; figures in
the README's Performance section) so a busy machine does not flake them: each says what
it would catch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bench import env
from bench.producer_memory import json_loads_seconds, publish_file
from bench.sourcing_throughput import Baseline, queue_items, run_importq
from tests.conftest import AGENT, CANARY_TOKEN, SIM_URL

# End to end, importq over the plain httpx loop, 16,000 records (4 items of 4,000) at
# concurrency 4 against 50 ms a request. Measured here (2 cores, 2026-12-07): 0.88-0.94,
# and 0.61-1.31 with two CPU-bound processes hogging both cores (the loop's threads and
# the worker's processes suffer unevenly). 0.4 is importq taking 2.5 times the vendor work:
# what a serialised unit, a release held back until the whole job is staged or a round
# trip too many per request would cost.
FLOOR_END_TO_END = 0.4

# The producer (read + validate + plan + stage) over the stdlib json.loads of the same
# lines, 20,000 records. Measured here: 0.89-1.18 at load 7 since the first read goes a
# block of lines at a time (producers/firstpass.py); 0.44-0.75 before, reading line by
# line; issue 15 measured 0.12 (58k vs 480k records/s) with the stdlib parser and the
# hand-written validator. 0.4 fails a return to reading line by line on many runs, and
# leaves a busy machine more than half its room.
FLOOR_PRODUCER = 0.4

ROUNDS = 2  # the best of each counts, as in `make bench`


@pytest.fixture
def bench_sim(sim: Any) -> Iterator[Any]:
    """The session's simulator as the benchmark sets it (its token, 50 ms), restored after."""
    sim.configure(token=env.TOKEN, agents={env.AGENT}, latency_seconds=0.05)
    yield sim
    sim.configure(token=CANARY_TOKEN, agents={AGENT}, latency_seconds=0.0)
    sim.reset()


def test_end_to_end_stays_near_a_plain_httpx_loop(
    bench_sim: Any, start_worker: Any, redis_client: redis.Redis
) -> None:
    from workers import app

    sim = bench_sim
    start_worker(concurrency=4, SOURCING_DATA_TOKEN=env.TOKEN, SOURCING_DATA_AGENT_ID=env.AGENT)
    records = env.sample_records(16_000)
    limits, items = queue_items(app.settings(), records)
    baseline = Baseline(SIM_URL, limits.records_per_request, limits.poll_interval_seconds)
    run_importq(app, env.sample_records(100))  # the pool's first task imports and connects
    importq_seconds, baseline_seconds = [], []
    for _ in range(ROUNDS):
        sim.reset()
        started = time.perf_counter()
        baseline.run(items, 4)
        baseline_seconds.append(time.perf_counter() - started)
        sim.reset()
        importq_seconds.append(run_importq(app, records)[0])
        ledger = sim.ledger()
        assert ledger["committed_records"] == len(ledger["commits"]) == 16_000
    ratio = min(baseline_seconds) / min(importq_seconds)
    assert ratio >= FLOOR_END_TO_END, (
        f"importq ran at {ratio:.2f} of the plain httpx loop's rate (floor "
        f"{FLOOR_END_TO_END}): importq {importq_seconds}, httpx {baseline_seconds} s; "
        "run `make bench` to see where the time goes"
    )


def test_producer_keeps_pace_with_json_loads(tmp_path: Path, redis_client: redis.Redis) -> None:
    from workers import app
    from workers.jobs import JobStore

    store = JobStore(app.redis_client())
    small = env.write_jsonl(tmp_path / "warm.jsonl", 100)
    path = env.write_jsonl(tmp_path / "records.jsonl", 20_000)

    def publish_seconds(source: Path) -> float:
        started = time.perf_counter()
        publish_file(source, store)
        return time.perf_counter() - started

    publish_seconds(small)  # compiles the schema, opens the connection
    producer = min(publish_seconds(path) for _ in range(ROUNDS))
    loads = min(json_loads_seconds(path) for _ in range(ROUNDS))
    ratio = loads / producer
    assert ratio >= FLOOR_PRODUCER, (
        f"publishing ran at {ratio:.2f} of json.loads' rate (floor {FLOOR_PRODUCER}): "
        f"{producer:.3f} s vs {loads:.3f} s for 20,000 lines; profile `importq publish`"
    )
