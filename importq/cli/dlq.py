"""`importq dlq`: dead letters, with each target's reason; list, show, export, replay."""

from __future__ import annotations

import json
import sys

import click

from importq.cli.common import SINCE, parse_params, say, worker_app
from importq.errors import UnknownJob


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
        if summary.records:
            click.echo(f"{summary.job_id} {summary.target}: {summary.records} dead letters")
        else:  # a failed unit without records: a bare trigger
            click.echo(f"{summary.job_id} {summary.target}: failed without records")
        click.echo(f"    params: {json.dumps(summary.params)}")
        for reason, count in summary.reasons:
            click.echo(f"    {count} x {reason}")


@dlq.command("show")
@click.argument("job_id")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=0),
              help="Dead letters shown; 0: all.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="A JSON list (the notice goes to stderr).")
def dlq_show(job_id: str, limit: int, as_json: bool) -> None:
    """The dead letters of JOB_ID: each record with the target's reason."""
    from workers.dlq import DeadLetters

    letters = DeadLetters(worker_app().redis_client())
    total = letters.count(job_id)
    _refuse_unknown(job_id, total)
    entries = list(letters.entries(job_id, min(limit, total) if limit else None))
    if as_json:
        click.echo(json.dumps(entries, indent=2))
    elif not entries:
        click.echo(f"job {job_id} has no dead letters")
    else:
        for entry in entries:
            record = entry.get("record")
            shown = json.dumps(record)[:300] if record is not None else "(no record: a trigger)"
            click.echo(f"unit {entry['unit']} ({entry['target']}): {entry['reason']}")
            click.echo(f"    {shown}")
    if len(entries) < total:  # never cut silently
        click.echo(f"showing {len(entries)} of {total} dead letters of {job_id}: --limit 0 shows "
                   f"all; `importq dlq export {job_id}` writes them as JSON Lines",
                   err=as_json)  # fmt: skip


EXPORTED = ("record", "reason", "unit", "target", "attempts", "at")


@dlq.command("export")
@click.argument("job_id", required=False)
@click.option("--target", help="Every job of this target that has dead letters, oldest first.")
@click.option("--since", type=SINCE, help="Only those written since: 30m, 2h, 7d, or a time "
              "(2026-12-07T09:00, ISO 8601; local time unless it gives an offset).")  # fmt: skip
@click.option("-o", "--output", default="-", type=click.Path(allow_dash=True, dir_okay=False),
              help="The file to write; default: stdout.")  # fmt: skip
@click.option("--records", "records_only", is_flag=True,
              help="Only the records: `importq publish TARGET` takes the file back.")  # fmt: skip
def dlq_export(job_id: str | None, target: str | None, since: float | None, output: str,
               records_only: bool) -> None:  # fmt: skip
    """Write dead letters as JSON Lines: {record, reason, unit, target, attempts, at}.

    For a spreadsheet, or to fix the records and publish them again. Says on stderr
    how many it wrote.
    """
    from producers.replay import replayable
    from workers import targets
    from workers.dlq import DeadLetters

    if (job_id is None) == (target is None):
        raise click.UsageError("give JOB_ID or --target TARGET")
    if target is not None and target not in targets.TARGETS:
        raise click.BadParameter(f"no target {target!r}; targets: {', '.join(targets.TARGETS)}",
                                 param_hint="--target")  # fmt: skip
    client = worker_app().redis_client()
    job_ids = [job_id] if job_id else replayable(client, target)
    letters = DeadLetters(client)
    if job_id:
        _refuse_unknown(job_id, letters.count(job_id))
    written = skipped = 0
    with click.open_file(output, "w") as out:
        for one in job_ids:
            for entry in letters.entries(one):
                if since is not None and float(entry.get("at") or 0) < since:
                    continue
                if records_only and entry.get("record") is None:
                    skipped += 1  # a bare trigger: nothing to publish
                    continue
                row = entry["record"] if records_only else {k: entry.get(k) for k in EXPORTED}
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                written += 1
    where = "stdout" if output == "-" else output
    jobs = f"job {job_id}" if job_id else f"{len(job_ids)} {target} job{'s' * (len(job_ids) != 1)}"
    note = f" (skipped {skipped} failed units without records)" if skipped else ""
    say(f"wrote {written} dead letters of {jobs} to {where}{note}")


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
    from workers.dlq import DeadLetters
    from workers.jobs import JobStore

    if sum((job_id is not None, target is not None, every_job)) != 1:
        raise click.UsageError("give one of JOB_ID, --target TARGET or --all")
    app = worker_app()
    store = JobStore(app.redis_client())
    if job_id:
        _refuse_unknown(job_id, DeadLetters(store.redis).count(job_id))
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
        if done.trigger:
            click.echo(f"replayed the failed job {one} (no records) as job {done.new_job_id}")
        else:
            click.echo(f"replayed {done.records} dead letters of {one} as job {done.new_job_id}")
    if failed:
        sys.exit(1)


def _refuse_unknown(job_id: str, dead_letters: int) -> None:
    """Exit 4 for an id no job has (a typo), rather than "no dead letters" and exit 0."""
    from workers.jobs import JobStore

    if not dead_letters and JobStore(worker_app().redis_client()).get(job_id) is None:
        raise UnknownJob(job_id)
