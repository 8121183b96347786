"""What the `importq` command groups share: exit codes, the worker app, messages, a job's view."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from typing import Any

import click

from importq import broker, moments
from importq import settings as importq_settings
from importq.errors import ImportqError, PortUnavailable, RedisUnavailable, UnknownJob
from workers.breaker import Pause
from workers.failures import Failure, describe, why_failed
from workers.jobs import JobState, JobView


class ExitCode(enum.IntEnum):
    """What `importq` exits with; README's Command line lists them too."""

    SUCCEEDED = 0
    FAILED = 1  # a job failed or was cancelled; or any other refusal, said in one line
    PARTIAL = 2  # some records delivered, some dead-lettered (click's usage errors are 2 too)
    STILL_RUNNING = 3  # `status` of an unfinished job; `--wait --timeout` ran out
    UNKNOWN_JOB = 4  # no job has that id
    REDIS_UNAVAILABLE = 5  # Redis does not answer, refuses the login, or REDIS_URL is no URL
    PORT_UNAVAILABLE = 6  # the port `importq metrics` or `importq flower` should use is taken


EXIT_CODES = {
    JobState.SUCCEEDED: ExitCode.SUCCEEDED,
    JobState.FAILED: ExitCode.FAILED,
    JobState.CANCELLED: ExitCode.FAILED,
    JobState.PARTIAL: ExitCode.PARTIAL,
}
STILL_RUNNING = ExitCode.STILL_RUNNING
_FAULT_CODES = {
    UnknownJob: ExitCode.UNKNOWN_JOB,
    RedisUnavailable: ExitCode.REDIS_UNAVAILABLE,
    PortUnavailable: ExitCode.PORT_UNAVAILABLE,
}


class Fault(click.ClickException):
    """An ordinary fault: one line on stderr ("Error: ...") and its documented exit code."""

    def __init__(self, message: str, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it from the instance

    @classmethod
    def of(cls, error: ImportqError) -> Fault:
        return cls(str(error), _FAULT_CODES.get(type(error), ExitCode.FAILED))


def worker_app() -> Any:
    """The worker app (workers.app), once the Redis it uses is said on stderr and answers.

    Every command that touches Redis comes through here, so each says which Redis it
    uses and why, and a Redis that is down is one line (exit 5), not a minute of retries.
    """
    # Imported on demand: the app brings Celery and every target's client, which `--help`
    # and the commands that need no Redis (dry runs, doctor, redis) need not load.
    from workers import app

    announce_redis(app.redis_choice)
    return app


def announce_redis(resolve: Callable[[], broker.RedisChoice] | None = None) -> broker.RedisChoice:
    """Say the chosen Redis and why (once per command), and check that it answers.

    `resolve` gives the choice (the worker app's, which it keeps); by default it is
    made from the settings, for commands that hand Redis to a process they exec.
    """
    context = click.get_current_context(silent=True)
    meta = context.find_root().meta if context else {}
    if "importq.redis" not in meta:
        choice = resolve() if resolve else broker.choose(importq_settings.load())
        say(choice.describe())
        broker.check(choice)
        meta["importq.redis"] = choice
    chosen: broker.RedisChoice = meta["importq.redis"]
    return chosen


class Since(click.ParamType[float, Any]):
    """A moment as a duration back from now (90s, 30m, 2h, 7d, 1w), a time (ISO 8601) or
    epoch seconds (importq/moments.py)."""

    name = "DURATION|TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        try:
            return moments.since(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


SINCE = Since()  # seconds since the epoch


def say(message: str) -> None:
    click.echo(message, err=True)


def wait_options(help_text: str) -> Callable[[Any], Any]:
    """`--wait` and `--timeout SECONDS` (which implies --wait): how long to follow a job."""

    def decorate(command: Any) -> Any:
        timeout = click.option(
            "--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
            help="Wait at most this long (implies --wait); still running then: exit 3.",
        )  # fmt: skip
        return click.option("--wait", is_flag=True, help=help_text)(timeout(command))

    return decorate


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
