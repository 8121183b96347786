"""`importq status` and `importq jobs`: a job's progress, the recent jobs."""

from __future__ import annotations

import json
import sys
import time

import click

from importq.cli.common import EXIT_CODES, STILL_RUNNING, show_job, wait_options, worker_app
from importq.errors import UnknownJob
from importq.progress import pause_of, wait_for_job


@click.command()
@click.argument("job_id")
@wait_options("Show progress until the job ends.")
@click.option("--units", "with_units", is_flag=True, help="List every unit with its remote ids.")
@click.option("--json", "as_json", is_flag=True)
def status(job_id: str, wait: bool, timeout: float | None, with_units: bool, as_json: bool) -> None:
    """Show a job. Exit 0 succeeded, 1 failed or cancelled, 2 partial, 3 not finished,
    4 no such job."""
    from workers.jobs import JobStore

    store = JobStore(worker_app().redis_client())
    following = wait or timeout is not None
    job = wait_for_job(store, job_id, as_json, timeout) if following else store.get(job_id)
    if job is None:
        raise UnknownJob(job_id)
    show_job(job, as_json, list(store.units(job_id)) if with_units else None, pause_of(store, job))
    sys.exit(EXIT_CODES.get(job.state, STILL_RUNNING))


@click.command()
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def jobs(limit: int, as_json: bool) -> None:
    """List recent jobs, newest first."""
    from workers.jobs import JobStore

    store = JobStore(worker_app().redis_client())
    views = store.recent(limit)
    pauses = {job.target: pause for job in views if (pause := pause_of(store, job))}
    if as_json:
        rows = [{**v.as_dict(), "paused": v.target in pauses and not v.finished} for v in views]
        click.echo(json.dumps(rows, indent=2))
        return
    for pause in pauses.values():
        click.echo(pause.describe())
    for job in views:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.created_at))
        paused = " (target paused)" if job.target in pauses and not job.finished else ""
        click.echo(
            f"{job.id}  {created}  {job.target:<16} {job.state:<10} "
            f"{job.records_delivered}/{job.records_total} delivered, {job.records_dead} dead"
            f"{paused}"
        )
