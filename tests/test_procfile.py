"""The Procfile runs Flower and one worker per target, for real, under honcho.

honcho starts every process of the Procfile against the test Redis and the
simulators; each registered target's demo job must succeed, and SIGTERM to
honcho must leave no worker or Flower process behind.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from producers.publish import locate, publish
from simulators import load
from tests.conftest import SIM_PORTS, free_port
from tests.helpers import wait_for_job
from tests.serving import READER, tokens
from workers.jobs import JobStore
from workers.targets import TARGETS

ROOT = Path(__file__).resolve().parent.parent


def _procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    entries = (line.partition(":") for line in lines if line.strip() and not line.startswith("#"))
    commands = {name.strip(): shlex.split(command) for name, _, command in entries}
    for name, command in commands.items():
        assert command[0] == "exec", f"{name}: exec the process so the runner can stop it"
    return {name: command[1:] for name, command in commands.items()}


def test_procfile_serves_flower_the_api_and_one_worker_per_target() -> None:
    processes = _procfile()
    assert processes["web"][:2] == ["importq", "flower"]
    assert processes["api"] == ["importq", "serve"]  # its address and port: IMPORTQ_SERVE_*
    assert "${PORT:-5555}" in processes["web"]
    for target in TARGETS:
        command = processes[f"worker_{target}"]
        assert command[:4] == ["celery", "-A", "workers.app", "worker"]
        assert command[command.index("-Q") + 1] == target
        assert f"{target}@%h" in command  # distinct node names, even on one machine
    blue = processes["worker_blue"]
    assert blue[blue.index("--concurrency") + 1] == "1"


def _processes_marked(marker: str) -> list[int]:
    """Every live process whose environment holds `marker` (honcho's and its children's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:  # ended meanwhile, or not ours to read
            continue
    return found


def _honcho_env(
    tmp_path: Path, marker: str, port: int, metrics_port: int, api_port: int
) -> dict[str, str]:
    env = dict(os.environ)
    for target, sim_port in SIM_PORTS.items():  # each simulator's default fake credentials
        env.update(load(target).client_env(f"http://127.0.0.1:{sim_port}"))
    bin_dir = str(Path(sys.executable).parent)  # importq and celery of this venv
    env.update(
        PATH=f"{bin_dir}:{env.get('PATH', '')}",
        PORT=str(port),
        FLOWER_BASIC_AUTH="fake-flower-user:fake-flower-password",
        WORKER_CONCURRENCY="1",
        METRICS_PORT=str(metrics_port),
        IMPORTQ_SERVE_PORT=str(api_port),
        IMPORTQ_SERVE_TOKENS=tokens(),
        IMPORTQ_TEST_MARKER=marker,
    )
    return env


def _wait_until_up(log: Path, honcho: subprocess.Popen[bytes], port: int) -> None:
    workers = sum(name.startswith("worker_") for name in _procfile())
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert honcho.poll() is None, log.read_text()[-4000:]
        ready = len(re.findall(r" ready\.", log.read_text()))
        try:
            flower_up = httpx.get(f"http://127.0.0.1:{port}/healthcheck", timeout=1).text == "OK"
        except httpx.TransportError:
            flower_up = False
        if flower_up and ready >= workers and b"Application startup complete" in log.read_bytes():
            return
        time.sleep(0.3)
    raise AssertionError("the Procfile's processes did not come up: " + log.read_text()[-4000:])


def _publish_demo_jobs() -> dict[str, str]:
    from workers import app

    jobs = {}
    for target in TARGETS:
        params, records = load(target).demo_job(30)
        located = None if records is None else locate(records, f"{target} demo")  # a bare trigger
        jobs[target] = publish(
            target, located, params, settings=app.settings(),
            store=JobStore(app.redis_client()), publish_unit=app.publish_unit,
        )  # fmt: skip
    return jobs


def test_honcho_runs_the_procfile_and_every_target_delivers(
    fresh_simulators: dict[str, Any], tmp_path: Path
) -> None:
    marker = uuid.uuid4().hex
    port, metrics_port, api_port = free_port(), free_port(), free_port()
    log = tmp_path / "honcho.log"
    (tmp_path / "empty.env").write_text("")  # not the developer's .env
    command = [sys.executable, "-m", "honcho", "start", "-f", "Procfile", "--no-colour",
               "-e", str(tmp_path / "empty.env")]  # fmt: skip
    with log.open("wb") as out:
        honcho = subprocess.Popen(
            command, cwd=ROOT, env=_honcho_env(tmp_path, marker, port, metrics_port, api_port),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        _wait_until_up(log, honcho, port)
        api = httpx.get(f"http://127.0.0.1:{api_port}/v1/targets", timeout=10,
                        headers={"Authorization": f"Bearer {READER}"})  # fmt: skip
        assert [view["target"] for view in api.json()] == list(TARGETS)
        for target, job_id in _publish_demo_jobs().items():
            job = wait_for_job(job_id, timeout=60)
            assert job.state == "succeeded", (target, job)
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        for target in TARGETS:  # the metrics process counts what every worker did
            assert f'importq_units_total{{state="succeeded",target="{target}"}}' in metrics
        honcho.send_signal(signal.SIGTERM)
        honcho.wait(timeout=30)
        output = log.read_text()
        stopped = re.findall(r"\| (\w+)\.1 stopped \(rc=(-?\d+)\)", output)
        assert dict(stopped) == {name: "0" for name in _procfile()}, output[-4000:]
        assert _processes_marked(marker) == [], "processes outlived honcho"
    finally:
        for pid in _processes_marked(marker):
            os.kill(pid, signal.SIGKILL)
