"""`importq dlq`: dead letters, with each target's reason; list, show, replay."""

from __future__ import annotations

import json
import sys

import click

from importq.cli.common import parse_params, worker_app


@click.group()
def dlq() -> None:
    """Dead letters: records a target refused for good, with its reason."""


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True)
def dlq_list(as_json: bool) -> None:
    """Jobs with dead letters, and their most common reasons."""
    from workers.dlq import DeadLetters

    summaries = DeadLetters(worker_app().redis_client()).jobs()
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

    entries = list(DeadLetters(worker_app().redis_client()).entries(job_id, limit))
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
    from producers.replay import ReplayError, replay, replayable
    from workers.jobs import JobStore

    if sum((job_id is not None, target is not None, every_job)) != 1:
        raise click.UsageError("give one of JOB_ID, --target TARGET or --all")
    app = worker_app()
    store = JobStore(app.redis_client())
    job_ids = [job_id] if job_id else replayable(store.redis, target)
    if not job_ids:
        raise click.ClickException("no dead letters to replay")
    failed = 0
    for one in job_ids:
        try:
            done = replay(one, settings=app.settings(), store=store, publish_unit=app.publish_unit,
                          overrides=parse_params(params))  # fmt: skip
        except ReplayError as error:
            failed += 1
            click.echo(f"{one}: {error}", err=True)
            continue
        click.echo(f"replayed {done.records} dead letters of {one} as job {done.new_job_id}")
    if failed:
        sys.exit(1)
