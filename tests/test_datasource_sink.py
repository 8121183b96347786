"""Data Source planning, requests and error mapping, against the simulator in-process."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog

from importq.errors import (
    AuthError,
    FinalError,
    InputError,
    NotApplied,
    RejectedError,
    RetryableError,
)
from importq.settings import Secret, Settings
from simulators.datasource import FAKE_KEY, DataSourceSimulator, SimConfig, data_source_id
from workers.retry import resend
from workers.targets.base import Record, RunContext
from workers.targets.datasource import sink as sink_module
from workers.targets.datasource.client import DataSourceClient, DataSourceRef, Header
from workers.targets.datasource.limits import DataSourceLimits
from workers.targets.datasource.sink import DataSourceSink, Publish, requests_for

URL = "http://sim/api/v2/datasource"
SINK = DataSourceSink()
LIMITS = DataSourceLimits()
HEADERS = "Code:Title,Name:SubLeft,Info"
REPLACE = {"mode": "replace", "external_id": "ds-1", "name": "Sports", "headers": HEADERS}


def rows(count: int, width: int = 3, first: int = 0) -> Iterator[tuple[Record, str]]:
    for n in range(first, first + count):
        yield {"Vals": [f"K{n}", *(f"v{n}.{c}" for c in range(1, width))]}, f"in.jsonl:{n + 1}"


def planned(records: Any, **params: str) -> list[list[Record]]:
    return list(SINK.plan(records, LIMITS, SINK.check_params({**REPLACE, **params}, Settings())))


def sizes(mode: str, count: int) -> list[tuple[str, int]]:
    (unit,) = planned(rows(count, width=1 if mode == "delete" else 3), mode=mode)
    vals = [record["Vals"] for record in unit]
    return [(kind, len(chunk)) for kind, chunk in requests_for(mode, vals, LIMITS)]


@pytest.fixture(autouse=True)
def fast_resend(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same resend policy, millisecond backoff: these tests count requests, not seconds."""
    monkeypatch.setattr(sink_module, "resend", functools.partial(resend, base=0.001, cap=0.01))


@pytest.fixture
def sim() -> DataSourceSimulator:
    return DataSourceSimulator(SimConfig(data_sources={"ds-1"}))


def client_for(handler: Any, body_format: str = "json", key: str = FAKE_KEY) -> DataSourceClient:
    transport = httpx.MockTransport(handler)
    return DataSourceClient(URL, 1, Secret(key), body_format=body_format, transport=transport)


def run(sim: DataSourceSimulator, records: list[Record], params: dict[str, str]) -> int:
    ctx = RunContext(
        unit_id="job:0",
        attempt=1,
        records=records,
        params=SINK.check_params(params, Settings()),
        remote={},
        client=client_for(sim),
        limits=LIMITS,
        settings=Settings(),
        log=structlog.get_logger(),
        remember=lambda values: None,
        checkpoint=lambda: None,
    )
    return SINK.run(ctx).count


def test_headers_param_names_the_columns_and_where_the_app_shows_them() -> None:
    publish = Publish.from_params(
        {**REPLACE, "headers": " Code:title, Name:SUBLEFT ,Info,Pic:Thumb"}
    )
    assert publish.headers == (
        Header("Code", "Title"),
        Header("Name", "SubLeft"),
        Header("Info"),
        Header("Pic", "Thumb"),
    )
    normalised = SINK.check_params(publish.params(), Settings())
    assert normalised["headers"] == "Code:Title,Name:SubLeft,Info,Pic:Thumb"
    assert SINK.check_params(normalised, Settings()) == normalised  # a dead-letter replay re-checks
    assert SINK.slot(normalised, LIMITS) == ("ds:ds-1", 1)
    assert SINK.order_key(normalised) == "ds-1"


@pytest.mark.parametrize(
    ("change", "phrases"),
    [
        ({"mode": ""}, ["param mode", "replace", "upsert", "delete"]),
        ({"mode": "merge"}, ["param mode", "'merge'"]),
        ({"external_id": ""}, ["param external_id", "ExternalId"]),
        ({"id": "not-a-guid"}, ["param id", "GUID"]),
        ({"name": " "}, ["param name", "Name"]),
        ({"headers": ""}, ["param headers", "required for replace"]),
        ({"headers": "Code"}, ["param headers", "at least 2"]),
        ({"headers": "Code:Left,Name"}, ["param headers", "Title, SubLeft, Thumb"]),
        ({"headers": "Code,Code"}, ["param headers", "'Code' twice"]),
        ({"colour": "red"}, ["unknown datasource option", "colour"]),
    ],
)
def test_bad_params_are_refused_naming_the_param(
    change: dict[str, str], phrases: list[str]
) -> None:
    with pytest.raises(InputError) as refused:
        SINK.check_params({**REPLACE, **change}, Settings())
    for phrase in phrases:
        assert phrase in str(refused.value)


@pytest.mark.parametrize(
    ("mode", "count", "expected"),
    [
        ("replace", 10_000, [("Rows", 10_000)]),
        ("replace", 10_001, [("Rows", 10_000), ("NewRows", 1)]),
        ("replace", 50_000, [("Rows", 10_000), *[("NewRows", 1_500)] * 26, ("NewRows", 1_000)]),
        ("upsert", 1_500, [("NewRows", 1_500)]),
        ("upsert", 1_501, [("NewRows", 1_500), ("NewRows", 1)]),
        ("delete", 500, [("DeletedRows", 500)]),
        ("delete", 501, [("DeletedRows", 500), ("DeletedRows", 1)]),
    ],
)
def test_a_publish_is_one_unit_cut_into_requests_at_the_vendor_limits(
    mode: str, count: int, expected: list[tuple[str, int]]
) -> None:
    assert sizes(mode, count) == expected


def test_more_than_50000_rows_are_refused_at_the_first_one_too_many() -> None:
    with pytest.raises(InputError, match=r"^in.jsonl:50001: more than 50000 rows"):
        planned(rows(50_001))


@pytest.mark.parametrize(
    ("record", "mode", "phrases"),
    [
        ({"Vals": ["K1"]}, "replace", ["1 Val(s) but 3 headers", "at least 2"]),
        ({"Vals": ["K1", "a", "b", "c"]}, "upsert", ["4 Val(s) but 3 headers (Code, Name, Info)"]),
        ({"Vals": ["", "a", "b"]}, "replace", ["Val 1 is empty", "key"]),
        ({"Vals": ["K1", "a\x00", "b"]}, "replace", ["Val 2", "control character"]),
        ({"Vals": ["K1", "a"]}, "delete", ["give 1 Val", "not 2"]),
        ({"Vals": {"Code": "K1", "Colour": "red"}}, "replace", ["Vals.Colour: not a header"]),
        ({"Vals": {"Code": "K1", "Name": "x"}}, "delete", ["Vals.Code only", "not Vals.Name"]),
    ],
)
def test_a_bad_row_is_refused_naming_it(record: Record, mode: str, phrases: list[str]) -> None:
    records = [*rows(2, width=1 if mode == "delete" else 3), (record, "in.jsonl:3")]
    with pytest.raises(InputError) as refused:
        planned(records, mode=mode)
    assert str(refused.value).startswith("in.jsonl:3: ")
    for phrase in phrases:
        assert phrase in str(refused.value)


def test_a_repeated_key_is_refused_naming_both_rows() -> None:
    with pytest.raises(InputError, match=r"^in.jsonl:3: key 'K0' \(Val 1\) repeats .* in.jsonl:1"):
        planned([*rows(2), ({"Vals": ["K0", "b", "c"]}, "in.jsonl:3")])


def test_vals_keyed_by_header_are_put_in_header_order_missing_ones_empty() -> None:
    keyed = [({"Vals": {"Info": "i", "Code": "K1"}}, "in.csv:2")]
    assert planned(keyed) == [[{"Vals": ["K1", "", "i"]}]]
    assert planned([({"Vals": {"Code": "K1"}}, "in.csv:2")], mode="delete") == [[{"Vals": ["K1"]}]]


def test_replace_then_upsert_then_delete_leave_exactly_the_expected_rows(
    sim: DataSourceSimulator,
) -> None:
    replace = [record for record, _ in rows(12_000)]
    assert run(sim, replace, REPLACE) == 12_000
    assert (
        run(
            sim,
            [{"Vals": ["K5", "new", "x"]}, {"Vals": ["N1", "n", "x"]}],
            {**REPLACE, "mode": "upsert"},
        )
        == 2
    )
    assert run(sim, [{"Vals": ["K0"]}], {**REPLACE, "mode": "delete", "headers": ""}) == 1
    ledger = sim.ledger()
    source = ledger["data_sources"]["ds-1"]
    assert len(source["rows"]) == 12_000
    assert source["rows"][4] == ["K5", "new", "x"] and source["rows"][-1] == ["N1", "n", "x"]
    assert source["headers"][0] == {"Name": "Code", "DisplayAt": "Title"}
    kinds = [(op["kind"], op["rows"]) for op in ledger["operations"]]
    assert kinds == [
        ("Rows", 10_000),
        ("NewRows", 1_500),
        ("NewRows", 500),
        ("NewRows", 2),
        ("DeletedRows", 1),
    ]


def test_a_refusal_after_the_first_request_says_how_far_it_got(sim: DataSourceSimulator) -> None:
    sim.configure(max_new_rows=400)  # the vendor tightened NewRows below what importq sends
    with pytest.raises(FinalError) as refused:
        run(sim, [record for record, _ in rows(10_500)], REPLACE)
    assert not isinstance(refused.value, RejectedError)  # a replace must never be bisected
    assert "A limit of 400 NewRows" in str(refused.value)
    assert "request 2 of 2; the 1 before it were applied" in str(refused.value)


def test_the_data_source_can_be_named_by_its_guid(sim: DataSourceSimulator) -> None:
    guid = data_source_id("ds-1").upper()
    run(sim, [{"Vals": ["K1", "a", "b"]}], {**REPLACE, "external_id": "", "id": guid})
    assert sim.ledger()["data_sources"]["ds-1"]["rows"] == [["K1", "a", "b"]]


@pytest.mark.parametrize("body_format", ["json", "xml"])
def test_a_400_surfaces_the_vendors_error_code_and_message(
    sim: DataSourceSimulator, body_format: str
) -> None:
    ref = DataSourceRef("Sports", "no-such-source", None, (Header("Code"), Header("Name")))
    with pytest.raises(FinalError) as refused:
        client_for(sim, body_format).put(ref, "Rows", [["K1", "a"]])
    assert refused.value.status == 400 and refused.value.vendor_code == "ArgumentException"
    assert "No Data Source with Id/ExternalId 'no-such-source'" in str(refused.value)
    assert sim.ledger()["requests_by_format"][body_format] == 1


@pytest.mark.parametrize(
    ("config", "status"),
    [({"integration_key": "another"}, 401), ({"forbidden_keys": {FAKE_KEY}}, 403)],
)
def test_bad_credentials_fail_at_once_naming_the_settings(
    sim: DataSourceSimulator, config: dict[str, Any], status: int
) -> None:
    sim.configure(**config)
    with pytest.raises(AuthError) as refused:
        client_for(sim).put(DataSourceRef("S", "ds-1"), "DeletedRows", [["K1"]])
    assert refused.value.status == status
    assert "DATASOURCE_COMPANY_ID" in str(refused.value)
    assert "DATASOURCE_INTEGRATION_KEY" in str(refused.value)
    assert FAKE_KEY not in str(refused.value)


@pytest.mark.parametrize(("status", "not_applied"), [(429, True), (503, True), (504, False)])
def test_gateway_answers_and_timeouts_are_retryable(status: int, not_applied: bool) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"Retry-After": "2"}, text="busy")

    with pytest.raises(RetryableError) as retried:
        client_for(answer).put(DataSourceRef("S", "ds-1"), "DeletedRows", [["K1"]])
    assert isinstance(retried.value, NotApplied) is not_applied

    def time_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(RetryableError, match="outcome is unknown"):
        client_for(time_out).put(DataSourceRef("S", "ds-1"), "DeletedRows", [["K1"]])


def test_an_entity_expansion_answer_is_refused_unparsed(sim: DataSourceSimulator) -> None:
    sim.configure(hostile_xml=True)
    with pytest.raises(FinalError, match="declares a DTD or entities") as refused:
        client_for(sim, "xml").put(DataSourceRef("S", "no-such-source"), "DeletedRows", [["K"]])
    assert "lol" not in str(refused.value)


def test_xml_requests_declare_the_xsi_namespace_the_doc_requires() -> None:
    sent: list[bytes] = []

    def capture(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        return httpx.Response(200)

    ref = DataSourceRef("S & Co", "ds-1", None, (Header("Code", "Title"), Header("Name")))
    client_for(capture, "xml").put(ref, "Rows", [["K1", ""]])
    assert b'<DataSource xmlns:i="http://www.w3.org/2001/XMLSchema-instance">' in sent[0]
    assert b"<Name>S &amp; Co</Name>" in sent[0]
    assert b"<Row><Val>K1</Val><Val /></Row>" in sent[0]
