"""`importq doctor`: Redis and each configured target's credentials, checked, with fixes."""

from __future__ import annotations

import sys

import click

from importq import settings as importq_settings


@click.command()
@click.option("--strict", is_flag=True, help="Exit 2 on a warning too (for a deploy pipeline).")
def doctor(strict: bool) -> None:
    """Check Redis (and AOF), each configured target's credentials and that a live worker
    consumes it; say how to fix. Exit 1 when a check fails, 2 on a warning with --strict."""
    from importq.doctor import run

    checks = run(importq_settings.load())
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}
    for check in checks:
        click.echo(f"[{marks[check.status]}] {check.name}: {check.detail}")
        if check.fix:
            click.echo(f"       fix: {check.fix}")
    if any(c.status == "fail" for c in checks):
        sys.exit(1)
    sys.exit(2 if strict and any(c.status == "warn" for c in checks) else 0)
