"""Child processes that importq's demo, tests and benchmarks start and must stop.

Each runs in its own process group, so stopping it reaches a Celery worker's
pool children too, and writes its output to a log file that says when it is
ready. The `celery worker` command lines of `importq worker` and the demo are
built here too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path


def celery_worker_command(queues: str, concurrency: int, name: str) -> list[str]:
    """`celery worker` for these queues, quiet about other nodes (no gossip or mingle)."""
    return [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", queues,
            "-c", str(concurrency), "-n", name, "--without-gossip", "--without-mingle",
            "--loglevel", "INFO"]  # fmt: skip


def worker_commands(
    queues: list[str], concurrency: int | None, name: str | None
) -> list[list[str]]:
    """One celery worker for the queues, plus one at -c 1 per one-process target (Blue)."""
    from workers.targets import TARGETS

    solo = [q for q in queues if TARGETS[q].one_process]
    shared = [q for q in queues if q not in solo]
    # Default node names carry this process's id: two `importq worker` runs on one host
    # stay apart in Flower and in `celery inspect`.
    pid = os.getpid()
    commands = [_celery(shared, concurrency, name or f"importq-{pid}@%h")] if shared else []
    for queue in solo:
        node = f"{queue}-{name}" if name else f"{queue}-{pid}@%h"
        commands.append(_celery([queue], 1, node if shared else name or node))
    return commands


def _celery(queues: list[str], concurrency: int | None, name: str | None) -> list[str]:
    argv = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", ",".join(queues),
            "-E", "--loglevel", "INFO"]  # fmt: skip
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    if name:
        argv += ["-n", name]
    return argv


class Process:
    """A child process in its own group, its stdout and stderr appended to `log_path`."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            command, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 60, marker: bytes = b" ready.") -> None:
        """Wait until the log shows `marker` (Celery's "celery@host ready.")."""
        deadline = time.monotonic() + timeout
        while marker not in self.log_path.read_bytes():
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{self.log_path.name}: the process exited:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout:.0f} s; see {self.log_path}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the whole group: a worker's main process and pool children alike."""
        self._signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM the group (a warm shutdown), SIGKILL it if that takes too long."""
        stop_all([self], timeout)

    def _signal(self, signum: int) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)


def stop_all(
    processes: Iterable[Process], timeout: float = 20, signum: int = signal.SIGTERM
) -> None:
    """Stop the processes together: signal every group first (SIGTERM: a warm shutdown), then
    wait for each, and SIGKILL what still runs `timeout` seconds after the signals. An idle
    Celery worker's warm shutdown takes 1-2 s (most of it billiard's pool threads sleeping);
    one after the other, that is paid per worker."""
    processes = list(processes)
    deadline = time.monotonic() + timeout
    for process in processes:
        process._signal(signum)
    for process in processes:
        try:
            try:
                process.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
        finally:
            process._log.close()
