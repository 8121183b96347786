"""One record, publish to vendor commit: what importq adds over sending it directly.

Rounds alternate, against the same simulator and an idle worker:

  direct   one httpx.Client sends a one-record queue item (start with incompleteData
           false) and polls its status until Success, as the sink does.
  importq  publish() of a one-record job, until the job is finished in Redis (the
           worker saw Success and recorded it); polled every POLL_SECONDS. The job has
           no --operation-id, as a single record's usually has not: its start then
           carries an operationId of its own and the whole item (one request).

Added time is importq's percentile minus direct's (p50 and p99 of each, not of the
differences: a round's two runs are not paired in any way the percentiles should keep).
A few rounds first warm up both paths (imports, connections, the pool's first task).
"""

from __future__ import annotations

import math
import time
from typing import Any

from bench import env
from bench.sourcing_throughput import run_importq, send_item, vendor_client

DEFAULT_ROUNDS = 100
WARM_UP_ROUNDS = 3
POLL_SECONDS = 0.001


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (`share` in 0..1) of `values`."""
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(share * len(ordered))))
    return ordered[rank - 1]


def measure(
    app: Any,
    sim: Any,
    base_url: str,
    poll_interval: float,
    latency: float,
    rounds: int = DEFAULT_ROUNDS,
) -> dict[str, Any]:
    """`rounds` one-record sends each way (after a warm-up); their percentiles in ms.

    Also the vendor requests each way took (the simulator's count): with `latency` a
    request, each extra request the sink makes costs that much whatever the queue does, so
    `queue_*_ms` is the added time less the extra requests' latency: the queue's own share.
    """
    direct: list[float] = []
    importq: list[float] = []
    requests = {"direct": 0, "importq": 0}
    with vendor_client(base_url) as client:
        for number in range(WARM_UP_ROUNDS + max(1, rounds)):
            record = env.sample_record(9_000_000 + 2 * number)
            importq_record = env.sample_record(9_000_001 + 2 * number)
            before = sim.ledger()["requests"]
            started = time.perf_counter()
            send_item(client, [record], 1, poll_interval)
            direct_seconds = time.perf_counter() - started
            middle = sim.ledger()["requests"]
            importq_seconds = run_importq(app, [importq_record], POLL_SECONDS, params={})[0]
            if number >= WARM_UP_ROUNDS:
                direct.append(direct_seconds)
                importq.append(importq_seconds)
                requests["direct"] += middle - before
                requests["importq"] += sim.ledger()["requests"] - middle
    figures: dict[str, Any] = {
        "rounds": len(direct),
        "direct_requests_per_record": round(requests["direct"] / len(direct), 2),
        "importq_requests_per_record": round(requests["importq"] / len(importq), 2),
    }
    extra = (requests["importq"] - requests["direct"]) / len(direct)
    for name, share in (("p50", 0.5), ("p99", 0.99)):
        direct_ms = percentile(direct, share) * 1000
        importq_ms = percentile(importq, share) * 1000
        figures[f"direct_{name}_ms"] = round(direct_ms, 1)
        figures[f"importq_{name}_ms"] = round(importq_ms, 1)
        figures[f"added_{name}_ms"] = round(importq_ms - direct_ms, 1)
        figures[f"queue_{name}_ms"] = round(importq_ms - direct_ms - extra * latency * 1000, 1)
    return figures


def report(result: dict[str, Any]) -> list[str]:
    return [
        f"One record, publish to vendor commit ({result['rounds']} rounds each way)",
        f"  {'':<9} {'p50 ms':>8} {'p99 ms':>8} {'vendor requests':>16}",
        *(
            f"  {name:<9} {result[f'{name}_p50_ms']:>8.1f} {result[f'{name}_p99_ms']:>8.1f} "
            f"{result.get(f'{name}_requests_per_record', ''):>16}"
            for name in ("direct", "importq", "added")
        ),
        f"  {'queue':<9} {result['queue_p50_ms']:>8.1f} {result['queue_p99_ms']:>8.1f}"
        "   (added, less the latency of importq's extra vendor requests)",
    ]
