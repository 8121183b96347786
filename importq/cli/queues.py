"""`importq queues`, `pause`, `resume`, `purge` and `retry`: the targets at a glance, and
what an operator does to a target's queue or to one waiting unit (workers/controls.py)."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from importq.cli.common import registered_target, worker_app

OPERATOR_REASON = "paused by an operator"
COLUMNS = ("TARGET", "QUEUED", "OLDEST", "RUNNING", "CONSUMERS", "DELIVERED 5m/60m",
           "DEAD 5m/60m", "BACKLOG", "ETA")  # fmt: skip


def target_argument(function: Any) -> Any:
    return click.argument("target", callback=registered_target)(function)


def _parts() -> tuple[Any, Any, Any]:
    """The worker app, its runner (leases, breaker, publish) and a job store."""
    from workers.jobs import JobStore

    app = worker_app()
    return app, app.runner(), JobStore(app.redis_client())


@click.command()
@click.option("--json", "as_json", is_flag=True)
def queues(as_json: bool) -> None:
    """Each target: queued and running units, consumers, pause, recent pace, backlog ETA."""
    from workers import targets
    from workers.queues import look

    _, runner, store = _parts()
    views = look(store.redis, runner.breaker, list(targets.TARGETS))
    if as_json:
        click.echo(json.dumps([view.as_dict() for view in views], indent=2))
        return
    click.echo(_row(*COLUMNS))
    for view in views:
        click.echo(
            _row(view.target, view.queued, _age(view.oldest_queued_seconds), view.running,
                 len(view.consumers), f"{view.last_5m.delivered}/{view.last_60m.delivered}",
                 f"{view.last_5m.dead}/{view.last_60m.dead}", view.backlog_records, _eta(view))
        )  # fmt: skip
        if view.pause:
            click.echo(f"  {view.pause.describe()}; {view.paused_units} units wait")
        elif view.backlog_records and not view.consumers:
            click.echo(f"  no worker consumes {view.target}: `importq worker --targets "
                       f"{view.target}` starts one")  # fmt: skip
    click.echo("(consumers: workers' own heartbeats, renewed every IMPORTQ_REAPER_INTERVAL)")


def _count(items: list[Any], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _row(*cells: Any) -> str:
    target, queued, oldest, running, consumers, delivered, dead, backlog, eta = cells
    return (f"{target:<16} {queued:>6} {oldest:>7} {running:>7} {consumers:>9}  "
            f"{delivered:>16} {dead:>11} {backlog:>8} {eta:>7}")  # fmt: skip


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"


def _eta(view: Any) -> str:
    if view.eta_seconds is None:
        return "paused" if view.pause else "?"  # no worker, or no pace to go by yet
    return _age(view.eta_seconds) if view.eta_seconds else "-"


@click.command()
@target_argument
@click.option("--reason", default=OPERATOR_REASON, show_default=True, help="Shown with the pause.")
def pause(target: str, reason: str) -> None:
    """Pause TARGET: its units wait, using no attempts, until `importq resume TARGET`."""
    _, runner, _ = _parts()
    runner.breaker.hold(target, reason)
    click.echo(f"{target} paused: its units wait without using attempts (units at work now "
               f"finish); `importq resume {target}` lets them run")  # fmt: skip


@click.command()
@target_argument
def resume(target: str) -> None:
    """Lift TARGET's pause (an operator's or the circuit breaker's) and wake its units."""
    from workers import controls
    from workers.middleware.base import Waker

    _, runner, _ = _parts()
    woken = controls.resume(runner.breaker, Waker(runner.leases, runner.publish), target)
    if woken is None:
        click.echo(f"{target} was not paused: nothing to resume")
        return
    click.echo(f"{target} resumed; {woken} waiting units woken")


@click.command()
@target_argument
@click.option("--yes", is_flag=True, help="Do not ask for a confirmation.")
@click.option("--reason", default="purged by an operator", show_default=True)
def purge(target: str, yes: bool, reason: str) -> None:
    """Cancel TARGET's unfinished jobs and drop their queued units (nothing is dead-lettered)."""
    from workers import controls

    _, runner, store = _parts()
    plan = controls.plan_purge(store, target)
    if not plan.jobs:
        click.echo(f"{target} has no unfinished job: nothing to purge")
        return
    if not yes:
        click.confirm(f"Drop {plan.describe()}?", abort=True, err=True)
    done = controls.purge(store, runner, plan, reason)
    click.echo(f"purged {target}: {_count(done.jobs, 'job')} cancelled, {done.units} units and "
               f"{done.records} records dropped, {done.messages} queued messages removed; "
               "nothing was dead-lettered")  # fmt: skip
    if done.running:
        click.echo(f"  {done.running} units at work now finish first (their jobs stay cancelled)")
    if done.left_to_workers:
        some = ", ".join(done.left_to_workers[:5])
        click.echo(f"  {len(done.left_to_workers)} units opened something at the vendor: a "
                   f"worker settles and cancels them ({some})")  # fmt: skip
    for job in done.jobs:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.created_at))
        click.echo(f"  job {job.id}  {created}  {job.records_total} records  cancelled")


@click.command()
@click.argument("unit_id")
def retry(unit_id: str) -> None:
    """Run UNIT_ID now: a unit waiting for its retry (or never taken) goes to its queue."""
    from workers import controls
    from workers.middleware.base import Waker

    _, runner, store = _parts()
    waker = Waker(runner.leases, runner.publish)
    click.echo(controls.run_now(store, waker, runner.breaker, unit_id))
