"""`importq publish`: validate a file and enqueue it for a target, or dry-run it."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from importq.cli.common import (
    EXIT_CODES,
    STILL_RUNNING,
    parse_params,
    say,
    show_job,
    wait_options,
    worker_app,
)
from importq.cli.pipeline import publish_manifest_steps
from importq.progress import wait_for_job


@click.command()
@click.argument("target")
@click.argument("file", type=click.Path(allow_dash=True), required=False)
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "json", "csv"]), help="Default: by extension."
)
@click.option("--operation-id", help="sourcing_data: the operationId of the queue items.")
@click.option("--param", "params", multiple=True, help="A target option as key=value.")
@wait_options("Wait for the job to finish; exit like `status`.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@click.option("--no-check", is_flag=True, help="Skip the call that checks credentials first.")
@click.option("--manifest", type=click.Path(), help="A YAML/JSON list of steps run in order.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Validate and plan only: stage nothing, report up to IMPORTQ_DRY_RUN_MAX_ERRORS errors.",
)
def publish(
    target: str,
    file: str,
    fmt: str | None,
    operation_id: str | None,
    params: tuple[str, ...],
    wait: bool,
    timeout: float | None,
    as_json: bool,
    no_check: bool,
    manifest: str | None,
    dry_run: bool,
) -> None:
    """Validate FILE (JSON Lines, JSON array or CSV) and enqueue it for TARGET.

    FILE may be left out for targets whose jobs need no records (a Blueshift trigger).
    With --manifest, its steps (e.g. Blue users, courses, then enrolments) form a
    pipeline: each starts only when the one before it succeeded.
    """
    from producers.publish import publish as publish_job
    from producers.readers import records_of
    from workers.jobs import JobStore

    options: dict[str, Any] = parse_params(params)
    if operation_id:
        options["operation_id"] = operation_id
    if dry_run:
        if manifest:
            raise click.UsageError("--dry-run checks one FILE; it does not take --manifest")
        _dry_run(target, file, fmt, options, as_json, no_check)
    wait = wait or timeout is not None
    app = worker_app()
    store = JobStore(app.redis_client())
    if manifest:
        if file:
            raise click.UsageError("give FILE or --manifest, not both")
        publish_manifest_steps(store, target, manifest, options, wait, as_json, no_check,
                               timeout)  # fmt: skip
    job_id = publish_job(
        target,
        records_of(file, fmt, target=target) if file else None,
        options,
        settings=app.settings(),
        store=store,
        publish_unit=app.publish_unit,
        on_unit=_staging_progress(),
        check_target=not no_check,
        notify=say,
    )
    job = store.get(job_id)
    assert job is not None
    say(f"\njob {job_id}: {job.records_total} records in {job.units_total} units enqueued")
    if wait:
        job = wait_for_job(store, job_id, as_json, timeout)
    show_job(job, as_json)
    sys.exit(EXIT_CODES.get(job.state, STILL_RUNNING) if wait else 0)


def _staging_progress() -> Any:
    def progress(units: int, _: int) -> None:
        if units % 10 == 0:
            say(f"validated and staged {units} units...")

    return progress


def _dry_run(
    target: str,
    file: str | None,
    fmt: str | None,
    options: dict[str, Any],
    as_json: bool,
    no_check: bool,
) -> None:
    """Validate and plan FILE as a publish would, without Redis; exit 1 if it has errors."""
    from importq import settings as importq_settings
    from producers.dryrun import MAX_ERRORS_SETTING, dry_run, error_budget
    from producers.readers import read_records

    settings = importq_settings.load()  # not workers.app: that would pick (or start) a Redis
    problems = error_budget(settings)
    records = read_records(file, fmt, target=target, problems=problems) if file else None
    report = dry_run(target, records, options, settings=settings, problems=problems,
                     check_target=not no_check, notify=say)  # fmt: skip
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    elif not report.errors:
        units = "unit" if report.units == 1 else "units"
        click.echo(f"dry run: {report.records} records in {report.units} {units} for "
                   f"{target}; nothing was staged")  # fmt: skip
    else:
        for error in report.errors:
            click.echo(f"  {error}")
        more = (f"; stopped after {len(report.errors)} errors ({MAX_ERRORS_SETTING}), there "
                "may be more" if report.stopped_early else "")  # fmt: skip
        click.echo(f"dry run: refused, {len(report.errors)} error(s){more}; nothing was staged")
    sys.exit(1 if report.errors else 0)
