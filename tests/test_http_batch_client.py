"""http_batch client: the body it sends, the settings it takes, and how every answer maps."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from importq import errors
from importq.settings import Secret, load
from workers.targets.base import Record, record_size
from workers.targets.http_batch.answers import ErrorList
from workers.targets.http_batch.client import HttpBatchClient, encode_body

URL = "https://receiver.example/v1/import"
CREDENTIAL = "Bearer client-test-credential-4f1d"
THREE: list[Record] = [{"id": 1, "name": "Åsa"}, {"id": 2, "note": "a\u2028b\nc"}, {"id": 3}]
Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, **options: Any) -> HttpBatchClient:
    options.setdefault("auth", ("Authorization", Secret(CREDENTIAL)))
    return HttpBatchClient(URL, transport=httpx.MockTransport(handler), **options)


def answering(status: int, body: Any = None, **headers: str) -> Handler:
    return lambda request: httpx.Response(status, json=body, headers=headers)


def failure(handler: Handler, **options: Any) -> Exception:
    with pytest.raises(Exception) as caught:
        client(handler, **options).post(THREE, "job1:0")
    assert CREDENTIAL not in str(caught.value)
    return caught.value


# --- the request --------------------------------------------------------------------------------


@pytest.mark.parametrize("body_format", ["json", "jsonl"])
def test_the_body_is_the_bytes_the_budget_counted(body_format: str) -> None:
    body = encode_body(THREE, body_format)
    counted = sum(record_size(record) + 1 for record in THREE)
    # JSON Lines is exactly what batched counts; an array one byte more (sink.plan keeps it).
    assert len(body) == counted + (1 if body_format == "json" else 0)
    if body_format == "json":
        assert json.loads(body) == THREE
    else:
        assert [json.loads(line) for line in body.decode().split("\n")[:-1]] == THREE


def test_one_post_carries_the_credential_the_key_and_the_media_type() -> None:
    sent: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    batch = client(receiver, auth=("X-Api-Key", Secret("fake-key-http-batch")), body_format="jsonl",
                   idempotency_header="X-Request-Id")  # fmt: skip
    assert batch.post(THREE, "job1:0.1", path="users/new") == {}
    (request,) = sent
    assert request.method == "POST"
    assert str(request.url) == f"{URL}/users/new"
    assert (
        request.headers["X-Api-Key"] == "fake-key-http-batch"
        and "Authorization" not in request.headers
    )
    assert request.headers["X-Request-Id"] == "job1:0.1"
    assert request.headers["Content-Type"] == "application/x-ndjson"


def test_no_credential_configured_sends_no_auth_header() -> None:
    sent: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    client(receiver, auth=None).post(THREE, "job1:0")
    assert "Authorization" not in sent[0].headers
    assert sent[0].headers["Content-Type"] == "application/json"


# --- failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "phrase"),
    [
        (401, errors.AuthError, "HTTP_BATCH_AUTH_SECRET was refused"),
        (403, errors.AuthError, "may not post here"),
        (404, errors.NotFoundError, "check HTTP_BATCH_URL"),
        (405, errors.FinalError, "Not allowed"),
        (415, errors.FinalError, "set HTTP_BATCH_FORMAT"),
        (501, errors.FinalError, "Not allowed"),
    ],
)
def test_refusals_no_wait_can_fix_are_final_and_say_what_to_change(
    status: int, kind: type[Exception], phrase: str
) -> None:
    error = failure(answering(status, {"title": "Not allowed"}))
    assert type(error) is kind and isinstance(error, errors.FinalError)
    assert phrase in str(error) and not isinstance(error, errors.RejectedError)


def test_401_without_a_credential_says_to_set_one() -> None:
    error = failure(answering(401, {"title": "Unauthorized"}), auth=None)
    assert isinstance(error, errors.AuthError)
    assert "the receiver wants a credential: set HTTP_BATCH_AUTH_SECRET" in str(error)


@pytest.mark.parametrize("status", [400, 413, 422])
def test_a_refusal_of_the_whole_request_is_record_level_so_the_core_bisects(status: int) -> None:
    error = failure(answering(status, {"title": "Invalid", "detail": "field x is wrong"}))
    assert isinstance(error, errors.RejectedError)
    assert "field x is wrong" in str(error)


def test_a_whole_refusal_that_lists_its_records_names_them() -> None:
    body = {"detail": "2 records invalid", "result": {"failed": [
        {"row": 1, "why": "email missing"}, {"row": 3, "why": "bad date"}]}}  # fmt: skip
    listed = ErrorList(path=("result", "failed"), index_field="row", message_field="why",
                       index_base=1)  # fmt: skip
    error = failure(answering(422, body), errors=listed)
    assert isinstance(error, errors.RejectedError)  # still bisected
    assert "record 1 of 3: email missing; record 3 of 3: bad date" in str(error)


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504, 507])
def test_passing_failures_are_retryable_with_the_receivers_retry_after(status: int) -> None:
    error = failure(answering(status, {"title": "Busy"}, **{"Retry-After": "7"}))
    assert isinstance(error, errors.RetryableError)
    assert error.status == status
    # Only the shared policy's "certainly not processed" answers are sent again in place.
    assert isinstance(error, errors.NotApplied) == (status == 503)


def test_429_is_rate_limited_and_resent_in_place_after_retry_after() -> None:
    error = failure(answering(429, {"title": "Slow down"}, **{"Retry-After": "3"}))
    assert isinstance(error, errors.RateLimited)
    assert error.retry_after == 3.0 and isinstance(error, errors.NotApplied)


def test_409_means_the_same_key_is_still_being_processed_so_it_waits() -> None:
    error = failure(answering(409, {"title": "Conflict"}))
    assert isinstance(error, errors.VendorBusy) and not isinstance(error, errors.NotApplied)
    assert "same idempotency key is still being processed" in str(error)


def test_a_redirect_is_final_and_names_where_it_pointed() -> None:
    error = failure(lambda r: httpx.Response(302, headers={"Location": "https://sso/login"}))
    assert isinstance(error, errors.FinalError) and "pointed to https://sso/login" in str(error)


def test_a_timeout_leaves_the_outcome_unknown_and_a_refused_connection_does_not() -> None:
    def times_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    unknown = failure(times_out)
    assert isinstance(unknown, errors.Unreachable) and not isinstance(unknown, errors.NotApplied)
    assert "the outcome is unknown" in str(unknown)
    assert isinstance(failure(refused), errors.NotApplied)


# --- per-record errors of a 2xx answer -----------------------------------------------------------


def posted(body: Any, listed: ErrorList, status: int = 200) -> dict[int, str]:
    return client(answering(status, body), errors=listed).post(THREE, "job1:0")


def test_a_2xx_answer_names_the_records_it_refused_at_the_configured_path() -> None:
    body = {"accepted": 1, "result": {"failed": [
        {"line": 3, "reason": "duplicate id"}, {"line": 1, "reason": "no name"},
        {"line": 3, "reason": "bad id"}]}}  # fmt: skip
    listed = ErrorList(("result", "failed"), "line", "reason", index_base=1)
    assert posted(body, listed) == {0: "no name", 2: "duplicate id; bad id"}


def test_an_item_without_a_message_is_quoted_whole() -> None:
    refused = posted({"errors": [{"index": 1, "code": "E42"}]}, ErrorList(("errors",)))
    assert refused == {1: '{"index":1,"code":"E42"}'}


@pytest.mark.parametrize("body", [{"errors": []}, {"errors": None}])
def test_an_empty_list_means_every_record_was_taken(body: Any) -> None:
    assert posted(body, ErrorList(("errors",))) == {}


def test_without_a_configured_path_a_2xx_takes_every_record_whatever_it_says() -> None:
    assert posted({"errors": [{"index": 0, "message": "x"}]}, ErrorList()) == {}


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        ({"accepted": 3}, "the answer has no 'result.failed'"),
        ({"result": "ok"}, "the answer has no 'result.failed'"),
        ({"result": {"failed": "none"}}, "'result.failed' of the answer is a str, not a list"),
        ({"result": {"failed": [{"index": 3}]}}, "index=3, not a position from 0 to 2"),
        ({"result": {"failed": [{"index": True}]}}, "index=True"),
        ({"result": {"failed": ["row 1"]}}, "is not an object"),
        (None, "the answer has no 'result.failed'"),
    ],
)
def test_an_answer_the_settings_cannot_read_is_a_clear_final_error(body: Any, phrase: str) -> None:
    with pytest.raises(errors.FinalError) as caught:
        posted(body, ErrorList(("result", "failed")))
    message = str(caught.value)
    assert phrase in message and "HTTP_BATCH_ERRORS_PATH" in message
    assert "may have taken these records" in message
    assert not isinstance(caught.value, errors.RejectedError)


# --- settings -----------------------------------------------------------------------------------


def configured(**env: str) -> HttpBatchClient:
    return HttpBatchClient.from_settings(load({"HTTP_BATCH_URL": URL, **env}))


def test_settings_configure_the_client() -> None:
    made = configured(
        HTTP_BATCH_FORMAT="JSONL", HTTP_BATCH_IDEMPOTENCY_HEADER="X-Key",
        HTTP_BATCH_ERRORS_PATH="data.errors", HTTP_BATCH_ERROR_INDEX_BASE="1",
        HTTP_BATCH_ERROR_INDEX_FIELD="n", HTTP_BATCH_ERROR_MESSAGE_FIELD="m",
    )  # fmt: skip
    assert (made.body_format, made.idempotency_header) == ("jsonl", "X-Key")
    assert made.errors == ErrorList(("data", "errors"), "n", "m", index_base=1)
    defaults = configured()
    assert (defaults.body_format, defaults.idempotency_header) == ("json", "Idempotency-Key")
    assert defaults.errors == ErrorList()


# (environment, what the refusal says)
UNWORKABLE_SETTINGS = [
    ({"HTTP_BATCH_URL": ""}, "http_batch needs HTTP_BATCH_URL"),
    ({"HTTP_BATCH_URL": "ftp://receiver.example/in"}, "must be http or https, not 'ftp'"),
    ({"HTTP_BATCH_URL": "receiver.example/in"}, "must be http or https, not 'none'"),
    ({"HTTP_BATCH_URL": "https:///in"}, "names no host"),
    ({"HTTP_BATCH_URL": "https://u:pw@receiver.example/in"}, "put the credential in"),
    ({"HTTP_BATCH_FORMAT": "xml"}, "HTTP_BATCH_FORMAT='xml' is not one of json, jsonl"),
    ({"HTTP_BATCH_AUTH_HEADER": "X Api Key"}, "is not a header name"),
    ({"HTTP_BATCH_IDEMPOTENCY_HEADER": "Key:"}, "is not a header name"),
    ({"HTTP_BATCH_ERRORS_PATH": "result..failed"}, "has an empty key"),
    ({"HTTP_BATCH_ERROR_INDEX_BASE": "2"}, "is not one of 0, 1"),
    ({"HTTP_BATCH_TIMEOUT": "0"}, "HTTP_BATCH_TIMEOUT='0' must be above 0"),
]


@pytest.mark.parametrize(("env", "phrase"), UNWORKABLE_SETTINGS)
def test_a_setting_that_cannot_work_is_refused_naming_it(env: dict[str, str], phrase: str) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        configured(**env)
    assert phrase in str(caught.value)
    assert "pw" not in str(caught.value)
