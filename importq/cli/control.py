"""`importq cancel` and `importq release`: stop a job, or let the jobs held behind one run."""

from __future__ import annotations

import click

from importq.cli.common import worker_app
from importq.errors import UnknownJob


@click.command()
@click.argument("job_id")
@click.option("--reason", default="cancelled by operator", show_default=True)
def cancel(job_id: str, reason: str) -> None:
    """Cancel a job: units not yet started are dropped; running ones finish."""
    from workers.jobs import JobStore

    store = JobStore(worker_app().redis_client())
    job = store.get(job_id)
    if job is None:
        raise UnknownJob(job_id)
    if job.finished:
        raise click.ClickException(f"job {job_id} already ended {job.state}: nothing to cancel")
    store.cancel(job_id, reason)
    click.echo(f"job {job_id} cancelled")


@click.command()
@click.argument("job_id")
def release(job_id: str) -> None:
    """Let the jobs held behind failed JOB_ID run anyway (on what it left at the target)."""
    from workers import ordering, targets
    from workers.jobs import JobStore

    app = worker_app()
    store = JobStore(app.redis_client())
    job = store.get(job_id)
    if job is None:
        raise UnknownJob(job_id)
    key = targets.get(job.target).sink.order_key(job.params)
    if not key or ordering.holder(store.redis, job.target, key) != job_id:
        raise click.ClickException(f"job {job_id} holds no later jobs")
    ordering.release_hold(store.redis, job.target, key)
    woken = app.runner().wake_turn(job.target, ordering.release(store.redis, job))
    click.echo(f"released the jobs held behind {job_id} on {job.target} {key} ({woken} woken)")
