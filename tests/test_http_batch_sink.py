"""http_batch sink and simulator in-process (httpx.MockTransport): planning, the idempotency
key on every attempt, per-record refusals, and the simulator's own rules. No worker, no Redis."""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog

from importq.errors import ConfigError, InputError, NotApplied, RejectedError, RetryableError
from importq.settings import Secret, Settings, load
from simulators.http_batch import (
    AUTH_HEADER,
    BASE_PATH,
    FAKE_AUTH_SECRET,
    HttpBatchSimulator,
    SimConfig,
    nested,
)
from workers.retry import resend
from workers.targets.base import Delivered, Record, RunContext
from workers.targets.http_batch import SETTINGS
from workers.targets.http_batch import sink as sink_module
from workers.targets.http_batch.answers import ErrorList
from workers.targets.http_batch.client import HttpBatchClient, encode_body
from workers.targets.http_batch.limits import HttpBatchLimits
from workers.targets.http_batch.sink import HttpBatchSink, check_path

SINK = HttpBatchSink()


@pytest.fixture(autouse=True)
def quick_resends(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sink's resend policy with millisecond pauses: these tests count requests."""
    monkeypatch.setattr(sink_module, "resend", functools.partial(resend, base=0.001, cap=0.01))


@pytest.fixture
def sim() -> HttpBatchSimulator:
    return HttpBatchSimulator(SimConfig(retry_after_seconds=0, key_column="id"))


@pytest.fixture
def receiver(sim: HttpBatchSimulator) -> Iterator[HttpBatchClient]:
    made = HttpBatchClient(
        f"http://receiver{BASE_PATH}",
        auth=(AUTH_HEADER, Secret(FAKE_AUTH_SECRET)),
        errors=ErrorList(("errors",)),
        transport=httpx.MockTransport(sim),
    )
    yield made
    made.close()


def rows(count: int, first: int = 0) -> list[Record]:
    return [{"id": f"r{n}", "name": f"Row {n}"} for n in range(first, first + count)]


def attempt(client: HttpBatchClient, records: list[Record], unit_id: str = "job7:0",
            **params: Any) -> Delivered:  # fmt: skip
    """One run of the unit, as the runner gives it to the sink."""
    checkpoints: list[bool] = []
    ctx = RunContext(
        unit_id=unit_id, attempt=1, records=records, params=params, remote={}, client=client,
        limits=HttpBatchLimits(), settings=Settings(), log=structlog.get_logger("test"),
        remember=lambda values: None, checkpoint=lambda: checkpoints.append(True),
    )  # fmt: skip
    delivered = SINK.run(ctx)
    assert checkpoints == [True]  # a worker shutting down stops it before the POST
    return delivered


# --- planning ---------------------------------------------------------------------------------


@pytest.mark.parametrize("body_format", ["json", "jsonl"])
def test_no_planned_body_exceeds_the_byte_budget(body_format: str) -> None:
    rng = random.Random(12)
    records = [{"id": n, "text": "é" * rng.randint(0, 300)} for n in range(400)]
    limits = HttpBatchLimits(records_per_request=100, bytes_per_request=5000)
    located = ((record, f"in.jsonl:{n}") for n, record in enumerate(records, 1))
    units = list(SINK.plan(located, limits, {}))
    sizes = [len(encode_body(unit, body_format)) for unit in units]
    assert max(sizes) <= 5000 and max(map(len, units)) <= 100
    assert sum(map(len, units)) == 400 and min(sizes[:-1]) > 4000  # full, not timid


def test_a_record_over_the_byte_budget_is_refused_at_its_line() -> None:
    limits = HttpBatchLimits(bytes_per_request=50)
    with pytest.raises(InputError) as caught:
        list(SINK.plan([({"note": "x" * 60}, "in.jsonl:3")], limits, {}))
    assert str(caught.value).startswith("in.jsonl:3: record is")
    assert "request budget" in str(caught.value)


def test_limits_come_from_the_settings() -> None:
    env = {"HTTP_BATCH_RECORDS_PER_REQUEST": "20", "HTTP_BATCH_BYTES_PER_REQUEST": "9000",
           "HTTP_BATCH_REQUESTS_IN_FLIGHT": "2", "HTTP_BATCH_TIMEOUT": "7.5"}  # fmt: skip
    limits = HttpBatchLimits.from_settings(load(env))
    assert limits == HttpBatchLimits(20, 9000, 2, 7.5)
    assert SINK.slot({}, limits) == ("endpoint", 2)
    assert HttpBatchLimits.from_settings(load({})) == HttpBatchLimits()
    with pytest.raises(ConfigError, match="HTTP_BATCH_RECORDS_PER_REQUEST='0'"):
        HttpBatchLimits.from_settings(load({"HTTP_BATCH_RECORDS_PER_REQUEST": "0"}))


def test_every_setting_the_package_reads_is_declared() -> None:
    declared = {setting.name for setting in SETTINGS}
    read = {"HTTP_BATCH_URL", "HTTP_BATCH_AUTH_HEADER", "HTTP_BATCH_AUTH_SECRET",
            "HTTP_BATCH_FORMAT", "HTTP_BATCH_RECORDS_PER_REQUEST", "HTTP_BATCH_BYTES_PER_REQUEST",
            "HTTP_BATCH_REQUESTS_IN_FLIGHT", "HTTP_BATCH_IDEMPOTENCY_HEADER",
            "HTTP_BATCH_ERRORS_PATH", "HTTP_BATCH_ERROR_INDEX_FIELD",
            "HTTP_BATCH_ERROR_INDEX_BASE", "HTTP_BATCH_ERROR_MESSAGE_FIELD",
            "HTTP_BATCH_TIMEOUT"}  # fmt: skip
    assert declared == read
    assert [s.name for s in SETTINGS if s.secret] == ["HTTP_BATCH_AUTH_SECRET"]


@pytest.mark.parametrize(("value", "path"), [("users", "users"), ("/v2/groups/", "v2/groups")])
def test_a_path_param_is_kept_without_its_outer_slashes(value: str, path: str) -> None:
    assert SINK.check_params({"path": value}, Settings()) == {"path": path}
    assert check_path(value) == path


@pytest.mark.parametrize("value", ["", "/", "a//b", "../admin", "a/./b", "a b", "a?b=1", 5])
def test_a_path_that_could_leave_the_receiver_or_mean_nothing_is_refused(value: Any) -> None:
    with pytest.raises(InputError, match="a path below HTTP_BATCH_URL"):
        check_path(value)


# --- running a unit ---------------------------------------------------------------------------


def test_a_unit_is_one_post_under_its_own_id_as_the_key(
    sim: HttpBatchSimulator, receiver: HttpBatchClient
) -> None:
    delivered = attempt(receiver, rows(3), path="users")
    assert (delivered.count, delivered.rejected) == (3, [])
    ledger = sim.ledger()
    assert (ledger["requests"], ledger["keys"], ledger["paths"]) == (1, ["job7:0"], {"users": 1})
    assert ledger["formats"] == {"json": 1, "jsonl": 0}


def test_refused_records_are_dead_lettered_with_the_receivers_reason_and_the_rest_count(
    sim: HttpBatchSimulator, receiver: HttpBatchClient
) -> None:
    sim.configure(refuse_values={"r1", "r3"})
    delivered = attempt(receiver, rows(5))
    assert delivered.count == 3
    assert delivered.rejected == [
        ({"id": "r1", "name": "Row 1"}, "Value id='r1' is not accepted."),
        ({"id": "r3", "name": "Row 3"}, "Value id='r3' is not accepted."),
    ]
    assert sim.ledger()["records"] == 3


def test_a_resend_after_a_lost_answer_takes_nothing_twice_and_gets_the_same_answer(
    sim: HttpBatchSimulator, receiver: HttpBatchClient
) -> None:
    sim.configure(lose_next=1, refuse_values={"r2"})  # taken, then a gateway's 504
    with pytest.raises(RetryableError) as caught:
        attempt(receiver, rows(4))
    assert caught.value.status == 504  # to the core, not in place
    assert not isinstance(caught.value, NotApplied)
    again = attempt(receiver, rows(4))  # the unit's next attempt: same body, same key
    assert (again.count, [reason for _, reason in again.rejected]) == (
        3, ["Value id='r2' is not accepted."]
    )  # fmt: skip
    ledger = sim.ledger()
    assert (ledger["requests_taken"], ledger["replays"], ledger["duplicates"]) == (1, 1, 0)
    assert ledger["records"] == 3


def test_the_halves_of_a_split_unit_are_posted_under_keys_of_their_own(
    sim: HttpBatchSimulator, receiver: HttpBatchClient
) -> None:
    attempt(receiver, rows(2), unit_id="job7:0.0")
    attempt(receiver, rows(2, first=2), unit_id="job7:0.1")
    assert sim.ledger()["keys"] == ["job7:0.0", "job7:0.1"]


def test_503_is_resent_in_place_and_taken_once(
    sim: HttpBatchSimulator, receiver: HttpBatchClient
) -> None:
    sim.configure(fail_next=2)
    assert attempt(receiver, rows(3)).count == 3
    ledger = sim.ledger()
    assert (ledger["requests"], ledger["faults"], ledger["requests_taken"]) == (3, 2, 1)


def test_a_receiver_refusing_the_whole_request_gets_it_bisected(
    sim: HttpBatchSimulator, receiver: HttpBatchClient
) -> None:
    sim.configure(refuse_whole=True, refuse_values={"r1"})
    with pytest.raises(RejectedError) as caught:
        attempt(receiver, rows(3))
    assert isinstance(caught.value, RejectedError) and caught.value.status == 422
    assert "record 2 of 3: Value id='r1' is not accepted." in str(caught.value)
    assert sim.ledger()["requests_taken"] == 0


# --- the simulator's own rules ----------------------------------------------------------------


def post(sim: HttpBatchSimulator, body: bytes, *, media_type: str = "application/json",
         key: str = "k1", credential: str = FAKE_AUTH_SECRET,
         path: str = BASE_PATH) -> httpx.Response:  # fmt: skip
    headers = {"Content-Type": media_type, "Idempotency-Key": key, AUTH_HEADER: credential}
    return sim(httpx.Request("POST", f"http://receiver{path}", headers=headers, content=body))


def test_the_simulator_takes_both_formats_and_refuses_others(sim: HttpBatchSimulator) -> None:
    records = rows(2)
    assert post(sim, encode_body(records, "json")).json() == {"accepted": 2, "errors": []}
    lines = encode_body(records, "jsonl")
    assert post(sim, lines, media_type="application/x-ndjson", key="k2").status_code == 200
    assert post(sim, lines, media_type="text/plain", key="k3").status_code == 415
    assert post(sim, b"[{]", key="k4").status_code == 400
    assert sim.ledger()["formats"] == {"json": 1, "jsonl": 1}


def test_the_simulator_refuses_a_key_reused_with_another_body(sim: HttpBatchSimulator) -> None:
    assert post(sim, encode_body(rows(1), "json")).status_code == 200
    reused = post(sim, encode_body(rows(1, first=5), "json"))
    assert reused.status_code == 422 and "another body" in reused.json()["detail"]
    assert sim.ledger()["records"] == 1


def test_the_simulator_checks_the_credential_and_the_route(sim: HttpBatchSimulator) -> None:
    body = encode_body(rows(1), "json")
    assert post(sim, body, credential="wrong").status_code == 401
    sim.configure(secrets_without_permission={"read-only"}, auth_secret="read-only")
    assert post(sim, body, credential="read-only").status_code == 403
    assert post(sim, body, path=f"{BASE_PATH}x").status_code == 404
    assert sim.ledger()["refused"] == {"401": 1, "403": 1}


def test_the_simulator_lists_refusals_where_it_is_told(sim: HttpBatchSimulator) -> None:
    sim.configure(refuse_values={"r0"}, errors_path="result.failed", index_field="row",
                  message_field="why", index_base=1)  # fmt: skip
    answer = post(sim, encode_body(rows(2), "json")).json()
    assert answer == {"accepted": 1, **nested("result.failed", [
        {"row": 1, "why": "Value id='r0' is not accepted."}])}  # fmt: skip
