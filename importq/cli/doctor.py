"""`importq doctor`: Redis and each configured target's credentials, checked, with fixes."""

from __future__ import annotations

import sys

import click

from importq import settings as importq_settings


@click.command()
def doctor() -> None:
    """Check Redis (and AOF) and each configured target's credentials; say how to fix."""
    from importq.doctor import run

    checks = run(importq_settings.load())
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}
    for check in checks:
        click.echo(f"[{marks[check.status]}] {check.name}: {check.detail}")
        if check.fix:
            click.echo(f"       fix: {check.fix}")
    sys.exit(1 if any(c.status == "fail" for c in checks) else 0)
