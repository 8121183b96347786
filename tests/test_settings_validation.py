"""Settings that mean nothing are refused where they are read, naming the variable and what is
accepted; a value past a vendor limit is clamped and said once. A worker refuses to start a
target whose settings are wrong instead of dead-lettering its every job."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from importq.errors import ConfigError
from importq.settings import load
from tests.conftest import Worker
from workers import ratelimit
from workers.targets import TARGETS
from workers.targets.blueshift.limits import BlueshiftLimits
from workers.targets.datasource.limits import DataSourceLimits
from workers.targets.sourcing_data.limits import SourcingDataLimits
from workers.targets.workflow_import.limits import WorkflowImportLimits


def refusal(call: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        call()
    return str(caught.value)


def test_zero_records_per_item_is_refused_not_read_as_one() -> None:
    message = refusal(
        lambda: SourcingDataLimits.from_settings(load({"SOURCING_DATA_RECORDS_PER_ITEM": "0"}))
    )
    assert "SOURCING_DATA_RECORDS_PER_ITEM='0'" in message
    assert "1 to 4000" in message


def test_a_value_over_the_vendor_limit_is_clamped_and_said_once() -> None:
    settings = load({"SOURCING_DATA_RECORDS_PER_ITEM": "99999"})
    with capture_logs() as logs:
        first = SourcingDataLimits.from_settings(settings)
        again = SourcingDataLimits.from_settings(settings)
    assert first.records_per_item == again.records_per_item == 4000
    said = [line for line in logs if line.get("variable") == "SOURCING_DATA_RECORDS_PER_ITEM"]
    assert len(said) == 1, logs
    assert said[0]["log_level"] == "warning"
    assert (said[0]["value"], said[0]["used"]) == ("99999", 4000)


@pytest.mark.parametrize(
    ("env", "phrases"),
    [
        ({"IMPORTQ_MAX_ATTEMPTS": "0"}, ["IMPORTQ_MAX_ATTEMPTS='0'", "at least 1"]),
        ({"IMPORTQ_MAX_ATTEMPTS": "2.5"}, ["IMPORTQ_MAX_ATTEMPTS='2.5'", "whole number"]),
        ({"IMPORTQ_MAX_CRASHES": "0"}, ["IMPORTQ_MAX_CRASHES='0'", "at least 1"]),
        ({"IMPORTQ_LEASE_SECONDS": "0"}, ["IMPORTQ_LEASE_SECONDS='0'", "above 0"]),
        ({"IMPORTQ_REAPER_INTERVAL": "abc"}, ["IMPORTQ_REAPER_INTERVAL='abc'", "not a number"]),
        ({"IMPORTQ_LOG_FORMAT": "xml"}, ["IMPORTQ_LOG_FORMAT='xml'", "auto, json, kv"]),
        ({"IMPORTQ_LOG_LEVEL": "LOUD"}, ["IMPORTQ_LOG_LEVEL='LOUD'", "DEBUG"]),
        ({"IMPORTQ_ALLOW_EVICTION": "maybe"}, ["IMPORTQ_ALLOW_EVICTION='maybe'", "true or false"]),
    ],
)
def test_core_settings_are_validated_where_they_are_read(
    env: dict[str, str], phrases: list[str]
) -> None:
    message = refusal(lambda: load(env))
    for phrase in phrases:
        assert phrase in message


@pytest.mark.parametrize(
    ("limits", "env", "phrases"),
    [
        (DataSourceLimits, {"DATASOURCE_NEW_ROWS_PER_REQUEST": "0"}, ["1 to 1500"]),
        (DataSourceLimits, {"DATASOURCE_TIMEOUT": "0"}, ["DATASOURCE_TIMEOUT='0'", "above 0"]),
        (SourcingDataLimits, {"SOURCING_DATA_ITEMS_IN_FLIGHT": "0"}, ["at least 1"]),
        (SourcingDataLimits, {"SOURCING_DATA_BYTES_PER_ITEM": "-5"}, ["at least 1"]),
        (WorkflowImportLimits, {"WORKFLOW_IMPORT_RECORDS_PER_BATCH": "0"}, ["at least 1"]),
        (WorkflowImportLimits, {"WORKFLOW_IMPORT_REPOST_UNKNOWN": "sure"}, ["true or false"]),
        (BlueshiftLimits, {"BLUESHIFT_MAX_IMPORT_BYTES": "0"}, ["at least 1"]),
        (BlueshiftLimits, {"BLUESHIFT_405_ATTEMPTS": "1.5"}, ["whole number"]),
        (BlueshiftLimits, {"BLUESHIFT_S3_MULTIPART_CHUNKSIZE": "1000"}, ["at least 5242880"]),
    ],
)
def test_target_limits_are_validated_where_they_are_read(
    limits: Any, env: dict[str, str], phrases: list[str]
) -> None:
    message = refusal(lambda: limits.from_settings(load(env)))
    assert f"{next(iter(env))}=" in message
    for phrase in phrases:
        assert phrase in message


def test_an_unknown_datasource_format_is_refused_naming_the_choices() -> None:
    message = refusal(lambda: TARGETS["datasource"].client(load({
        "DATASOURCE_URL": "http://x/api/v2/datasource", "DATASOURCE_COMPANY_ID": "1",
        "DATASOURCE_INTEGRATION_KEY": "unused-integration-key-7c1e", "DATASOURCE_FORMAT": "yaml",
    })))  # fmt: skip
    assert "DATASOURCE_FORMAT='yaml'" in message and "json or xml" in message


def test_a_rate_that_is_not_a_rate_is_refused_without_redis() -> None:
    settings = load({"IMPORTQ_RATE_LIMIT_BLUESHIFT": "fast"})
    message = refusal(lambda: ratelimit.rate_for("blueshift", settings))
    assert "IMPORTQ_RATE_LIMIT_BLUESHIFT='fast'" in message and "5/second" in message
    assert ratelimit.rate_for("blueshift", load({})) is None


@pytest.mark.parametrize(
    ("queue", "variable", "value"),
    [
        ("sourcing_data", "SOURCING_DATA_RECORDS_PER_ITEM", "0"),
        ("workflow_import", "IMPORTQ_MAX_ATTEMPTS", "0"),
        ("datasource", "DATASOURCE_FORMAT", "yaml"),
        ("blueshift", "IMPORTQ_RATE_LIMIT_BLUESHIFT", "fast"),
    ],
)
def test_a_worker_refuses_to_start_a_target_whose_settings_are_wrong(
    tmp_path: Path, simulators: Any, queue: str, variable: str, value: str
) -> None:
    env = {**os.environ, variable: value}
    worker = Worker(tmp_path / "w.log", queue, 1, f"bad-{queue}@localhost", env)
    try:
        assert worker.process.wait(timeout=60) != 0
    finally:
        worker.stop()
    log = worker.log_path.read_text()
    assert f"{variable}={value!r}" in log, log[-3000:]
    assert " ready." not in log


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BLUE_ROWS_PER_PUSH", "0"),
        ("BLUE_TIMEOUT", "0"),
        ("BLUE_PREPARE_TIMEOUT", "-5"),
        ("BLUE_BUSY_RETRY", "0"),
        ("BLUE_PROGRESS_INTERVAL", "0.001"),
    ],
)
def test_blue_settings_that_mean_nothing_are_refused_not_bent(variable: str, value: str) -> None:
    from workers.targets.blue.limits import BlueLimits

    message = refusal(lambda: BlueLimits.from_settings(load({variable: value})))
    assert f"{variable}={value!r}" in message
