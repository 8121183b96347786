"""Flower, started by `importq flower`, shows each task's target, job and unit, and nothing else.

A real Flower process and a real worker share the test Redis; a job with a poison
record (bisection) and injected faults (retries) runs while the canary token is in
every process's environment.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from importq.flower import check_basic_auth
from tests.conftest import CANARY_TOKEN, free_port
from tests.helpers import jsonl, publish_file, publish_sourcing, sample_records, wait_for_job
from workers.jobs import JobStore

LOGIN = ("fake-flower-user", "fake-flower-password")
CHROMIUM = Path("/usr/bin/chromium")


class Flower:
    """A running `importq flower` on a free port of 127.0.0.1."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {**os.environ, "FLOWER_BASIC_AUTH": ":".join(LOGIN)}
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "importq.cli", "flower", "--port", str(self.port)],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/healthcheck", timeout=1).text == "OK":
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("Flower did not start: " + self.log_path.read_text()[-3000:])

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, auth=LOGIN, timeout=10)

    def tasks(self) -> dict[str, dict[str, Any]]:
        response = self.get("/api/tasks")
        response.raise_for_status()
        tasks: dict[str, dict[str, Any]] = response.json()
        return tasks

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=10)


@pytest.fixture
def flower(tmp_path: Path, redis_client: object) -> Iterator[Flower]:
    running = Flower(tmp_path / "flower.log")
    yield running
    running.stop()


def _first_tasks(flower: Flower, timeout: float = 30) -> dict[str, dict[str, Any]]:
    """Flower's tasks as soon as it knows any: what it shows while a job runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = flower.tasks()
        if tasks:
            return tasks
        time.sleep(0.05)
    raise AssertionError("Flower saw no task")


ENDED = {"SUCCESS", "FAILURE", "RETRY"}  # a task's last state; a retried unit has a new task


def _wait_for_tasks(flower: Flower, count: int, timeout: float = 30) -> dict[str, dict[str, Any]]:
    """Flower's tasks once `count` ended for good and none still runs (events come late)."""
    deadline = time.monotonic() + timeout
    tasks: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        tasks = flower.tasks()
        states = [task["state"] for task in tasks.values()]
        done = states.count("SUCCESS") + states.count("FAILURE")
        if done >= count and set(states) <= ENDED:
            return tasks
        time.sleep(0.2)
    raise AssertionError(f"Flower saw {len(tasks)} tasks, fewer than {count} finished: {tasks}")


def _unit_of(task: dict[str, Any]) -> str:
    match = re.fullmatch(r"job=\w+ unit=(\S+)", task["args"])
    assert match, task["args"]
    return match.group(1)


def _units_in(flower: Flower, state: str) -> list[str]:
    """The units of the tasks Flower's own filter lists in `state`."""
    found = flower.get("/api/tasks", state=state)
    found.raise_for_status()
    return sorted(_unit_of(task) for task in found.json().values())


def test_flower_shows_target_job_and_unit_but_no_record_or_secret(
    flower: Flower, sim: Any, start_worker: Any
) -> None:
    sim.configure(poison_record_ids={"r-123"}, fault_rate=0.1, seed=5, latency_seconds=0.01)
    # Not a breaker test: a pause (three 5xx in a row, now and then) would hold the units 30 s
    # and wake them with a second message, whose duplicate task ends 'done'.
    start_worker(concurrency=2, IMPORTQ_BREAKER_FAILURES="100")
    job_id = publish_sourcing(sample_records(400))
    while_running = _first_tasks(flower)
    job = wait_for_job(job_id)
    assert job.state == "partial" and job.records_dead == 1  # r-123 isolated by bisection
    tasks = _wait_for_tasks(flower, job.units_total)  # split halves count as units

    seen_units = set()
    for task in tasks.values():
        assert task["name"] == "importq.sourcing_data"
        match = re.fullmatch(rf"job={job_id} unit=({job_id}:[\d.]+)", task["args"])
        assert match, task["args"]
        seen_units.add(match.group(1))
        assert task["kwargs"] == "{}"
        if task["state"] == "SUCCESS":
            assert task["result"] in ("'succeeded'", "'split'")
    assert f"{job_id}:0.0" in seen_units  # the split halves show up as their own units
    failed = [u for u, f in JobStore(redis_client()).units(job_id) if f["state"] == "failed"]
    assert len(failed) == 1 and _units_in(flower, "FAILURE") == failed  # the unit holding r-123
    retried = [task for task in tasks.values() if task["state"] == "RETRY"]
    assert len(retried) >= job.retries  # each retry ended its task in RETRY, not SUCCESS

    workers = flower.get("/api/workers", refresh="1").json()
    assert any(name.startswith("w0-") for name in workers)  # the worker's own node name
    shown = json.dumps([while_running, tasks, workers])
    for leaked in (CANARY_TOKEN, "r-123", "Department", "doesn't fit", "ORG_DEPT"):
        assert leaked not in shown, f"Flower shows {leaked!r}"
    assert CANARY_TOKEN not in flower.log_path.read_text()

    metrics = httpx.get(f"{flower.url}/metrics", timeout=10)  # Prometheus scrapes without login
    assert metrics.status_code == 200
    assert 'flower_events_total{task="importq.sourcing_data",type="task-succeeded"' in metrics.text


def redis_client() -> Any:
    from workers import app

    return app.redis_client()


def test_flower_filters_show_failed_and_retried_units_and_the_log_has_no_traceback(
    flower: Flower, fresh_simulators: dict[str, Any], start_worker: Any, tmp_path: Path
) -> None:
    receiver = fresh_simulators["http_batch"]
    secret = "canary-http-batch-secret-flower-7e21"
    # The first POST's answer is lost (a retry); ev-000123 is refused inside a 2xx answer.
    receiver.configure(auth_secret=secret, key_column="eventId", refuse_values={"ev-000123"},
                       lose_next=1, lost_answer="504", retry_after_seconds=0)  # fmt: skip
    worker = start_worker("http_batch", concurrency=1, HTTP_BATCH_AUTH_SECRET=secret)
    events = [{"eventId": f"ev-{n:06d}", "type": "purchase", "amount": 1.5} for n in range(600)]
    published = publish_file(tmp_path, "http_batch", "events.jsonl", jsonl(*events), "--json")
    assert published.exit_code == 0, published.output
    job = wait_for_job(json.loads(published.output[published.output.index("{") :])["id"])
    assert (job.state, job.records_dead, job.retries) == ("partial", 1, 1)
    tasks = _wait_for_tasks(flower, job.units_total)

    # Unit 0 was retried once, then delivered with ev-000123 refused: RETRY, then FAILURE.
    assert _units_in(flower, "FAILURE") == [f"{job.id}:0"]
    assert _units_in(flower, "RETRY") == [f"{job.id}:0"]
    assert _units_in(flower, "SUCCESS") == [f"{job.id}:1"]
    [failure] = [t for t in tasks.values() if t["state"] == "FAILURE"]
    assert "1 records were refused and dead-lettered" in failure["exception"]
    assert f"importq dlq show {job.id}" in failure["exception"]
    [retry] = [t for t in tasks.values() if t["state"] == "RETRY"]
    assert f"unit {job.id}:0 will be retried after attempt 1" in retry["exception"]
    shown = json.dumps(tasks)
    for leaked in (secret, "ev-000123", "purchase", "not accepted"):
        assert leaked not in shown, f"Flower shows {leaked!r}"

    worker.stop()
    log = worker.log_path.read_text()
    assert "raised expected: UnitFailed" in log  # a failed unit is one line...
    assert "Traceback" not in log  # ...never a traceback


def test_flower_api_refuses_a_request_without_the_login(flower: Flower) -> None:
    assert httpx.get(f"{flower.url}/api/tasks", timeout=10).status_code == 401
    wrong = httpx.get(f"{flower.url}/api/tasks", auth=(LOGIN[0], "wrong"), timeout=10)
    assert wrong.status_code == 401
    assert flower.get("/api/tasks").status_code == 200


def test_importq_flower_refuses_to_listen_beyond_this_machine_without_a_login() -> None:
    with pytest.raises(Exception, match="FLOWER_BASIC_AUTH is not set"):
        check_basic_auth({}, "0.0.0.0")
    with pytest.raises(Exception, match="entry 2 is not user:password") as refused:
        check_basic_auth({"FLOWER_BASIC_AUTH": "a:secret-one,oops"}, "0.0.0.0")
    assert "secret-one" not in str(refused.value)
    assert "no login" in (check_basic_auth({}, "127.0.0.1") or "")
    assert check_basic_auth({"FLOWER_BASIC_AUTH": "a:b"}, "0.0.0.0") is None


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--window-size=1400,900",
        "--virtual-time-budget=5000",  # let the page's table load its rows first
    ]  # fmt: skip
    return subprocess.run(
        [str(CHROMIUM), *flags, *args], capture_output=True, text=True, timeout=90
    )


def test_flower_tasks_page_lists_importq_tasks_in_a_browser(
    flower: Flower, sim: Any, start_worker: Any, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (`make chromium` installs Debian's)")
    sim.configure(latency_seconds=0.3)
    start_worker(concurrency=2)
    job_id = publish_sourcing(sample_records(12_000))  # three slow queue items: seconds
    _first_tasks(flower)  # the browser looks while the job runs
    page = f"http://{LOGIN[0]}:{LOGIN[1]}@127.0.0.1:{flower.port}/tasks"
    screenshot = tmp_path / "flower-tasks.png"
    shot = _chromium(f"--screenshot={screenshot}", page, profile=tmp_path / "profile-shot")
    assert screenshot.exists() and screenshot.stat().st_size > 10_000, shot.stderr[-2000:]
    dom = _chromium("--dump-dom", page, profile=tmp_path / "profile-dom")
    assert "importq.sourcing_data" in dom.stdout, dom.stderr[-2000:]
    assert f"job={job_id} unit={job_id}:" in dom.stdout
    assert CANARY_TOKEN not in dom.stdout
    assert wait_for_job(job_id).state == "succeeded"
