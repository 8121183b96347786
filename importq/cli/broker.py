"""`importq redis`: which Redis importq uses; start or stop the embedded one."""

from __future__ import annotations

import sys

import click

from importq import broker
from importq import settings as importq_settings


@click.group("redis")
def redis_group() -> None:
    """The Redis importq uses; start or stop the embedded one."""


@redis_group.command("status")
def redis_status() -> None:
    """Which Redis importq would use, without starting one."""
    settings = importq_settings.load()
    try:
        choice = broker.choose(settings, start=False)
        click.echo(f"{broker.safe_url(choice.url)} ({choice.source})")
    except Exception as error:
        click.echo(str(error))
        sys.exit(1)


@redis_group.command("start")
def redis_start() -> None:
    """Start the embedded Redis (AOF on) under IMPORTQ_HOME."""
    settings = importq_settings.load()
    click.echo(f"embedded Redis at {broker.start_embedded(settings)} (data in {settings.home})")


@redis_group.command("stop")
def redis_stop() -> None:
    """Stop the embedded Redis."""
    stopped = broker.stop_embedded(importq_settings.load())
    click.echo("embedded Redis stopped" if stopped else "no embedded Redis was running")
