"""The long-running processes: `importq worker`, `importq flower` and `importq metrics`."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import click

from importq import settings as importq_settings
from importq.cli.common import announce_redis, worker_app
from importq.errors import PortUnavailable
from importq.flower import DEFAULT_PORT, LOCAL_ADDRESS, check_basic_auth, flower_argv
from importq.processes import worker_commands


@click.command()
@click.option("--targets", default="all", show_default=True, help="all, or a comma list.")
@click.option("--concurrency", "-c", type=int, default=None, help="Processes (blue: always 1).")
@click.option("--name", "-n", default=None, help="Worker node name, e.g. w1@%h.")
def worker(targets: str, concurrency: int | None, name: str | None) -> None:
    """Run a Celery worker for the given targets' queues (execs `celery worker`)."""
    from workers.targets import TARGETS

    queues = list(TARGETS) if targets == "all" else [t.strip() for t in targets.split(",")]
    unknown = [q for q in queues if q not in TARGETS]
    if unknown:
        raise click.BadParameter(f"unknown target(s) {unknown}; known: {sorted(TARGETS)}")
    commands = worker_commands(queues, concurrency, name)
    announce_redis()  # the worker makes the same choice (workers/app.py)
    if len(commands) == 1:
        os.execv(sys.executable, commands[0])  # becomes the worker: never returns
        return
    sys.exit(_run_side_by_side(commands))


def _run_side_by_side(commands: list[list[str]]) -> int:
    """Run the workers together: a signal reaches each once; when one ends, stop the other."""
    children = [subprocess.Popen(argv, start_new_session=True) for argv in commands]

    def forward(signum: int, frame: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    while all(child.poll() is None for child in children):
        time.sleep(0.5)
    forward(signal.SIGTERM, None)
    codes = [child.wait() for child in children]
    return next((code for code in codes if code), 0)


@click.command()
@click.option(
    "--port", type=int, default=DEFAULT_PORT, show_default=True, envvar="FLOWER_PORT",
    help="HTTP port (env FLOWER_PORT).",
)  # fmt: skip
@click.option(
    "--address", default=LOCAL_ADDRESS, show_default=True, envvar="FLOWER_ADDRESS",
    help="Address to listen on (env FLOWER_ADDRESS); other than loopback needs basic auth.",
)  # fmt: skip
def flower(port: int, address: str) -> None:
    """Start Flower against the configured broker (execs `celery flower`).

    Logins come from FLOWER_BASIC_AUTH=user:password[,user2:password2], read by
    Flower from the environment (or .env), so they never show on a command line.
    """
    importq_settings.load()  # puts ./.env into os.environ, where Flower looks
    warning = check_basic_auth(os.environ, address)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    ensure_free(address, port, "Flower", "--port (or FLOWER_PORT)")
    announce_redis()  # Flower makes the same choice (workers/app.py)
    click.echo(f"flower: http://{address}:{port}/ (tasks at /tasks, Prometheus at /metrics)",
               err=True)  # fmt: skip
    argv = flower_argv(port, address)
    os.execv(argv[0], argv)


@click.command()
@click.option("--port", default=9808, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True)
def metrics(port: int, address: str) -> None:
    """Serve importq's Prometheus metrics (read from Redis) on /metrics."""
    import threading

    from prometheus_client import REGISTRY, start_http_server

    from workers.metrics import ImportqCollector
    from workers.targets import TARGETS

    ensure_free(address, port, "importq metrics", "--port")
    REGISTRY.register(ImportqCollector(worker_app().redis_client(), list(TARGETS)))
    start_http_server(port, addr=address)
    click.echo(f"importq metrics on http://{address}:{port}/metrics", err=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):  # a clean exit (0) for process runners
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()


def ensure_free(address: str, port: int, server: str, option: str) -> None:
    """PortUnavailable, saying what to do, unless `server` can listen on address:port.

    Bound and let go at once, as the server's own socket will be (SO_REUSEADDR, like
    Tornado's and the Prometheus client's), so a port in TIME_WAIT counts as free.
    """
    try:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((address, port))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            why = "the port is in use: stop what listens there"
        else:
            why = f"{error.strerror}: check the address"
        raise PortUnavailable(
            f"{server} cannot listen on {address}:{port}: {why}, or pick another port with {option}"
        ) from None
