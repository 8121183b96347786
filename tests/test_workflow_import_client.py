"""Workflow Import client: the request body, the answer, and how failures map to importq errors."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from importq.errors import (
    AuthError,
    ConfigError,
    FinalError,
    NotApplied,
    RateLimited,
    RejectedError,
    RetryableError,
)
from importq.settings import Secret, Settings
from simulators.workflow_import import BASE_PATH
from workers.targets import workflow_import
from workers.targets.base import Record
from workers.targets.workflow_import.client import QueueBatch, WorkflowImportClient, json_lines

URL = f"http://sim{BASE_PATH}"
API_KEY = "client-test-key-81c0aa"
CREATION_PATH = "HR_FEED"


def records(count: int) -> list[Record]:
    return [{"EmployeeId": f"E{n}", "Name": f"Person {n}"} for n in range(count)]


def test_json_lines_keep_unicode_line_separators_inside_their_line() -> None:
    body = json_lines([{"Note": "a\u2028b\nc"}, {"Note": "d"}])
    assert body.count(b"\n") == 2
    assert [json.loads(line) for line in body.decode().split("\n")[:2]] == [
        {"Note": "a\u2028b\nc"},
        {"Note": "d"},
    ]


@pytest.mark.parametrize(
    "answer",
    [
        '{"queueBatchId": "abc-def-123", "queueBatchDetails": "https://lb/b?id=abc-def-123"}',
        '{ queueBatchId: "abc-def-123", queueBatchDetails: "https://lb/b?id=abc-def-123" }',
    ],
    ids=["json", "as-in-the-doc"],
)
def test_the_answer_is_read_as_json_or_as_the_doc_prints_it(answer: str) -> None:
    batch = QueueBatch.from_response(httpx.Response(200, text=answer))
    assert batch == QueueBatch("abc-def-123", "https://lb/b?id=abc-def-123")


# --- errors ---------------------------------------------------------------------------------------


def answer(status: int, detail: str = "", **headers: str) -> httpx.MockTransport:
    body = {"title": "Refused", "status": status, "detail": detail}
    return httpx.MockTransport(lambda request: httpx.Response(status, json=body, headers=headers))


def raised(handler: Any) -> Exception:
    client = WorkflowImportClient(URL, Secret(API_KEY), CREATION_PATH, transport=handler)
    with pytest.raises(Exception) as caught:
        client.post_batch(records(2), {"creationPath": CREATION_PATH})
    return caught.value


@pytest.mark.parametrize(
    ("status", "phrases"),
    [
        (401, ["WORKFLOW_IMPORT_API_KEY was refused", "BeginWorkflowImportProcess"]),
        (403, ["lacks the BeginWorkflowImportProcess permission"]),
    ],
)
def test_auth_refusals_are_final_and_name_the_permission(status: int, phrases: list[str]) -> None:
    error = raised(answer(status, "Access denied."))
    assert isinstance(error, AuthError) and error.status == status
    for phrase in phrases:
        assert phrase in str(error)
    assert API_KEY not in str(error)


def test_400_without_a_line_is_final_for_the_whole_batch() -> None:
    error = raised(answer(400, "Query parameter 'creationPath' is required."))
    assert type(error) is FinalError  # not a RejectedError: bisecting would not help
    assert "creationPath' is required" in str(error)
    assert "WORKFLOW_IMPORT_CREATION_PATH" in str(error)


@pytest.mark.parametrize(("status", "detail"), [(400, "Line 7: bad date."), (413, "too big")])
def test_refusal_that_one_record_can_cause_is_record_level(status: int, detail: str) -> None:
    error = raised(answer(status, detail))
    assert isinstance(error, RejectedError)  # the core bisects the unit


@pytest.mark.parametrize(
    ("transport", "cls"),
    [
        (answer(429, "slow down", **{"Retry-After": "3"}), RateLimited),
        (answer(502), RetryableError),  # the gateway's: the batch may exist
        (answer(503), NotApplied),
        (answer(500), RetryableError),  # may have been applied
        (answer(504), RetryableError),
    ],
)
def test_server_errors_retry_and_only_certain_refusals_resend(
    transport: httpx.MockTransport, cls: type[RetryableError]
) -> None:
    error = raised(transport)
    assert type(error) is cls
    assert isinstance(error, NotApplied) is (cls in (RateLimited, NotApplied))


@pytest.mark.parametrize(
    ("failure", "not_applied"),
    [(httpx.ConnectError("refused"), True), (httpx.ReadTimeout("slow"), False)],
)
def test_network_failures_retry_and_a_timeout_is_an_unknown_outcome(
    failure: Exception, not_applied: bool
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise failure

    error = raised(httpx.MockTransport(fail))
    assert isinstance(error, RetryableError) and isinstance(error, NotApplied) is not_applied


def test_a_redirect_is_not_taken_for_a_created_batch() -> None:
    moved = httpx.MockTransport(
        lambda request: httpx.Response(302, headers={"Location": "https://lb/login"})
    )
    error = raised(moved)
    assert isinstance(error, FinalError) and "WORKFLOW_IMPORT_URL" in str(error)


def test_missing_settings_are_named() -> None:
    env = {"WORKFLOW_IMPORT_URL": URL}
    with pytest.raises(ConfigError) as caught:
        workflow_import.TARGET.client(Settings(env=env))
    assert "WORKFLOW_IMPORT_API_KEY, WORKFLOW_IMPORT_CREATION_PATH" in str(caught.value)
