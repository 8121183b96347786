"""Child processes the demo and the tests start (importq/processes.py): stopped together."""

from __future__ import annotations

import sys
from pathlib import Path

from importq.processes import Process, stop_all

# On SIGTERM, waits until its peer got SIGTERM too (the peer's file exists), then exits 0.
# Stopped one after the other, the first would wait for its peer until it is SIGKILLed.
WAITS_FOR_ITS_PEER = """
import pathlib, signal, sys, time
mine, peer = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])

def stop(*_):
    mine.touch()
    while not peer.exists():
        time.sleep(0.01)
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
print("ready.", flush=True)
while True:
    time.sleep(1)
"""


def test_stop_all_signals_every_process_before_waiting_for_any(tmp_path: Path) -> None:
    first, second = tmp_path / "first-got-sigterm", tmp_path / "second-got-sigterm"
    command = [sys.executable, "-c", WAITS_FOR_ITS_PEER]
    processes = [
        Process([*command, str(mine), str(peer)], {}, tmp_path / f"{mine.name}.log")
        for mine, peer in ((first, second), (second, first))
    ]
    for process in processes:
        process.wait_ready(marker=b"ready.")
    stop_all(processes, timeout=30)
    assert [p.process.returncode for p in processes] == [0, 0]  # a warm stop each, no SIGKILL
