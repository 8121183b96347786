"""How vendor HTTP answers and network failures map onto importq's error tree."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx
import pytest

from importq.errors import (
    AuthError,
    FinalError,
    NotApplied,
    NotConnected,
    NotFoundError,
    RateLimited,
    RejectedError,
    RetryableError,
    TargetError,
    Unreachable,
    VendorAnswer,
)
from workers.http import parse_retry_after, raise_for_status, transport_error, vendor_message

TARGET = "acme"
PROBLEM = {"title": "Invalid record", "status": 400, "detail": "items[3].recordId is required."}
PROBLEM_SAID = "Invalid record; items[3].recordId is required."


def raised(response: httpx.Response, hints: dict[int, str] | None = None) -> TargetError:
    with pytest.raises(TargetError) as caught:
        raise_for_status(response, target=TARGET, hints=hints)
    return caught.value


@pytest.mark.parametrize(
    ("status", "cls", "retryable", "not_applied"),
    [
        (400, RejectedError, False, False),
        (401, AuthError, False, False),
        (403, AuthError, False, False),
        (404, NotFoundError, False, False),
        (409, RejectedError, False, False),
        (429, RateLimited, True, True),
        (500, RetryableError, True, False),
        (502, RetryableError, True, False),  # a gateway's answer: the app may have applied it
        (503, NotApplied, True, True),
        (504, RetryableError, True, False),
    ],
)
def test_status_maps_to_its_error_class(
    status: int, cls: type[TargetError], retryable: bool, not_applied: bool
) -> None:
    error = raised(httpx.Response(status, json=PROBLEM))
    assert type(error) is cls
    assert isinstance(error, RetryableError) is retryable
    assert isinstance(error, FinalError) is not retryable
    assert isinstance(error, NotApplied) is not_applied
    assert (error.status, error.target) == (status, TARGET)
    assert error.answer == VendorAnswer(status=status, said=PROBLEM_SAID)  # what the vendor said
    assert str(error).startswith(f"{TARGET}: HTTP {status}: ")


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("status", [502, 504])
def test_gateway_error_after_a_request_that_changes_something_is_an_unknown_outcome(
    method: str, status: int
) -> None:
    request = httpx.Request(method, "http://vendor/start")
    error = raised(httpx.Response(status, json=PROBLEM, request=request))
    assert type(error) is RetryableError and not isinstance(error, NotApplied)
    assert error.status == status  # kept: the runner counts 5xx target-wide


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_gateway_error_after_a_read_may_be_resent(method: str, status: int) -> None:
    request = httpx.Request(method, "http://vendor/status/1")
    error = raised(httpx.Response(status, json=PROBLEM, request=request))
    assert isinstance(error, NotApplied)
    assert error.status == status


@pytest.mark.parametrize(
    ("status", "record_level"),
    [(400, True), (409, True), (413, True), (422, True), (401, False), (404, False)],
)
def test_only_a_data_refusal_may_be_caused_by_one_record(status: int, record_level: bool) -> None:
    error = raised(httpx.Response(status, json=PROBLEM))
    assert isinstance(error, FinalError)
    assert isinstance(error, RejectedError) is record_level


def test_success_statuses_raise_nothing() -> None:
    for status in (200, 201, 202, 204, 302):
        raise_for_status(httpx.Response(status), target=TARGET)


def test_unlisted_client_error_is_final_but_not_record_level() -> None:
    error = raised(httpx.Response(405, text="Method Not Allowed"))
    assert type(error) is FinalError  # not a RejectedError: never bisected


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_in_seconds_is_kept(status: int) -> None:
    error = raised(httpx.Response(status, headers={"Retry-After": "7"}))
    assert isinstance(error, RetryableError)
    assert error.retry_after == 7.0
    assert error.answer is not None and error.answer.retry_after == 7.0


def test_retry_after_as_an_http_date_becomes_seconds_from_now() -> None:
    moment = email.utils.formatdate(time.time() + 30, usegmt=True)
    error = raised(httpx.Response(429, headers={"Retry-After": moment}))
    assert isinstance(error, RateLimited)
    assert error.retry_after is not None
    assert 27.0 <= error.retry_after <= 31.0


def test_retry_after_absent_is_none() -> None:
    error = raised(httpx.Response(503))
    assert isinstance(error, RetryableError)
    assert error.retry_after is None


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0", 0.0),
        ("2.5", 2.5),
        ("-3", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: no wait
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (PROBLEM, "Invalid record; items[3].recordId is required."),
        ({"errorMessage": "Value 'x' doesn't fit"}, "Value 'x' doesn't fit"),
        ({"message": "quota exceeded"}, "quota exceeded"),
        ({"title": "Bad", "errors": {"recordId": ["required"]}}, "Bad; {'recordId': ['required']}"),
    ],
)
def test_vendor_message_is_kept_from_json_bodies(body: dict[str, Any], expected: str) -> None:
    error = raised(httpx.Response(400, json=body))
    assert error.message == expected
    assert expected in str(error)


def test_vendor_message_is_kept_from_a_plain_text_body() -> None:
    error = raised(httpx.Response(502, text="  upstream connect error or disconnect  \n"))
    assert error.message == "upstream connect error or disconnect"


def test_empty_body_falls_back_to_the_reason_phrase() -> None:
    assert vendor_message(httpx.Response(503)) == "Service Unavailable"


def test_json_that_is_not_an_object_is_kept_verbatim() -> None:
    assert vendor_message(httpx.Response(400, json=["a", "b"])) == "['a', 'b']"


def test_hint_for_the_status_is_appended_to_the_vendor_message() -> None:
    hints = {401: "set a valid TOKEN", 404: "check AGENT_ID"}
    error = raised(httpx.Response(401, json={"title": "Unauthorized"}), hints)
    assert error.message == "Unauthorized (set a valid TOKEN)"
    other = raised(httpx.Response(403, json={"title": "Forbidden"}), hints)
    assert other.message == "Forbidden"  # no hint for 403: nothing appended


def test_refused_connection_was_not_applied() -> None:
    request = httpx.Request("POST", "http://vendor/start")
    error = transport_error(httpx.ConnectError("refused", request=request), target=TARGET, what="x")
    assert type(error) is NotConnected
    assert isinstance(error, Unreachable)  # a RetryableError that says the target may be down
    assert isinstance(error, NotApplied)  # nothing was sent: it may go again in place
    assert error.status is None and error.answer is None
    assert "x failed: ConnectError: refused" in str(error)


@pytest.mark.parametrize("cls", [httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError])
def test_failure_after_sending_is_retryable_but_not_resendable(
    cls: type[httpx.TransportError],
) -> None:
    request = httpx.Request("POST", "http://vendor/start")
    error = transport_error(cls("boom", request=request), target=TARGET, what="start")
    assert type(error) is Unreachable and isinstance(error, RetryableError)
    assert not isinstance(error, NotApplied)
    assert str(error).startswith(f"{TARGET}: start ")


def test_timeout_says_the_outcome_is_unknown() -> None:
    request = httpx.Request("POST", "http://vendor/append")
    error = transport_error(httpx.ReadTimeout("t", request=request), target=TARGET, what="append")
    assert "timed out" in error.message
    assert "outcome is unknown" in error.message
