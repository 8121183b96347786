"""`importq status` and `importq jobs`: a job's progress, the recent jobs."""

from __future__ import annotations

import json
import sys
import time

import click

from importq.cli.common import EXIT_CODES, STILL_RUNNING, failure_of, show_job, worker_app
from importq.progress import pause_of, wait_for_job
from workers.failures import describe


@click.command()
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Show progress until the job ends.")
@click.option("--units", "with_units", is_flag=True, help="List every unit with its remote ids.")
@click.option("--json", "as_json", is_flag=True)
def status(job_id: str, wait: bool, with_units: bool, as_json: bool) -> None:
    """Show a job. Exit 0 succeeded, 1 failed or cancelled, 2 partial, 3 not finished."""
    from workers.jobs import JobStore

    store = JobStore(worker_app().redis_client())
    job = wait_for_job(store, job_id, as_json) if wait else store.get(job_id)
    if job is None:
        raise click.ClickException(f"no job {job_id} (see `importq jobs`)")
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
        rows = []
        for view in views:
            failure = failure_of(view)
            rows.append({**view.as_dict(), "paused": view.target in pauses and not view.finished,
                         "failure": failure.as_dict() if failure else None})  # fmt: skip
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
        failure = failure_of(job)
        for line in describe(failure) if failure else []:
            click.echo(f"    {line}")
