"""Following a job until it ends: a progress bar (or line) on stderr, its target's pause, and
a word when no worker consumes the target's queue.

`importq publish --wait`, `importq status --wait` and `importq demo` share it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import click

from importq.errors import UnknownJob
from workers import consumers, keys
from workers.breaker import Breaker, Pause
from workers.jobs import JobView

NO_WORKER_SETTING = "IMPORTQ_NO_WORKER_SECONDS"
NO_WORKER_SECONDS = 30.0  # nothing moved this long, no lease held: read the workers' heartbeats


def wait_for_job(store: Any, job_id: str, quiet: bool, timeout: float | None = None) -> JobView:
    """Follow the job until it ends, or for `timeout` seconds (then it is returned unfinished)."""
    job = _view(store, job_id)
    interactive = sys.stderr.isatty() and not quiet
    deadline = None if timeout is None else time.monotonic() + timeout
    idle = IdleWatch(store, no_worker_seconds(), lambda target: live_consumers(store, target))
    last = ""
    said_pause = ""
    while not job.finished:
        if deadline is not None and time.monotonic() >= deadline:
            break
        pause = pause_of(store, job)
        if pause and pause.reason != said_pause:  # said once per reason, in full
            click.echo(("\n" if interactive else "") + pause.describe(), err=True)
            said_pause = pause.reason
        in_flight = store.running_progress(job_id)
        orphaned = idle.notice(job, in_flight, paused=pause is not None)
        if orphaned:
            click.echo(("\n" if interactive else "") + orphaned, err=True)
        line = progress_line(job, in_flight)
        if pause:
            line += " - target paused"
        if interactive:
            click.echo("\r" + line.ljust(78), nl=False, err=True)
        elif line != last:
            click.echo(line, err=True)
        last = line
        time.sleep(0.5)
        job = _view(store, job_id)
    if interactive:
        click.echo("\r" + progress_line(job).ljust(78), err=True)
    if not job.finished:
        click.echo(f"still {job.state} after {timeout:g} s; `importq status {job_id} --wait` "
                   "follows it on", err=True)  # fmt: skip
    return job


class IdleWatch:
    """Notices a job nobody works on: nothing moved for `idle_seconds`, no unit of it holds a
    lease, and no worker says it consumes the target's queue (`consumers`: how many do).

    A paused target's job is idle on purpose and is left alone. Consumers are counted at
    most once per `idle_seconds`, and a job is reported once until it moves again.
    """

    def __init__(self, store: Any, idle_seconds: float, consumers: Callable[[str], int]) -> None:
        self.store, self.idle_seconds, self.consumers = store, idle_seconds, consumers
        self._seen: tuple[float, ...] = ()
        self._quiet_since = self._next_ask = time.monotonic()
        self._said = False

    def notice(self, job: JobView, in_flight: float, paused: bool) -> str | None:
        """What to say when the job has just been found orphaned; None otherwise."""
        now = time.monotonic()
        seen = (job.records_delivered, job.records_dead, job.units_done, job.units_total,
                job.retries, job.crashes, in_flight)  # fmt: skip
        if seen != self._seen or paused:
            self._seen, self._quiet_since, self._said = seen, now, False
            self._next_ask = now + self.idle_seconds
            return None
        if self._said or now < self._next_ask:
            return None
        self._next_ask = now + self.idle_seconds
        if self._leased(job.id) or self.consumers(job.target) != 0:
            return None
        self._said = True
        return (
            f"no worker is consuming {job.target}: nothing moved for {now - self._quiet_since:.0f}"
            f" s; start one with `importq worker --targets {job.target}`"
        )

    def _leased(self, job_id: str) -> bool:
        """Whether a unit of the job is held by a live worker (its lease has not expired)."""
        unit_ids = self.store.unit_ids(job_id)
        pipe = self.store.redis.pipeline(transaction=False)
        for unit_id in unit_ids:
            pipe.exists(keys.lease(unit_id))
        return any(pipe.execute()) if unit_ids else False


def live_consumers(store: Any, target: str) -> int:
    """How many workers' heartbeats say they consume the target's queue (workers/consumers.py):
    one Redis read, the count `importq queues` and `doctor` show, no broadcast to wait on."""
    return len(consumers.live(store.redis, target))


def no_worker_seconds() -> float:
    from workers import app

    return app.settings().number(NO_WORKER_SETTING, NO_WORKER_SECONDS, above=0)


def pause_of(store: Any, job: JobView) -> Pause | None:
    """The pause of the job's target while the job is unfinished (workers/breaker.py)."""
    if job.finished:
        return None
    # On demand: the app brings Celery and every target's client, which `--help` need not load.
    from workers import app

    return Breaker(store.redis, app.settings()).pause(job.target)


def progress_line(job: JobView, in_flight: float = 0.0) -> str:
    """A bar over the job's records; `in_flight` counts work inside running units."""
    done = job.records_delivered + job.records_dead + in_flight
    if job.records_total:
        share = done / job.records_total
    else:  # a job without records (a bare trigger) moves by its units
        share = job.units_done / job.units_total if job.units_total else 1.0
    bar = "#" * int(share * 30)
    return (
        f"[{bar:<30}] {share:6.1%} {job.records_delivered}/{job.records_total} delivered, "
        f"{job.records_dead} dead, units {job.units_done}/{job.units_total} ({job.state})"
    )


def follow_jobs(store: Any, jobs: dict[str, str]) -> dict[str, JobView]:
    """Follow several jobs at once until all end, a progress line each (the demo's view).

    On a terminal the lines are redrawn in place; otherwise a line is printed whenever it
    changes, so every job's progress shows whichever ends first.
    """
    interactive = sys.stderr.isatty()
    width = max(map(len, jobs), default=0)
    shown: dict[str, str] = {}
    while True:
        views = {name: _view(store, job_id) for name, job_id in jobs.items()}
        lines = {
            name: f"{name:<{width}}  "
            + progress_line(view, 0.0 if view.finished else store.running_progress(view.id))
            for name, view in views.items()
        }
        if interactive:
            up = f"\x1b[{len(shown)}F" if shown else ""  # back to the first line drawn
            click.echo(up + "\n".join(line.ljust(100) for line in lines.values()), err=True)
        else:
            for name, line in lines.items():
                if shown.get(name) != line:
                    click.echo(line, err=True)
        shown = lines
        if all(view.finished for view in views.values()):
            return views
        time.sleep(0.5)


def _view(store: Any, job_id: str) -> JobView:
    job: JobView | None = store.get(job_id)
    if job is None:
        raise UnknownJob(job_id)
    return job
