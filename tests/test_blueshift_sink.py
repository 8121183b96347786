"""Blueshift client, CSV staging format, planning and sink outcomes, in-process (MockTransport)."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog

from importq.errors import (
    AuthError,
    ConfigError,
    FinalError,
    InputError,
    NotApplied,
    NotFoundError,
    RateLimited,
    RejectedError,
    RetryableError,
)
from importq.settings import Secret, Settings, load
from simulators.blueshift import TRIGGER_PATH, BlueshiftSimulator, SimConfig
from workers.targets.base import Delivered, Record, RunContext
from workers.targets.blueshift.client import BlueshiftClient, ImportNotTriggerable
from workers.targets.blueshift.limits import S3_MIN_PART_BYTES, BlueshiftLimits
from workers.targets.blueshift.s3 import CsvReader, cell, columns_of
from workers.targets.blueshift.sink import BlueshiftConnections, BlueshiftSink

KEY = "unit-test-blueshift-key"
UUID = "0b8a6c1e-2f3d-4e5a-8b7c-9d0e1f2a3b4c"
SINK = BlueshiftSink()
LIMITS = BlueshiftLimits(busy_retry_seconds=7.0, resend_attempts=2)


@pytest.fixture
def sim() -> BlueshiftSimulator:
    return BlueshiftSimulator(SimConfig(api_key=KEY, imports={UUID: "launched"}))


def client_for(sim: BlueshiftSimulator, key: str = KEY) -> BlueshiftClient:
    return BlueshiftClient("http://sim", Secret(key), transport=httpx.MockTransport(sim))


class Unit:
    """One unit run again and again like the core does, keeping what it remembered."""

    def __init__(self, sim: BlueshiftSimulator, records: list[Record] | None = None) -> None:
        self.sim = sim
        self.records = records or []
        self.remote: dict[str, str] = {}

    def run(self, limits: BlueshiftLimits = LIMITS) -> Delivered:
        ctx = RunContext(
            unit_id="job1:0",
            attempt=1,
            records=self.records,
            params={"uuid": UUID},
            remote=dict(self.remote),
            client=BlueshiftConnections(client_for(self.sim), staging=None),
            limits=limits,
            settings=Settings(),
            log=structlog.get_logger("test"),
            remember=self.remote.update,
            checkpoint=lambda: None,
        )
        return SINK.run(ctx)


# -- the client ----------------------------------------------------------------------------


def test_trigger_sends_the_uuid_with_the_key_as_basic_username() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "ok"})

    BlueshiftClient("https://api.eu.getblueshift.com/", Secret(KEY),
                    transport=httpx.MockTransport(handler)).trigger(UUID)  # fmt: skip
    request = seen[0]
    assert (request.method, str(request.url)) == (
        "POST", f"https://api.eu.getblueshift.com{TRIGGER_PATH}")  # fmt: skip
    assert json.loads(request.content) == {"uuid": UUID}
    assert (
        request.headers["Authorization"] == "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    )


@pytest.mark.parametrize(
    ("status", "cls", "phrases"),
    [
        (401, AuthError, ["Not authorized", "BLUESHIFT_API_KEY was refused", UUID]),
        (404, NotFoundError, ["Resource not found", f"no customer import {UUID}", "region"]),
        (405, ImportNotTriggerable, ["Action not supported"]),
        (429, RateLimited, ["Rate limit exceeded"]),
        (500, RetryableError, ["contact support"]),
        (502, RetryableError, ["Bad Gateway"]),
        (503, NotApplied, ["Service Unavailable"]),  # refused before processing: resent
        (504, RetryableError, ["Gateway Timeout"]),
    ],
)
def test_vendor_answers_map_to_importq_errors(
    sim: BlueshiftSimulator, status: int, cls: type[Exception], phrases: list[str]
) -> None:
    if status == 401:
        client = client_for(sim, key="another-key")
    elif status == 404:
        sim.configure(imports={})
        client = client_for(sim)
    else:
        sim.configure(answers={UUID: [status]})
        client = client_for(sim)
    with pytest.raises(cls) as caught:
        client.trigger(UUID)
    assert type(caught.value) is cls
    assert getattr(caught.value, "status", None) == status
    for phrase in phrases:
        assert phrase in str(caught.value)
    assert "another-key" not in str(caught.value) and KEY not in str(caught.value)


def test_a_400_is_final_but_never_bisected() -> None:
    client = BlueshiftClient("http://sim", Secret(KEY), transport=httpx.MockTransport(
        lambda request: httpx.Response(400, json={"message": "uuid is malformed"})))  # fmt: skip
    with pytest.raises(FinalError) as caught:
        client.trigger(UUID)
    assert not isinstance(
        caught.value, RejectedError
    )  # one file, one trigger: no record to isolate
    assert "uuid is malformed" in str(caught.value)


def test_retry_after_of_a_429_is_kept(sim: BlueshiftSimulator) -> None:
    sim.configure(answers={UUID: [429]}, retry_after_seconds=42)
    with pytest.raises(RateLimited) as caught:
        client_for(sim).trigger(UUID)
    assert caught.value.retry_after == 42 and isinstance(caught.value, NotApplied)


# -- the sink's outcomes -------------------------------------------------------------------


def test_a_405_is_retried_after_the_setting_then_fails_with_the_three_causes(
    sim: BlueshiftSimulator,
) -> None:
    sim.configure(imports={UUID: "not_launched"})
    unit = Unit(sim)
    for attempt in (1, 2):
        with pytest.raises(RetryableError) as caught:
            unit.run()
        assert caught.value.retry_after == 7.0 and caught.value.status == 405
        assert f"{attempt} of 3" in str(caught.value)
    with pytest.raises(FinalError) as final:
        unit.run()
    message = str(final.value)
    for cause in ("not Amazon S3", "not launched", "still processing an earlier run"):
        assert cause in message
    assert "Action not supported" in message and UUID in message
    assert unit.remote["http_405"] == "3"
    assert sim.ledger()["accepted_total"] == 0


def test_an_import_still_processing_is_triggered_once_it_is_done(
    sim: BlueshiftSimulator,
) -> None:
    sim.configure(busy_triggers={UUID: 2})
    unit = Unit(sim)
    for _ in range(2):
        with pytest.raises(RetryableError):
            unit.run()
    assert unit.run() == Delivered(0)
    assert sim.ledger()["accepted"] == {UUID: 1}


def test_500_is_retried_a_bounded_number_of_times(sim: BlueshiftSimulator) -> None:
    sim.configure(answers={UUID: [500] * 5})
    unit = Unit(sim)
    for _ in range(2):
        with pytest.raises(RetryableError) as caught:
            unit.run()
        assert not isinstance(caught.value, FinalError)
    with pytest.raises(FinalError, match=r"500 to the trigger of import .* 3 times"):
        unit.run()


def test_429_and_503_are_resent_in_place_honouring_retry_after(sim: BlueshiftSimulator) -> None:
    sim.configure(answers={UUID: [429, 503]}, retry_after_seconds=0)
    unit = Unit(sim)
    assert unit.run(BlueshiftLimits(resend_attempts=3)) == Delivered(0)
    assert sim.ledger()["triggers"] == {UUID: 3}


def test_a_long_retry_after_hands_the_unit_back_instead_of_blocking(
    sim: BlueshiftSimulator,
) -> None:
    sim.configure(answers={UUID: [429]}, retry_after_seconds=600)
    with pytest.raises(RateLimited) as caught:
        Unit(sim).run()
    assert caught.value.retry_after == 600  # the core waits that long before the next attempt
    assert sim.ledger()["triggers"] == {UUID: 1}


def test_a_trigger_accepted_before_a_crash_is_not_sent_again(sim: BlueshiftSimulator) -> None:
    unit = Unit(sim)
    unit.run()
    assert "triggered_at" in unit.remote
    unit.run()  # the unit runs again, e.g. its worker died before recording the outcome
    assert sim.ledger()["triggers"] == {UUID: 1}


def test_records_without_a_bucket_fail_with_what_to_set(sim: BlueshiftSimulator) -> None:
    with pytest.raises(FinalError, match="BLUESHIFT_S3_BUCKET is not set"):
        Unit(sim, [{"email": "a@example.com"}]).run()
    assert sim.ledger()["triggers"] == {}  # never triggered without the file in place


def test_triggers_of_one_import_share_a_slot_of_one_and_its_order() -> None:
    params = SINK.check_params({"uuid": UUID.upper()}, Settings())
    assert SINK.slot(params, LIMITS) == (f"uuid:{UUID}", 1)
    assert SINK.order_key(params) == f"uuid:{UUID}"


# -- parameters and planning ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "phrase"),
    [
        ({}, "--param uuid=<uuid>"),
        ({"uuid": "import-42"}, "'import-42' is not a UUID"),
        ({"uuid": UUID, "uid": "x"}, "unknown blueshift option(s): uid"),
        ({"uuid": UUID, "columns": "email,,name"}, "empty name"),
        ({"uuid": UUID, "columns": "email,email"}, "email more than once"),
        ({"uuid": UUID, "s3_prefix": "s3://bucket/x"}, "not a URL"),
    ],
)
def test_bad_parameters_are_refused(params: dict[str, Any], phrase: str) -> None:
    with pytest.raises(InputError) as caught:
        SINK.check_params(params, Settings())
    assert phrase in str(caught.value)


def test_parameters_are_normalised() -> None:
    checked = SINK.check_params(
        {"uuid": f" {UUID.upper()} ", "columns": " email , name", "s3_prefix": "/in/x/"},
        Settings(),
    )
    assert checked == {"uuid": UUID, "columns": ["email", "name"], "s3_prefix": "in/x"}


def located(records: list[Record]) -> Iterator[tuple[Record, str]]:
    return ((record, f"in.jsonl:{n}") for n, record in enumerate(records, start=1))


def test_all_records_form_one_unit() -> None:
    records = [{"customer_id": str(n)} for n in range(5000)]
    units = list(SINK.plan(located(records), LIMITS, {"uuid": UUID}))
    assert units == [records]


def test_input_over_the_byte_budget_is_refused_where_it_passes() -> None:
    records = [{"id": "x" * 90}] * 20  # 99 bytes of JSON each, 100 with the comma
    with pytest.raises(InputError, match=r"in.jsonl:11: .*BLUESHIFT_MAX_IMPORT_BYTES"):
        list(SINK.plan(located(records), BlueshiftLimits(max_import_bytes=1000), {"uuid": UUID}))


@pytest.mark.parametrize(
    ("record", "params", "phrase"),
    [
        ({}, {}, "in.jsonl:1: empty record"),
        ({"email": "a@example.com", "tier": "gold"}, {"columns": ["email"]}, "in.jsonl:1: tier"),
    ],
)
def test_records_that_make_no_row_are_refused(
    record: Record, params: dict[str, Any], phrase: str
) -> None:
    with pytest.raises(InputError) as caught:
        list(SINK.plan(located([record]), LIMITS, {"uuid": UUID, **params}))
    assert phrase in str(caught.value)


def test_limits_come_from_settings_with_s3_part_floor() -> None:
    limits = BlueshiftLimits.from_settings(load({
        "BLUESHIFT_405_ATTEMPTS": "5", "BLUESHIFT_405_RETRY_SECONDS": "0.5",
        "BLUESHIFT_S3_MULTIPART_CHUNKSIZE": str(S3_MIN_PART_BYTES),
        "BLUESHIFT_MAX_IMPORT_BYTES": "1",
    }))  # fmt: skip
    assert (limits.busy_attempts, limits.busy_retry_seconds) == (5, 0.5)
    assert limits.multipart_chunk_bytes == S3_MIN_PART_BYTES
    assert limits.max_import_bytes == 1
    with pytest.raises(ConfigError, match="BLUESHIFT_S3_MULTIPART_CHUNKSIZE='1000'"):
        BlueshiftLimits.from_settings(load({"BLUESHIFT_S3_MULTIPART_CHUNKSIZE": "1000"}))


# -- the CSV -------------------------------------------------------------------------------


def test_csv_has_the_union_of_keys_as_header_and_json_scalars_as_cells() -> None:
    records: list[Record] = [
        {"customer_id": "1", "email": "a@example.com"},
        {"customer_id": "2", "vip": True, "score": 2.5, "nickname": 'Bo, "the" one'},
        {"email": "c@example.com", "vip": False, "score": None},
    ]
    columns = columns_of(records)
    assert columns == ["customer_id", "email", "vip", "score", "nickname"]
    rows = list(csv.reader(io.TextIOWrapper(io.BufferedReader(CsvReader(records, columns)))))
    assert rows == [
        columns,
        ["1", "a@example.com", "", "", ""],
        ["2", "", "true", "2.5", 'Bo, "the" one'],
        ["", "c@example.com", "false", "", ""],
    ]


def test_csv_is_rendered_in_small_reads_without_losing_a_byte() -> None:
    records: list[Record] = [{"customer_id": str(n), "name": "é" * (n % 7)} for n in range(3000)]
    whole = CsvReader(records, ["customer_id", "name"]).read()
    reader = CsvReader(records, ["customer_id", "name"])
    pieces = []
    while piece := reader.read(777):
        pieces.append(piece)
    assert b"".join(pieces) == whole and reader.size == len(whole)
    assert whole.decode().count("\r\n") == 3001


@pytest.mark.parametrize("value", [3, -2, 0, 2.5, 1e-07, 1e21, 10**30, True, False])
def test_number_and_boolean_cells_read_as_json_writes_them(value: Any) -> None:
    assert cell(value) == json.dumps(value)
