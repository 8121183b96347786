"""`importq publish --manifest`: a pipeline of steps, each started once the one before succeeded."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from importq.cli.common import EXIT_CODES, STILL_RUNNING, say, show_job, worker_app
from importq.progress import wait_for_job


def publish_manifest_steps(
    store: Any,
    target: str,
    manifest: str,
    options: dict[str, Any],
    wait: bool,
    as_json: bool,
    no_check: bool,
    timeout: float | None = None,
) -> None:
    """Publish the manifest's steps as a pipeline; with `wait`, follow each job to its end
    (all of them within `timeout` seconds, if given)."""
    from producers.manifest import publish_manifest
    from workers import pipelines

    app = worker_app()
    pipeline_id = publish_manifest(
        manifest,
        target,
        options,
        settings=app.settings(),
        store=store,
        publish_unit=app.publish_unit,
        check_target=not no_check,
        notify=say,
    )
    found = pipelines.view(store, pipeline_id)
    assert found is not None
    say(f"\npipeline {pipeline_id}: jobs {' '.join(j.id for j in found.jobs)} run in this order")
    deadline = None if timeout is None else time.monotonic() + timeout

    def left() -> float | None:
        return None if deadline is None else max(deadline - time.monotonic(), 0.001)

    jobs = [wait_for_job(store, j.id, as_json, left()) for j in found.jobs] if wait else found.jobs
    if as_json:
        click.echo(json.dumps({"pipeline": pipeline_id, "jobs": [j.as_dict() for j in jobs]}))
    else:
        for job in jobs:
            show_job(job, as_json)
    codes = [EXIT_CODES.get(job.state, STILL_RUNNING) for job in jobs]
    sys.exit(next((code for code in codes if code), 0) if wait else 0)
