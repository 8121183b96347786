"""Run the vendor simulators in the foreground on 127.0.0.1 until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, Protocol

import httpx

from simulators import load
from simulators.http import SimServer, serve


class Simulator(Protocol):
    """What run.py needs from a simulator: a handler with a base path and a config to tweak."""

    @property
    def base_path(self) -> str: ...

    @property
    def config(self) -> Any: ...

    def configure(self, **updates: Any) -> None: ...

    def __call__(self, request: httpx.Request) -> httpx.Response: ...


def simulators() -> dict[str, Callable[[], Simulator]]:
    """Every registered target's simulator: module simulators/<target>.py, class SIMULATOR."""
    from workers.targets import TARGETS

    return {name: load(name).SIMULATOR for name in TARGETS}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m simulators.run", description=__doc__)
    parser.add_argument(
        "--port", type=int, default=0, help="port of the first simulator (0: a free port)"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per vendor request")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of injected faults")
    parser.add_argument("--seed", type=int, default=None, help="seed for fault injection")
    return parser.parse_args(argv)


def _start_all(args: argparse.Namespace) -> list[SimServer]:
    servers: list[SimServer] = []
    for index, (name, factory) in enumerate(simulators().items()):
        sim = factory()
        sim.configure(latency_seconds=args.latency, fault_rate=args.fault_rate, seed=args.seed)
        # --port places the first simulator; the others take free ports (printed below),
        # since fixed consecutive ports could collide with anything else on the machine.
        server = serve(sim, port=args.port if index == 0 else 0)
        servers.append(server)
        print(f"{name} {server.url}{sim.base_path}", flush=True)
        # The environment a worker needs for this simulator (its fake credentials included).
        for variable, value in load(name).client_env(server.url).items():
            print(f"  export {variable}={value}", flush=True)
        print(f"  admin: {server.url}/_sim/ledger", flush=True)
    return servers


@contextlib.contextmanager
def _stop_on_signal() -> Iterator[threading.Event]:
    """An event that SIGINT or SIGTERM sets, handled from before the first server starts: a
    signal during start-up (a process runner stopping it at once) is a clean stop too."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Handlers can only be installed from the main thread (tests may call main() elsewhere).
    # SIGINT is handled explicitly because shells start background jobs with it ignored.
    in_main = threading.current_thread() is threading.main_thread()
    signals = (signal.SIGINT, signal.SIGTERM) if in_main else ()
    previous = {signum: signal.signal(signum, on_signal) for signum in signals}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _wait_for(stop: threading.Event) -> None:
    try:
        # Short waits keep the main thread responsive to signals on every platform.
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    with _stop_on_signal() as stop:
        servers = _start_all(args)
        try:
            _wait_for(stop)
        finally:
            for server in servers:
                server.stop()
    print("simulators stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
