"""Which Redis importq uses, the embedded one, the demo, and a Redis restart with AOF."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from click.testing import CliRunner

from importq import broker
from importq.cli import main
from importq.doctor import check_redis
from importq.settings import load
from tests.conftest import REDIS_URL, free_port
from tests.helpers import sample_records
from workers.targets import TARGETS


def _settings(home: Path, **env: str) -> Any:
    return load({"IMPORTQ_HOME": str(home), **env})


def test_redis_url_wins_over_everything(tmp_path: Path) -> None:
    choice = broker.choose(_settings(tmp_path, REDIS_URL="redis://example.invalid:1/0"))
    assert choice == broker.RedisChoice("redis://example.invalid:1/0", "REDIS_URL")


def test_embedded_redis_is_shared_has_aof_and_stops(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    url = broker.start_embedded(settings)
    try:
        assert broker.start_embedded(settings) == url  # a second caller finds the same one
        assert broker.choose(settings) == broker.RedisChoice(url, "embedded")
        client = redis.Redis.from_url(url)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("dir")["dir"] == str(tmp_path / "redis")
        pid = int((tmp_path / "redis" / "redis.pid").read_text())
    finally:
        assert broker.stop_embedded(settings)
    _wait_gone(pid)
    assert broker.embedded_url(settings) is None
    assert not broker.stop_embedded(settings)


def test_a_started_embedded_redis_wins_over_localhost_and_every_choice_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker, "LOCAL_URL", REDIS_URL)  # something answers on "localhost"
    monkeypatch.delenv("REDIS_URL")
    monkeypatch.setenv("IMPORTQ_HOME", str(tmp_path))
    cli = CliRunner()
    assert cli.invoke(main, ["redis", "status"]).stdout == (
        f"redis: localhost at {REDIS_URL} (REDIS_URL is unset, no embedded Redis runs under "
        f"{tmp_path / 'redis'}, and this one answers)\n"
    )
    started = cli.invoke(main, ["redis", "start"]).stdout
    embedded = re.search(r"embedded Redis at (redis://\S+)", started)
    assert embedded is not None
    url = embedded.group(1)
    try:
        running = f"embedded at {url} (running under {tmp_path / 'redis'})"
        assert f"commands now use {running}" in started
        assert cli.invoke(main, ["redis", "status"]).stdout == f"redis: {running}\n"
        warning = check_redis(_settings(tmp_path))[-1]
        assert (warning.name, warning.status) == ("redis choice", "warn")
        assert f"uses embedded at {url}, but localhost at {REDIS_URL} answers too" in (
            warning.detail
        )
        monkeypatch.setenv("REDIS_URL", REDIS_URL)  # said explicitly: it wins, and says so
        assert cli.invoke(main, ["redis", "status"]).stdout == (
            f"redis: {REDIS_URL} (set by REDIS_URL)\n"
        )
        assert "but embedded at" in check_redis(_settings(tmp_path, REDIS_URL=REDIS_URL))[-1].detail
    finally:
        stopped = cli.invoke(main, ["redis", "stop"]).stdout
    assert stopped.startswith("embedded Redis stopped\ncommands now use redis://")


def test_nothing_answering_starts_the_embedded_redis_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker, "LOCAL_URL", f"redis://127.0.0.1:{free_port()}/0")
    settings = _settings(tmp_path)
    with pytest.raises(broker.RedisUnavailable, match="no Redis: REDIS_URL is unset"):
        broker.choose(settings, start=False)
    choice = broker.choose(settings)
    try:
        assert choice.describe() == (
            f"redis: embedded at {choice.url} (started now under {tmp_path / 'redis'}; "
            "`importq redis stop` stops it)"
        )
        assert "redis choice" not in [c.name for c in check_redis(settings)]  # one candidate
    finally:
        broker.stop_embedded(settings)


def test_a_command_that_touches_redis_says_which_on_stderr(redis_client: redis.Redis) -> None:
    listed = _importq({**os.environ, "REDIS_URL": REDIS_URL}, "jobs")
    assert listed.stderr.splitlines()[0] == f"redis: {REDIS_URL} (set by REDIS_URL)"
    assert listed.stdout == ""


def test_password_is_masked_in_messages() -> None:
    assert broker.safe_url("redis://:hunter2@host:6379/0") == "redis://:***@host:6379/0"
    assert broker.safe_url("redis://host:6379/0") == "redis://host:6379/0"


def test_demo_runs_on_the_embedded_redis_and_leaves_nothing_behind(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["IMPORTQ_HOME"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "importq.cli", "demo", "--records", "3000"],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "embedded Redis" in result.stdout
    assert "3000 records committed, 0 twice" in result.stdout
    for name in TARGETS:  # every registered target, by registration alone
        assert re.search(rf"^  {name}: job \S+ succeeded", result.stdout, re.M), name
        # Each target's own bar, followed side by side, ends full (not only the first's).
        assert re.search(rf"^{name} +\[#{{30}}\] 100.0% ", result.stderr, re.M), name
    embedded = re.search(r"embedded Redis at (redis://\S+)", result.stdout)
    assert embedded is not None
    with pytest.raises(redis.ConnectionError):  # the embedded Redis it started is gone
        redis.Redis.from_url(embedded.group(1)).ping()
    assert not [p for p in psutil.process_iter() if _started_by_demo(p, tmp_path)]


def test_redis_restart_with_aof_loses_no_queued_record(
    tmp_path: Path, sim: Any, start_worker: Any
) -> None:
    port = free_port()
    server = _aof_redis(tmp_path, port)
    url = f"redis://127.0.0.1:{port}/0"
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in sample_records(6_000)))
    env = {**os.environ, "REDIS_URL": url}
    published = _importq(env, "publish", "sourcing_data", str(data), "--json")
    job_id = json.loads(published.stdout)["id"]
    server.send_signal(signal.SIGTERM)  # a clean restart: AOF written, process gone
    server.wait(timeout=20)
    server = _aof_redis(tmp_path, port)
    try:
        worker = start_worker(REDIS_URL=url)
        try:
            finished = _importq(env, "status", job_id, "--wait", check=False)
            assert finished.returncode == 0, finished.stdout + finished.stderr
            assert sim.ledger()["committed_records"] == 6_000
            assert sim.ledger()["duplicates"] == 0
        finally:
            # Before its Redis goes: a warm stop writes the worker's shutdown signal there,
            # and with Redis gone it waited out Process.stop's 20 s before being killed.
            worker.stop()
    finally:
        server.terminate()
        server.wait(timeout=20)


def _aof_redis(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    return broker.start_private(tmp_path, port=port, aof=True)[0]


def _importq(env: dict[str, str], *args: str, check: bool = True) -> Any:
    command = [sys.executable, "-m", "importq.cli", *args]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=180, check=check
    )


def _started_by_demo(process: psutil.Process, home: Path) -> bool:
    try:
        alive = process.status() != psutil.STATUS_ZOMBIE
        return alive and process.environ().get("IMPORTQ_HOME") == str(home)
    except psutil.Error:
        return False


def _wait_gone(pid: int) -> None:
    for _ in range(100):
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return
        time.sleep(0.05)
    raise AssertionError(f"redis {pid} still running")
