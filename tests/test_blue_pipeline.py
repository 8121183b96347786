"""Blue pipelines: datasources imported in order, each only after the one before succeeded."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import redis
import yaml
from click.testing import CliRunner

from importq.cli import main
from tests.helpers import wait_for_job
from tests.test_blue_e2e import courses, enrolments, store, users, wait_until
from workers import pipelines
from workers.jobs import JobState


def write_steps(tmp_path: Path, steps: list[tuple[Any, Iterable[dict[str, Any]]]]) -> Path:
    """A manifest and one JSON Lines file per step: (datasource or options, rows)."""
    listed = []
    for number, (options, rows) in enumerate(steps):
        name = f"step{number}.jsonl"
        (tmp_path / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
        params = dict(datasource=options) if isinstance(options, str) else options
        listed.append({"file": name, "params": params})
    manifest = tmp_path / "steps.yaml"
    manifest.write_text(yaml.safe_dump({"steps": listed}))
    return manifest


def publish_manifest(manifest: Path, *extra: str) -> list[str]:
    result = CliRunner().invoke(main, ["publish", "blue", "--manifest", str(manifest), *extra])
    assert result.exit_code == 0, result.output
    pipeline_id = re.search(r"^pipeline (\w+): jobs", result.output, re.MULTILINE).group(1)  # type: ignore[union-attr]
    found = pipelines.view(store(), pipeline_id)
    assert found is not None
    return [job.id for job in found.jobs]


def test_three_datasources_deliver_30000_rows_in_order_each_once(
    tmp_path: Path, fresh_simulators: dict[str, Any], start_worker: Any
) -> None:
    blue = fresh_simulators["blue"]
    # The relationship rows name users and courses: published in the wrong order, Blue
    # would skip every one of them ("field contains invalid data, THIS ROW SKIPPED").
    manifest = write_steps(tmp_path, [("Users", users(10_000)), ("Courses", courses(10_000)),
                                      ("CourseStudents", enrolments(10_000))])  # fmt: skip
    start_worker(queues="blue", concurrency=1)
    jobs = [wait_for_job(job_id, timeout=180) for job_id in publish_manifest(manifest)]
    assert [job.state for job in jobs] == ["succeeded"] * 3
    assert [job.records_delivered for job in jobs] == [10_000] * 3
    ledger = blue.ledger()
    assert ledger["commit_order"] == ["Data1", "Data2", "Data3"]
    assert ledger["committed"] == {"Data1": 10_000, "Data2": 10_000, "Data3": 10_000}
    assert ledger["duplicates"] == 0 and ledger["max_open"] == 1 and ledger["overlaps"] == 0


def test_a_failed_step_cancels_the_rest_with_the_reason(
    tmp_path: Path, fresh_simulators: dict[str, Any], start_worker: Any
) -> None:
    blue = fresh_simulators["blue"]
    manifest = write_steps(tmp_path, [("Users", users(20)), ("Alumni", users(5)),
                                      ("CourseStudents", enrolments(5))])  # fmt: skip
    start_worker(queues="blue", concurrency=1)
    first, failing, last = publish_manifest(manifest, "--no-check")  # Alumni is not in Blue
    assert wait_for_job(first).state == "succeeded"
    assert wait_for_job(failing).state == "failed"
    stopped = wait_for_job(last)
    assert stopped.state == "cancelled"
    assert f"step 2 (blue job {failing}) ended failed" in stopped.cancel_reason
    assert "datasource does not exist" in stopped.cancel_reason
    closed = lambda: store().unit(f"{last}:0")["state"] == "cancelled"  # noqa: E731
    wait_until("the held step's unit to close as cancelled, without running", closed)
    assert blue.ledger()["committed"] == {"Data1": 20}
    status = CliRunner().invoke(main, ["status", last])
    assert status.exit_code == 1 and "cancelled" in status.output
    # A finished pipeline's own keys expire (they are not kept forever).
    links = [pipelines.pipeline_of(job_id) for job_id in (first, failing, last)]
    kept = lambda: all(store().redis.ttl(key) > 0 for key in links)  # noqa: E731
    wait_until("the finished pipeline's keys to expire in time", kept)


def test_bad_input_in_a_later_step_refuses_the_whole_pipeline(
    tmp_path: Path, fresh_simulators: dict[str, Any], redis_client: redis.Redis
) -> None:
    bad = [{"COURSE_ID": "c1", "USER_ID": "u1,u2", "ROLE": "Student"}]
    relationship = {"datasource": "CourseStudents", "id_columns": "COURSE_ID,USER_ID"}
    manifest = write_steps(tmp_path, [("Users", users(5)), (relationship, bad)])
    result = CliRunner().invoke(main, ["publish", "blue", "--manifest", str(manifest)])
    assert result.exit_code == 1
    assert "step1.jsonl:1: USER_ID: ID 'u1,u2' contains a comma" in result.output
    assert redis_client.keys("importq:*") == [] and redis_client.llen("blue") == 0


def test_a_step_whose_hook_never_ran_is_released_by_the_sweep(
    tmp_path: Path, fresh_simulators: dict[str, Any], redis_client: redis.Redis
) -> None:
    from workers import app
    from workers.runner import Runner

    sent: list[str] = []
    job_ids = publish_manifest(
        write_steps(tmp_path, [("Users", users(5)), ("Courses", courses(5))])
    )
    redis_client.delete("blue")  # the first step's message: run in this process instead
    # A worker that dies right after the first step's last unit finished: no hook runs.
    hookless = Runner(app.settings(), store(), lambda unit, target, delay: sent.append(unit))
    assert hookless.run("blue", f"{job_ids[0]}:0") == "succeeded"
    assert sent == [] and redis_client.llen("blue") == 0  # the second step is still held
    pipelines.sweep(store(), lambda unit, target, delay: sent.append(unit), 60.0)
    assert sent == [f"{job_ids[1]}:0"]
    pipelines.sweep(store(), lambda unit, target, delay: sent.append(unit), 60.0)
    assert sent == [f"{job_ids[1]}:0"]  # released once, however often it is swept
    assert store().get(job_ids[1]) is not None
    assert store().get(job_ids[1]).state == JobState.QUEUED  # type: ignore[union-attr]
