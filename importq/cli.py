"""The `importq` command: publish, status, jobs, dlq, worker, simulate, demo, redis."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from importq import broker
from importq.errors import ImportqError
from workers.breaker import Breaker, Pause
from workers.jobs import JobState, JobView

EXIT_CODES = {
    JobState.SUCCEEDED: 0,
    JobState.FAILED: 1,
    JobState.CANCELLED: 1,
    JobState.PARTIAL: 2,
}
STILL_RUNNING = 3


def _app() -> Any:
    # Imported on demand: resolving Redis may start the embedded one, which --help must not.
    from workers import app

    return app


def _say(message: str) -> None:
    click.echo(message, err=True)


def _parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"'{pair}' is not key=value", param_hint="--param")
        params[key] = value
    return params


class _Group(click.Group):
    """Shows importq's own errors as one clear line (exit 1) instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ImportqError as error:
            raise click.ClickException(str(error)) from None


@click.group(cls=_Group)
@click.version_option(package_name="importq")
def main() -> None:
    """Queue records into SaaS import APIs through Redis-backed Celery workers."""


@main.command()
@click.argument("target")
@click.argument("file", type=click.Path(allow_dash=True), required=False)
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "json", "csv"]), help="Default: by extension."
)
@click.option("--operation-id", help="sourcing_data: the operationId of the queue items.")
@click.option("--param", "params", multiple=True, help="A target option as key=value.")
@click.option("--wait", is_flag=True, help="Wait for the job to finish; exit like `status`.")
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
    from producers.readers import read_records
    from workers.jobs import JobStore

    options: dict[str, Any] = _parse_params(params)
    if operation_id:
        options["operation_id"] = operation_id
    if dry_run:
        if manifest:
            raise click.UsageError("--dry-run checks one FILE; it does not take --manifest")
        _dry_run(target, file, fmt, options, as_json, no_check)
    app = _app()
    store = JobStore(app.redis_client())
    _say(f"redis: {broker.safe_url(app.redis_url())}")
    if manifest:
        if file:
            raise click.UsageError("give FILE or --manifest, not both")
        _publish_pipeline(store, target, manifest, options, wait, as_json, no_check)
    job_id = publish_job(
        target,
        read_records(file, fmt, target=target) if file else None,
        options,
        settings=app.settings(),
        store=store,
        publish_unit=app.publish_unit,
        on_unit=_staging_progress(),
        check_target=not no_check,
        notify=_say,
    )
    job = store.get(job_id)
    assert job is not None
    _say(f"\njob {job_id}: {job.records_total} records in {job.units_total} units enqueued")
    if wait:
        job = wait_for_job(store, job_id, as_json)
    _show(job, as_json)
    sys.exit(EXIT_CODES.get(job.state, STILL_RUNNING) if wait else 0)


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
                     check_target=not no_check, notify=_say)  # fmt: skip
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


def _publish_pipeline(
    store: Any,
    target: str,
    manifest: str,
    options: dict[str, Any],
    wait: bool,
    as_json: bool,
    no_check: bool,
) -> None:
    from producers.manifest import publish_manifest
    from workers import pipelines

    app = _app()
    pipeline_id = publish_manifest(
        manifest,
        target,
        options,
        settings=app.settings(),
        store=store,
        publish_unit=app.publish_unit,
        check_target=not no_check,
        notify=_say,
    )
    found = pipelines.view(store, pipeline_id)
    assert found is not None
    _say(f"\npipeline {pipeline_id}: jobs {' '.join(j.id for j in found.jobs)} run in this order")
    jobs = [wait_for_job(store, j.id, as_json) for j in found.jobs] if wait else found.jobs
    if as_json:
        click.echo(json.dumps({"pipeline": pipeline_id, "jobs": [j.as_dict() for j in jobs]}))
    else:
        for job in jobs:
            _show(job, as_json)
    codes = [EXIT_CODES.get(job.state, STILL_RUNNING) for job in jobs]
    sys.exit(next((code for code in codes if code), 0) if wait else 0)


def _staging_progress() -> Any:
    def progress(units: int, _: int) -> None:
        if units % 10 == 0:
            _say(f"validated and staged {units} units...")

    return progress


def wait_for_job(store: Any, job_id: str, quiet: bool) -> JobView:
    job: JobView | None = store.get(job_id)
    if job is None:
        raise ImportqError(f"no job {job_id}")
    interactive = sys.stderr.isatty() and not quiet
    last = ""
    said_pause = ""
    while not job.finished:
        pause = _pause_of(store, job)
        if pause and pause.reason != said_pause:  # said once per reason, in full
            _say(("\n" if interactive else "") + pause.describe())
            said_pause = pause.reason
        line = _progress_line(job, store.running_progress(job_id))
        if pause:
            line += " - target paused"
        if interactive:
            click.echo("\r" + line.ljust(78), nl=False, err=True)
        elif line != last:
            _say(line)
        last = line
        time.sleep(0.5)
        job = store.get(job_id)
    if interactive:
        click.echo("\r" + _progress_line(job).ljust(78), err=True)
    return job


def _pause_of(store: Any, job: JobView) -> Pause | None:
    """The pause of the job's target while the job is unfinished (workers/breaker.py)."""
    if job.finished:
        return None
    return Breaker(store.redis, _app().SETTINGS).pause(job.target)


def _progress_line(job: JobView, in_flight: float = 0.0) -> str:
    """A bar over the job's records; `in_flight` counts work inside running units."""
    done = job.records_delivered + job.records_dead + in_flight
    share = done / job.records_total if job.records_total else 1.0
    bar = "#" * int(share * 30)
    return (
        f"[{bar:<30}] {share:6.1%} {job.records_delivered}/{job.records_total} delivered, "
        f"{job.records_dead} dead, units {job.units_done}/{job.units_total} ({job.state})"
    )


def _show(
    job: JobView,
    as_json: bool,
    units: list[tuple[str, dict[str, str]]] | None = None,
    pause: Pause | None = None,
) -> None:
    if as_json:
        data = job.as_dict()
        if pause:
            data["paused"] = {"reason": pause.reason, "since": pause.since,
                              "next_probe_at": pause.probe_at}  # fmt: skip
        if units is not None:
            data["units"] = [{"id": uid, **fields} for uid, fields in units]
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"job {job.id}  target={job.target}  state={job.state}")
    if pause:
        click.echo(f"  {pause.describe()}")
    click.echo(
        f"  records: {job.records_total} total, {job.records_delivered} delivered, "
        f"{job.records_dead} dead-lettered"
    )
    click.echo(
        f"  units: {job.units_done}/{job.units_total} done, {job.retries} retries, "
        f"{job.crashes} worker crashes"
    )
    for unit_id, fields in units or []:
        remote = " ".join(
            f"{k[7:]}={v}" for k, v in fields.items() if k.startswith("remote.") and v
        )
        error = f"  error: {fields['last_error'][:120]}" if fields.get("last_error") else ""
        click.echo(
            f"  {unit_id:<24} {fields.get('state', '?'):<9} records={fields.get('records')} "
            f"attempts={fields.get('attempts')} {remote}{error}"
        )


@main.command()
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Show progress until the job ends.")
@click.option("--units", "with_units", is_flag=True, help="List every unit with its remote ids.")
@click.option("--json", "as_json", is_flag=True)
def status(job_id: str, wait: bool, with_units: bool, as_json: bool) -> None:
    """Show a job. Exit 0 succeeded, 1 failed or cancelled, 2 partial, 3 not finished."""
    from workers.jobs import JobStore

    store = JobStore(_app().redis_client())
    job = wait_for_job(store, job_id, as_json) if wait else store.get(job_id)
    if job is None:
        raise click.ClickException(f"no job {job_id} (see `importq jobs`)")
    _show(job, as_json, list(store.units(job_id)) if with_units else None, _pause_of(store, job))
    sys.exit(EXIT_CODES.get(job.state, STILL_RUNNING))


@main.command()
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def jobs(limit: int, as_json: bool) -> None:
    """List recent jobs, newest first."""
    from workers.jobs import JobStore

    store = JobStore(_app().redis_client())
    views = store.recent(limit)
    pauses = {job.target: pause for job in views if (pause := _pause_of(store, job))}
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


@main.command()
@click.argument("job_id")
@click.option("--reason", default="cancelled by operator", show_default=True)
def cancel(job_id: str, reason: str) -> None:
    """Cancel a job: units not yet started are dropped; running ones finish."""
    from workers.jobs import JobStore

    store = JobStore(_app().redis_client())
    job = store.get(job_id)
    if job is None:
        raise click.ClickException(f"no job {job_id}")
    if job.finished:
        raise click.ClickException(f"job {job_id} already ended {job.state}: nothing to cancel")
    store.cancel(job_id, reason)
    click.echo(f"job {job_id} cancelled")


from importq.cli_ops import (  # noqa: E402
    demo,
    dlq,
    doctor,
    metrics,
    redis_group,
    release,
    simulate,
    worker,
)
from importq.flower import flower  # noqa: E402

for _command in (dlq, redis_group, simulate, worker, demo, flower, doctor, metrics, release):
    main.add_command(_command)


if __name__ == "__main__":
    main()
