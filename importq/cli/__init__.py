"""The `importq` command: one module per command group, gathered into one click group.

    publish.py   publish (and --dry-run)      pipeline.py  publish --manifest
    jobs.py      status, jobs                 control.py   cancel, release
    dlq.py       dlq list / show / replay     services.py  worker, flower, metrics
    broker.py    redis status / start / stop  doctor.py    doctor
    demo.py      demo, simulate               deploy.py    deploy-files (from the registry)
    queues.py    queues, pause, resume, purge, retry (the targets at a glance, operator controls)
    serve.py     serve (the HTTP API and dashboard), serve-token
    common.py    what the groups share

Command modules import the worker app (Celery and every target's client) only
inside a command, so `importq --help` stays quick.
"""

from __future__ import annotations

from typing import Any

import click
import redis
from kombu.exceptions import OperationalError

from importq.cli import (
    broker,
    control,
    demo,
    deploy,
    dlq,
    doctor,
    jobs,
    publish,
    queues,
    serve,
    services,
)
from importq.cli.common import ExitCode, Fault
from importq.errors import ImportqError
from importq.logging import configure_command


class _Group(click.Group):
    """Shows ordinary faults as one clear line and their exit code (common.ExitCode), never
    a traceback: importq's own errors, and Redis lost in the middle of a command."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ImportqError as error:
            raise Fault.of(error) from None
        except (redis.ConnectionError, redis.TimeoutError, OperationalError) as error:
            # Past the client's retries (about 45 s): Redis went away during the command.
            message = f"lost Redis ({error}): start it again, then rerun the command"
            raise Fault(message, ExitCode.REDIS_UNAVAILABLE) from None


@click.group(cls=_Group)
@click.version_option(package_name="importq")
def main() -> None:
    """Queue records into SaaS import APIs through Redis-backed Celery workers."""
    # Before any command: what the runner, pipelines or settings log in this process goes
    # to stderr, redacted, and never into stdout's output for people or --json readers.
    configure_command()


for _command in (
    publish.publish,
    jobs.status,
    jobs.jobs,
    control.cancel,
    dlq.dlq,
    broker.redis_group,
    demo.simulate,
    services.worker,
    demo.demo,
    services.flower,
    doctor.doctor,
    services.metrics,
    control.release,
    deploy.deploy_files_command,
    queues.queues,
    queues.pause,
    queues.resume,
    queues.purge,
    queues.retry,
    serve.serve,
    serve.serve_token,
):
    main.add_command(_command)
