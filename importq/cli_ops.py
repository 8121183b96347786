"""Operator commands of `importq`: dead letters, the embedded Redis, workers, simulators, demo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import click

from importq import broker
from importq import settings as importq_settings


def _app() -> Any:
    from workers import app

    return app


@click.group()
def dlq() -> None:
    """Dead letters: records a target refused for good, with its reason."""


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True)
def dlq_list(as_json: bool) -> None:
    """Jobs with dead letters, and their most common reasons."""
    from workers.dlq import DeadLetters

    summaries = DeadLetters(_app().redis_client()).jobs()
    if as_json:
        click.echo(json.dumps([s.__dict__ for s in summaries], indent=2))
        return
    if not summaries:
        click.echo("no dead letters")
    for summary in summaries:
        click.echo(f"{summary.job_id}: {summary.count} dead letters")
        for reason, count in summary.reasons:
            click.echo(f"    {count} x {reason}")


@dlq.command("show")
@click.argument("job_id")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def dlq_show(job_id: str, limit: int, as_json: bool) -> None:
    """The dead letters of JOB_ID: each record with the target's reason."""
    from workers.dlq import DeadLetters

    entries = list(DeadLetters(_app().redis_client()).entries(job_id, limit))
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    if not entries:
        click.echo(f"job {job_id} has no dead letters")
    for entry in entries:
        click.echo(f"unit {entry['unit']} ({entry['target']}): {entry['reason']}")
        click.echo(f"    {json.dumps(entry['record'])[:300]}")


@dlq.command("replay")
@click.argument("job_id", required=False)
@click.option("--target", help="Replay every job of this target that has dead letters.")
@click.option("--all", "every_job", is_flag=True, help="Replay every job with dead letters.")
@click.option("--param", "params", multiple=True,
              help="key=value: change a param of the replayed job(s).")  # fmt: skip
def dlq_replay(job_id: str | None, target: str | None, every_job: bool,
               params: tuple[str, ...]) -> None:  # fmt: skip
    """Publish dead letters again as new jobs (after fixing their cause)."""
    from importq.cli import _parse_params
    from producers.replay import ReplayError, replay, replayable
    from workers.jobs import JobStore

    if sum((job_id is not None, target is not None, every_job)) != 1:
        raise click.UsageError("give one of JOB_ID, --target TARGET or --all")
    app = _app()
    store = JobStore(app.redis_client())
    job_ids = [job_id] if job_id else replayable(store.redis, target)
    if not job_ids:
        raise click.ClickException("no dead letters to replay")
    failed = 0
    for one in job_ids:
        try:
            done = replay(one, settings=app.SETTINGS, store=store, publish_unit=app.publish_unit,
                          overrides=_parse_params(params))  # fmt: skip
        except ReplayError as error:
            failed += 1
            click.echo(f"{one}: {error}", err=True)
            continue
        click.echo(f"replayed {done.records} dead letters of {one} as job {done.new_job_id}")
    if failed:
        sys.exit(1)


@click.command()
@click.argument("job_id")
def release(job_id: str) -> None:
    """Let the jobs held behind failed JOB_ID run anyway (on what it left at the target)."""
    from workers import ordering, targets
    from workers.jobs import JobStore

    app = _app()
    store = JobStore(app.redis_client())
    job = store.get(job_id)
    if job is None:
        raise click.ClickException(f"no job {job_id} (see `importq jobs`)")
    key = targets.get(job.target).sink.order_key(job.params)
    if not key or ordering.holder(store.redis, job.target, key) != job_id:
        raise click.ClickException(f"job {job_id} holds no later jobs")
    ordering.release_hold(store.redis, job.target, key)
    woken = app.runner().wake_turn(job.target, ordering.release(store.redis, job))
    click.echo(f"released the jobs held behind {job_id} on {job.target} {key} ({woken} woken)")


@click.group("redis")
def redis_group() -> None:
    """The Redis importq uses; start or stop the embedded one."""


@redis_group.command("status")
def redis_status() -> None:
    """Which Redis importq would use, without starting one."""
    settings = importq_settings.load()
    try:
        choice = broker.choose(settings, start=False)
        click.echo(f"{broker.safe_url(choice.url)} ({choice.source})")
    except Exception as error:
        click.echo(str(error))
        sys.exit(1)


@redis_group.command("start")
def redis_start() -> None:
    """Start the embedded Redis (AOF on) under IMPORTQ_HOME."""
    settings = importq_settings.load()
    click.echo(f"embedded Redis at {broker.start_embedded(settings)} (data in {settings.home})")


@redis_group.command("stop")
def redis_stop() -> None:
    """Stop the embedded Redis."""
    stopped = broker.stop_embedded(importq_settings.load())
    click.echo("embedded Redis stopped" if stopped else "no embedded Redis was running")


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
    if len(commands) == 1:
        os.execv(sys.executable, commands[0])  # becomes the worker: never returns
        return
    sys.exit(_run_side_by_side(commands))


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


@click.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def simulate(args: tuple[str, ...]) -> None:
    """Serve the target simulators on 127.0.0.1 (--port, --latency, --fault-rate, --help)."""
    from simulators.run import main as run_simulators

    sys.exit(run_simulators(list(args)))


@click.command()
@click.option("--records", default=20_000, show_default=True)
def demo(records: int) -> None:
    """Everything local: embedded Redis, simulator, worker; import sample data, show a summary."""
    from importq.demo import run_demo

    sys.exit(run_demo(records))


@click.command()
def doctor() -> None:
    """Check Redis (and AOF) and each configured target's credentials; say how to fix."""
    from importq.doctor import run

    checks = run(importq_settings.load())
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}
    for check in checks:
        click.echo(f"[{marks[check.status]}] {check.name}: {check.detail}")
        if check.fix:
            click.echo(f"       fix: {check.fix}")
    sys.exit(1 if any(c.status == "fail" for c in checks) else 0)


@click.command()
@click.option("--port", default=9808, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True)
def metrics(port: int, address: str) -> None:
    """Serve importq's Prometheus metrics (read from Redis) on /metrics."""
    import threading

    from prometheus_client import REGISTRY, start_http_server

    from workers.metrics import ImportqCollector
    from workers.targets import TARGETS

    REGISTRY.register(ImportqCollector(_app().redis_client(), list(TARGETS)))
    start_http_server(port, addr=address)
    click.echo(f"importq metrics on http://{address}:{port}/metrics", err=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):  # a clean exit (0) for process runners
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
