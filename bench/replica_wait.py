"""What `WAIT 1 <ms>` after the guarding writes costs: a unit's claim, remember and finish
with and without it, side by side against one primary with one replica on 127.0.0.1.

With a Redis Sentinel group (IMPORTQ_REPLICA_WAIT_MS, importq/sentinel.py) every claim,
remembered remote id and finish waits until the replica holds it. The figure that
matters is the ratio of a unit's Redis bookkeeping with and without the waits, and
the extra milliseconds per unit beside what a vendor call takes.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from importq import broker
from workers import keys
from workers.leases import Finish, Leases

UNITS = 300  # per batch
BATCHES = 5  # per mode, alternating: the machine's noise falls on both alike
WAIT_MS = 500


@contextlib.contextmanager
def primary_and_replica() -> Iterator[redis.Redis]:
    """A private primary and its replica, in sync; both stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="importq-bench-wait-") as tmp:
        primary_port, port = broker.free_port(), broker.free_port()
        primary, url = broker.start_private(Path(tmp), port=primary_port)
        replica_dir = Path(tmp) / "replica"
        replica_dir.mkdir()
        command = [broker.server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                   "--save", "", "--dir", str(replica_dir),
                   "--replicaof", "127.0.0.1", str(primary_port)]  # fmt: skip
        replica = broker.launch(command, port)
        client = redis.Redis.from_url(url)
        try:
            deadline = time.monotonic() + 30
            while client.info("replication").get("slave0", {}).get("state") != "online":
                if time.monotonic() > deadline:
                    raise RuntimeError("the bench replica did not connect")
                time.sleep(0.05)
            yield client
        finally:
            client.close()
            for process in (replica, primary):
                process.terminate()
                process.wait(timeout=10)


def _units(leases: Leases, client: redis.Redis, batch: str) -> float:
    """Seconds for UNITS units' claim, one remember and the finish."""
    for number in range(UNITS):
        unit = f"{batch}:{number}"
        client.hset(keys.unit(unit), mapping={"state": "queued", "target": "sourcing_data"})
        client.hset(keys.job(batch), mapping={"units": UNITS, "target": "sourcing_data"})
    started = time.perf_counter()
    for number in range(UNITS):
        unit = f"{batch}:{number}"
        claim = leases.claim(unit, 5)
        leases.remember(unit, claim.token, {"remote.queue_item_id": f"item-{number}"})
        leases.finish(unit, claim.token, Finish("succeeded", terminal=True, delivered=1))
    return time.perf_counter() - started


def measure() -> dict[str, Any]:
    with primary_and_replica() as client:
        plain, waiting = Leases(client, 30, 60), Leases(client, 30, 60, replica_wait_ms=WAIT_MS)
        without: list[float] = []
        with_wait: list[float] = []
        for batch in range(BATCHES):
            without.append(_units(plain, client, f"plain{batch}"))
            with_wait.append(_units(waiting, client, f"wait{batch}"))
    best_without, best_with = min(without) / UNITS, min(with_wait) / UNITS
    return {
        "units_per_batch": UNITS,
        "ms_per_unit_without_wait": round(best_without * 1000, 3),
        "ms_per_unit_with_wait": round(best_with * 1000, 3),
        "extra_ms_per_unit": round((best_with - best_without) * 1000, 3),
        "with_vs_without": round(best_with / best_without, 2),
    }


def report(figures: dict[str, Any]) -> list[str]:
    return [
        "replica wait (claim + remember + finish of one unit, primary + 1 replica on 127.0.0.1)",
        f"  without WAIT                 {figures['ms_per_unit_without_wait']:.3f} ms per unit",
        f"  WAIT 1 {WAIT_MS} after each       {figures['ms_per_unit_with_wait']:.3f} ms per unit",
        f"  with / without               {figures['with_vs_without']:.2f}"
        f"  (+{figures['extra_ms_per_unit']:.3f} ms per unit)",
    ]


if __name__ == "__main__":
    print("\n".join(report(measure())))
