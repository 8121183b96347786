"""Ordinary faults through the real `importq` command: one line and a documented exit code.

Redis down (a closed port), lost during a command, or REDIS_URL unreadable: 5; a port
taken: 6; no such job: 4.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from importq.cli import main
from importq.cli.common import ExitCode
from tests.conftest import free_port


def _importq(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "importq.cli", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _one_error_line(result: Any) -> str:
    """The error a fault printed, checked to be one line and no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    assert result.stdout == ""
    return errors[0]


@pytest.fixture
def listening() -> Iterator[int]:
    """A port something listens on."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_a_redis_url_without_scheme_is_one_line_and_exit_5() -> None:
    result = _importq("jobs", REDIS_URL="localhost:6379")
    assert result.returncode == ExitCode.REDIS_UNAVAILABLE == 5
    error = _one_error_line(result)
    assert "REDIS_URL='localhost:6379' is not a Redis URL" in error
    assert "redis://[:password@]host:6379/0" in error


@pytest.mark.parametrize(
    ("setting", "value", "code", "said"),
    [
        ("REDIS_URL", "localhost:6379", ExitCode.REDIS_UNAVAILABLE,
         "REDIS_URL='localhost:6379' is not a Redis URL"),
        ("IMPORTQ_LEASE_SECONDS", "0", ExitCode.FAILED, "IMPORTQ_LEASE_SECONDS"),
    ],
)  # fmt: skip
def test_celery_worker_run_directly_refuses_a_bad_setting_in_one_line(
    setting: str, value: str, code: ExitCode, said: str
) -> None:
    # What the Procfile and docker-compose run: Celery's own command, not `importq worker`.
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", "sourcing_data"],
        env={**os.environ, setting: value}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == code, result.stderr
    assert said in _one_error_line(result)


@pytest.mark.parametrize(
    "command",
    [
        ["status", "0abc"],
        ["jobs"],
        ["dlq", "list"],
        ["worker", "--targets", "sourcing_data"],
        ["flower", "--port", "{port}"],
        ["metrics", "--port", "{port}"],
    ],
)
def test_redis_down_is_one_line_and_exit_5_at_once_without_the_password(
    command: list[str],
) -> None:
    closed = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    args = [arg.format(port=free_port()) for arg in command]
    started = time.monotonic()
    result = _importq(*args, REDIS_URL=closed)
    assert time.monotonic() - started < 20  # not the client's 45 s of retries
    assert result.returncode == ExitCode.REDIS_UNAVAILABLE, result.stderr
    error = _one_error_line(result)
    assert "does not answer" in error and "start it or fix REDIS_URL" in error
    assert "hunter2-secret" not in result.stdout + result.stderr
    assert "redis://:***@127.0.0.1" in error


def test_publish_to_a_redis_that_is_down_stages_nothing_and_exits_5(tmp_path: Any) -> None:
    records = tmp_path / "in.jsonl"
    records.write_text('{"entityId": "e", "recordId": "1"}\n')
    closed = f"redis://127.0.0.1:{free_port()}/0"
    result = _importq("publish", "sourcing_data", str(records), "--no-check", REDIS_URL=closed)
    assert result.returncode == ExitCode.REDIS_UNAVAILABLE
    assert "does not answer" in _one_error_line(result)


@pytest.mark.parametrize(
    "command",
    [
        ["status", "0nosuchjob"],
        ["status", "0nosuchjob", "--wait"],
        ["status", "0nosuchjob", "--timeout", "5"],
        ["cancel", "0nosuchjob"],
        ["release", "0nosuchjob"],
        ["dlq", "show", "0nosuchjob"],
        ["dlq", "export", "0nosuchjob"],
        ["dlq", "replay", "0nosuchjob"],
    ],
)
def test_an_unknown_job_is_exit_4_not_failed(command: list[str], redis_client: redis.Redis) -> None:
    result = CliRunner().invoke(main, command)
    assert result.exit_code == ExitCode.UNKNOWN_JOB == 4, result.output
    error = _one_error_line(result)
    assert error == "Error: no job 0nosuchjob: mistyped, or its state expired (see `importq jobs`)"


def test_an_unknown_job_through_the_installed_command_is_exit_4(redis_client: redis.Redis) -> None:
    result = _importq("status", "0nosuchjob")
    assert result.returncode == 4
    _one_error_line(result)


@pytest.mark.parametrize(
    ("command", "option"),
    [(["metrics"], "--port"), (["flower"], "--port (or FLOWER_PORT)")],
)
def test_a_taken_port_is_one_line_and_exit_6(
    command: list[str], option: str, listening: int
) -> None:
    result = _importq(*command, "--port", str(listening))
    assert result.returncode == ExitCode.PORT_UNAVAILABLE == 6
    error = _one_error_line(result)
    assert f"cannot listen on 127.0.0.1:{listening}: the port is in use" in error
    assert error.endswith(f"pick another port with {option}")
