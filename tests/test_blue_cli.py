"""`importq worker` keeps the blue queue at concurrency 1, whatever else it runs."""

from __future__ import annotations

import os
from typing import Any

import pytest
from click.testing import CliRunner

from importq.cli import main, services


def _options(argv: list[str]) -> tuple[str, str | None, str | None]:
    def after(flag: str) -> str | None:
        return argv[argv.index(flag) + 1] if flag in argv else None

    return str(after("-Q")), after("--concurrency"), after("-n")


def test_blue_with_other_targets_gets_a_worker_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[list[str]] = []
    monkeypatch.setattr(services, "_run_side_by_side", lambda argvs: started.extend(argvs) or 0)
    result = CliRunner().invoke(main, ["worker", "--targets", "sourcing_data,blue", "-c", "4"])
    assert result.exit_code == 0, result.output
    pid = os.getpid()  # default node names are unique per `importq worker` process
    assert [_options(argv) for argv in started] == [
        ("sourcing_data", "4", f"importq-{pid}@%h"),
        ("blue", "1", f"blue-{pid}@%h"),
    ]


@pytest.mark.parametrize("args", [["--targets", "blue", "-c", "3"], ["--targets", "blue"]])
def test_a_blue_only_worker_runs_one_process(monkeypatch: pytest.MonkeyPatch, args: Any) -> None:
    execs: list[list[str]] = []
    monkeypatch.setattr(services.os, "execv", lambda path, argv: execs.append(argv))
    assert CliRunner().invoke(main, ["worker", *args]).exit_code == 0
    assert _options(execs[0])[:2] == ("blue", "1")
