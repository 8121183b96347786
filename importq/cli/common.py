"""What the `importq` command groups share: the worker app, messages, options, a job's view."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Any

import click

from workers.breaker import Pause
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


def registered_target(ctx: click.Context, param: click.Parameter, name: str | None) -> str | None:
    """A target option or argument: one of the registry's names (workers/targets)."""
    from workers.targets import TARGETS

    if name is not None and name not in TARGETS:
        raise click.BadParameter(f"no target {name!r}; the targets are {', '.join(TARGETS)}")
    return name


SINCE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """A --since option as epoch seconds: a duration back from now (90s, 30m, 2h, 7d) or a
    local time (2026-12-07, 2026-12-07 13:00, 2026-12-07T13:00:00)."""
    if value is None:
        return None
    text = value.strip()
    if found := re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", text):
        return time.time() - float(found[1]) * SINCE_UNITS[found[2]]
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither a duration (90s, 30m, 2h, 7d) nor a "
                                 "time (2026-12-07 13:00)") from None  # fmt: skip


def show_job(
    job: JobView,
    as_json: bool,
    units: list[tuple[str, dict[str, str]]] | None = None,
    pause: Pause | None = None,
) -> None:
    if as_json:
        data = job.as_dict()
        if pause:
            data["paused"] = {"reason": pause.reason, "since": pause.since,
                              "next_probe_at": pause.probe_at or None}  # fmt: skip
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
