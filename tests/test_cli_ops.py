"""`importq simulate` and `importq worker` as an operator runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
from click.testing import CliRunner

from importq.cli import main
from tests.conftest import free_port


def test_simulate_serves_every_registered_target_and_stops_on_sigterm() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "importq.cli", "simulate", "--port", str(port)],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(f"sourcing_data http://127.0.0.1:{port}/api/asol/ds")
        ledger = httpx.get(f"http://127.0.0.1:{port}/_sim/ledger").json()
        assert ledger["committed_records"] == 0
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_worker_refuses_an_unknown_target() -> None:
    result = CliRunner().invoke(main, ["worker", "--targets", "sourcing_data,salesforce"])
    assert result.exit_code == 2
    assert "salesforce" in result.output
