"""What the `importq` command groups share: the worker app, messages, options, a job's view."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Any

import click

from workers.breaker import Pause
from workers.failures import Failure, describe, why_failed
from workers.jobs import JobState, JobView

EXIT_CODES = {
    JobState.SUCCEEDED: 0,
    JobState.FAILED: 1,
    JobState.CANCELLED: 1,
    JobState.PARTIAL: 2,
}
STILL_RUNNING = 3


def worker_app() -> Any:
    # Imported on demand: the app brings Celery and every target's client, which `--help`
    # and the commands that need no Redis (dry runs, doctor, redis) need not load.
    from workers import app

    return app


class Since(click.ParamType[float, Any]):
    """A moment as a duration back from now (90s, 30m, 2h, 7d, 1w) or a time (ISO 8601)."""

    name = "DURATION|TIME"
    SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        if match := re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", text):
            return time.time() - float(match[1]) * self.SECONDS[match[2]]
        try:
            return datetime.fromisoformat(text).timestamp()  # no offset given: local time
        except ValueError:
            self.fail(f"{text!r} is neither a duration (30m, 2h, 7d) nor a time "
                      "(2026-12-07T09:00 or 2026-12-07)", param, ctx)  # fmt: skip


SINCE = Since()  # seconds since the epoch


def say(message: str) -> None:
    click.echo(message, err=True)


def parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"'{pair}' is not key=value", param_hint="--param")
        params[key] = value
    return params


def show_job(
    job: JobView,
    as_json: bool,
    units: list[tuple[str, dict[str, str]]] | None = None,
    pause: Pause | None = None,
) -> None:
    failure = failure_of(job)
    if as_json:
        data = job.as_dict()
        data["failure"] = failure.as_dict() if failure else None
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
    for line in describe(failure) if failure else []:
        click.echo(f"  {line}")
    for unit_id, fields in units or []:
        remote = " ".join(
            f"{k[7:]}={v}" for k, v in fields.items() if k.startswith("remote.") and v
        )
        error = f"  error: {fields['last_error'][:120]}" if fields.get("last_error") else ""
        click.echo(
            f"  {unit_id:<24} {fields.get('state', '?'):<9} records={fields.get('records')} "
            f"attempts={fields.get('attempts')} {remote}{error}"
        )


def failure_of(job: JobView) -> Failure | None:
    """Why a failed or partial job failed (workers/failures.py); None for any other job."""
    if job.state not in (JobState.FAILED, JobState.PARTIAL):
        return None  # no Redis read for the jobs that did not fail
    return why_failed(worker_app().redis_client(), job)
