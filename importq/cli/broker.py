"""`importq redis`: which Redis importq uses and why; start or stop the embedded one."""

from __future__ import annotations

import click

from importq import broker
from importq import settings as importq_settings
from importq.errors import RedisUnavailable


@click.group("redis")
def redis_group() -> None:
    """The Redis importq uses; start or stop the embedded one."""


@redis_group.command("status")
def redis_status() -> None:
    """Which Redis importq would use and why, without starting one (exit 5: none)."""
    click.echo(broker.choose(importq_settings.load(), start=False).describe())


@redis_group.command("start")
def redis_start() -> None:
    """Start the embedded Redis (AOF on) under IMPORTQ_HOME."""
    settings = importq_settings.load()
    click.echo(f"embedded Redis at {broker.start_embedded(settings)} (data in {settings.home})")
    _say_choice(settings)


@redis_group.command("stop")
def redis_stop() -> None:
    """Stop the embedded Redis."""
    settings = importq_settings.load()
    stopped = broker.stop_embedded(settings)
    click.echo("embedded Redis stopped" if stopped else "no embedded Redis was running")
    _say_choice(settings)


def _say_choice(settings: importq_settings.Settings) -> None:
    """What commands use from now on, so a REDIS_URL or a localhost Redis is no surprise."""
    try:
        choice = broker.choose(settings, start=False)
    except RedisUnavailable:
        click.echo("commands now start the embedded Redis when they need one")
        return
    click.echo(f"commands now use {choice.describe().removeprefix('redis: ')}")
