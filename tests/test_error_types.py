"""Each client maps what its vendor answers to one error type, and the runner routes by type.

The first tables drive every REST client through httpx.MockTransport and Blue
through its message table; the last one raises each type from a scripted sink
and checks where the runner sent the unit (Redis: the session's).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from importq import errors
from importq.settings import Secret
from tests.scripted import TARGET, MakeRunner, ScriptedSink, staged_unit
from workers.targets.blue.refusals import BlueBusy, refusal
from workers.targets.blueshift.client import BlueshiftClient, ImportNotTriggerable
from workers.targets.datasource.client import DataSourceClient, DataSourceRef
from workers.targets.sourcing_data.client import SourcingDataClient
from workers.targets.workflow_import.client import WorkflowImportClient

Handler = Callable[[httpx.Request], httpx.Response]


# Obvious fakes, long enough that masking them (they are registered as secrets) cannot
# touch ordinary words in the other tests' log lines.
FAKE_KEY = Secret("fake-key-error-types")
FAKE_TOKEN = Secret("fake-token-error-types")


def workflow_post(handler: Handler) -> None:
    client = WorkflowImportClient("http://wf/api", FAKE_KEY, "IMPORT_QUEUE_API:HR",
                                  transport=httpx.MockTransport(handler))  # fmt: skip
    client.post_batch([{"id": "1"}], {"creationPath": "IMPORT_QUEUE_API:HR"})


def sourcing_start(handler: Handler) -> None:
    client = SourcingDataClient("http://sd", FAKE_TOKEN, "agent",
                                transport=httpx.MockTransport(handler))  # fmt: skip
    client.start([{"id": "1"}], operation_id=None, incomplete=True)


def sourcing_status(handler: Handler) -> None:
    client = SourcingDataClient("http://sd", FAKE_TOKEN, "agent",
                                transport=httpx.MockTransport(handler))  # fmt: skip
    client.status("item-1")


def datasource_put(handler: Handler) -> None:
    client = DataSourceClient("http://ds/api", 1, FAKE_KEY,
                              transport=httpx.MockTransport(handler))  # fmt: skip
    client.put(DataSourceRef("Sports", "ds-1"), "Rows", [["K1"]])


def blueshift_trigger(handler: Handler) -> None:
    client = BlueshiftClient("http://bs", FAKE_KEY, transport=httpx.MockTransport(handler))
    client.trigger("0b8e5a9c-1d2f-4a3b-8c7d-6e5f4a3b2c1d")


def status(code: int, body: str = "refused") -> Handler:
    return lambda request: httpx.Response(code, text=body)


def failing(error: type[httpx.TransportError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("no answer", request=request)

    return handler


CALLS = {"workflow": workflow_post, "sourcing start": sourcing_start,
         "sourcing status": sourcing_status, "datasource": datasource_put,
         "blueshift": blueshift_trigger}  # fmt: skip

# (client call, what the vendor answered, the type it must raise)
ANSWERS: list[tuple[str, Handler, type[errors.TargetError]]] = [
    ("workflow", status(400, "creationPath is required"), errors.FinalError),  # the whole batch
    ("workflow", status(400, "Line 3: bad date"), errors.RejectedError),  # one record: bisected
    ("workflow", status(401), errors.AuthError),
    ("workflow", status(404), errors.NotFoundError),
    ("workflow", status(429), errors.RateLimited),
    ("workflow", status(502), errors.RetryableError),  # after a POST: the batch may exist
    ("workflow", status(503), errors.NotApplied),
    ("workflow", failing(httpx.ConnectError), errors.NotConnected),
    ("workflow", failing(httpx.ReadTimeout), errors.Unreachable),
    ("sourcing start", status(400), errors.RejectedError),
    ("sourcing start", status(403), errors.AuthError),
    ("sourcing start", status(504), errors.RetryableError),
    ("sourcing status", status(504), errors.NotApplied),  # a read: nothing to apply
    ("sourcing status", status(404), errors.NotFoundError),
    ("datasource", status(400), errors.FinalError),  # a publish is whole: never bisected
    ("datasource", status(401), errors.AuthError),
    ("datasource", status(429), errors.RateLimited),
    ("datasource", status(500), errors.RetryableError),
    ("datasource", failing(httpx.ConnectError), errors.NotConnected),
    ("blueshift", status(400), errors.FinalError),  # one file, one trigger: never bisected
    ("blueshift", status(405), ImportNotTriggerable),
    ("blueshift", status(503), errors.NotApplied),
    ("blueshift", failing(httpx.WriteTimeout), errors.Unreachable),
]  # fmt: skip


@pytest.mark.parametrize(("call", "handler", "cls"), ANSWERS)
def test_each_client_maps_its_vendors_answer_to_one_type(
    call: str, handler: Handler, cls: type[errors.TargetError]
) -> None:
    with pytest.raises(errors.TargetError) as caught:
        CALLS[call](handler)
    assert type(caught.value) is cls


@pytest.mark.parametrize("call", ["workflow", "sourcing start", "datasource", "blueshift"])
def test_an_answered_error_carries_the_vendors_answer(call: str) -> None:
    def limited(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "12"}, json={"message": "slow down"})

    with pytest.raises(errors.RateLimited) as caught:
        CALLS[call](limited)
    answer = caught.value.answer
    assert answer is not None and (answer.status, answer.retry_after) == (429, 12.0)
    assert "slow down" in answer.said
    assert caught.value.status == 429 and caught.value.retry_after == 12.0


def test_a_datasource_refusal_keeps_the_vendors_code() -> None:
    body = {"ResponseStatus": {"ErrorCode": "ArgumentException", "Message": "no such source"}}
    with pytest.raises(errors.FinalError) as caught:
        datasource_put(lambda request: httpx.Response(400, json=body))
    assert caught.value.answer == errors.VendorAnswer(400, "ArgumentException", "no such source")
    assert caught.value.vendor_code == "ArgumentException"


def test_an_error_without_an_answer_has_none() -> None:
    with pytest.raises(errors.Unreachable) as caught:
        workflow_post(failing(httpx.ReadTimeout))
    assert caught.value.answer is None and caught.value.status is None


@pytest.mark.parametrize(
    ("message", "fault", "cls"),
    [
        ("Invalid_APIKey", False, errors.AuthError),
        ("Datasource does not exist", False, errors.NotFoundError),
        ("Currently being imported by another process", False, BlueBusy),
        ("Cannot connect to the database", True, errors.NotApplied),  # Blue did nothing: resent
        ("Missing value on Email field", False, errors.FinalError),  # one import: never bisected
        ("Object reference not set", True, errors.RetryableError),  # WCF's internal error
        ("Something new", False, errors.FinalError),
    ],
)
def test_blue_messages_map_to_one_type(
    message: str, fault: bool, cls: type[errors.TargetError]
) -> None:
    error = refusal(message, what="PushObjectDataV2", fault=fault, code="s:Server")
    assert type(error) is cls
    assert error.answer == errors.VendorAnswer(code="s:Server", said=message)


# --- the runner routes by type --------------------------------------------------------


def answered(cls: type[errors.TargetError], status: int | None = None) -> errors.TargetError:
    return cls(f"{cls.__name__} said so", target=TARGET, answer=errors.VendorAnswer(status=status))


# (what the sink raises, the unit's state after one run, the attempts it has used)
ROUTES: list[tuple[errors.TargetError, str, str]] = [
    (answered(errors.RetryableError), "waiting", "1"),  # retried with backoff: costs an attempt
    (answered(errors.NotApplied, 503), "waiting", "1"),  # its in-place resends are over: the same
    (answered(errors.Unreachable), "waiting", "1"),  # one unit is not yet a target-wide outage
    (
        answered(errors.VendorBusy),
        "waiting",
        "0",
    ),  # waiting, not failing: the attempt is given back
    (answered(errors.AuthError, 401), "waiting", "0"),  # pauses the target at once
    (answered(errors.RejectedError, 400), "split", "1"),  # bisected to isolate the record
    (answered(errors.FinalError, 400), "failed", "1"),  # dead-lettered
]


@pytest.mark.parametrize(("error", "state", "attempts"), ROUTES)
def test_the_runner_routes_a_failure_by_its_type(
    sink: ScriptedSink,
    make_runner: MakeRunner,
    error: errors.TargetError,
    state: str,
    attempts: str,
) -> None:
    runner, store = make_runner()
    unit_id = staged_unit(store)
    sink.error = error
    runner.run(TARGET, unit_id)
    unit = store.unit(unit_id)
    assert (unit["state"], unit["attempts"]) == (state, attempts)
    assert str(error) in unit["last_error"]
