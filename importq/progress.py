"""Following a job until it ends: a progress bar (or line) on stderr, and its target's pause.

`importq publish --wait`, `importq status --wait` and `importq demo` share it.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from importq.errors import ImportqError
from workers.breaker import Breaker, Pause
from workers.jobs import JobView


def wait_for_job(store: Any, job_id: str, quiet: bool) -> JobView:
    job: JobView | None = store.get(job_id)
    if job is None:
        raise ImportqError(f"no job {job_id}")
    interactive = sys.stderr.isatty() and not quiet
    last = ""
    said_pause = ""
    while not job.finished:
        pause = pause_of(store, job)
        if pause and pause.reason != said_pause:  # said once per reason, in full
            click.echo(("\n" if interactive else "") + pause.describe(), err=True)
            said_pause = pause.reason
        line = progress_line(job, store.running_progress(job_id))
        if pause:
            line += " - target paused"
        if interactive:
            click.echo("\r" + line.ljust(78), nl=False, err=True)
        elif line != last:
            click.echo(line, err=True)
        last = line
        time.sleep(0.5)
        job = store.get(job_id)
    if interactive:
        click.echo("\r" + progress_line(job).ljust(78), err=True)
    return job


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
    share = done / job.records_total if job.records_total else 1.0
    bar = "#" * int(share * 30)
    return (
        f"[{bar:<30}] {share:6.1%} {job.records_delivered}/{job.records_total} delivered, "
        f"{job.records_dead} dead, units {job.units_done}/{job.units_total} ({job.state})"
    )
