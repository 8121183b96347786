"""WorkflowImportSink.run against the simulator in-process (httpx.MockTransport), no worker."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
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
    RejectedError,
    RetryableError,
)
from importq.settings import Secret, Settings
from simulators.workflow_import import BASE_PATH, SimConfig, WorkflowImportSimulator
from workers.retry import resend
from workers.targets.base import Delivered, Record, RunContext
from workers.targets.workflow_import import sink as sink_module
from workers.targets.workflow_import.client import WorkflowImportClient
from workers.targets.workflow_import.limits import WorkflowImportLimits
from workers.targets.workflow_import.sink import WorkflowImportSink

URL = f"http://sim{BASE_PATH}"
API_KEY = "sink-test-key-5e1a90"
CREATION_PATH = "HR_FEED"
LIMITS = WorkflowImportLimits()


def records(count: int, first: int = 0) -> list[Record]:
    return [{"EmployeeId": f"E{n}", "Name": f"Person {n}", "Active": True}
            for n in range(first, first + count)]  # fmt: skip


@pytest.fixture(autouse=True)
def fast_resend(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same resend policy, millisecond backoff: these tests count requests, not seconds."""
    monkeypatch.setattr(sink_module, "resend", functools.partial(resend, base=0.001, cap=0.01))


class Wire:
    """The simulator behind a MockTransport, keeping every request that went out."""

    def __init__(self, sim: WorkflowImportSimulator) -> None:
        self.sim = sim
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return self.sim(request)


@pytest.fixture
def sim() -> WorkflowImportSimulator:
    return WorkflowImportSimulator(SimConfig(api_key=API_KEY, retry_after_seconds=0))


@pytest.fixture
def wire(sim: WorkflowImportSimulator) -> Wire:
    return Wire(sim)


def make_client(handler: Any, key: str = API_KEY) -> WorkflowImportClient:
    return WorkflowImportClient(
        URL, Secret(key), CREATION_PATH, transport=httpx.MockTransport(handler)
    )


@pytest.fixture
def client(wire: Wire) -> Iterator[WorkflowImportClient]:
    made = make_client(wire)
    yield made
    made.close()


@dataclass
class Unit:
    """A RunContext and the remote state Redis would hold for the unit."""

    ctx: RunContext[WorkflowImportLimits, WorkflowImportClient]
    remote: dict[str, str]

    def run(self) -> Delivered:
        return WorkflowImportSink().run(self.ctx)

    def again(self, limits: WorkflowImportLimits = LIMITS) -> Unit:
        """The next attempt: it starts from the remote state the last one left."""
        return unit(self.ctx.client, self.ctx.records, self.remote, limits, self.ctx.params)


def unit(
    client: WorkflowImportClient,
    data: list[Record],
    remote: dict[str, str] | None = None,
    limits: WorkflowImportLimits = LIMITS,
    params: dict[str, Any] | None = None,
) -> Unit:
    stored = remote if remote is not None else {}  # shared: the next attempt sees it
    ctx = RunContext(
        unit_id="job7:0",
        attempt=1,
        records=data,
        params=params or {},
        remote={k: v for k, v in stored.items() if v},
        client=client,
        limits=limits,
        settings=Settings(),
        log=structlog.get_logger("importq.test"),
        remember=stored.update,
        checkpoint=lambda: None,
    )
    return Unit(ctx, stored)


# --- the request ---------------------------------------------------------------------------------


def test_a_batch_is_one_post_of_json_lines_with_control_data_in_the_query(
    wire: Wire, client: WorkflowImportClient
) -> None:
    data = records(3)
    run = unit(client, data, params={"importType": "Onboarding"})
    assert run.run().count == 3
    (request,) = wire.sent
    assert request.method == "POST"
    assert request.headers["Authorization"] == f"apikey {API_KEY}"
    assert dict(request.url.params) == {"importType": "Onboarding", "creationPath": CREATION_PATH}
    lines = request.content.decode().splitlines()
    assert [json.loads(line) for line in lines] == data  # one object per line, no array
    batch = wire.sim.ledger()["batch_list"][0]
    assert run.remote == {
        "post_started_at": run.remote["post_started_at"],
        "creation_path": CREATION_PATH,
        "queue_batch_id": batch["queue_batch_id"],
        "queue_batch_details": f"http://sim/Admin/WorkflowImportQueue?batchId={batch['queue_batch_id']}",
    }  # fmt: skip


def test_creation_path_param_overrides_the_setting(
    wire: Wire, client: WorkflowImportClient
) -> None:
    unit(client, records(1), params={"creationPath": "LH"}).run()
    assert wire.sent[0].url.params["creationPath"] == "LH"
    assert wire.sim.ledger()["batch_list"][0]["creation_path"] == "LH"


# --- at most one post per unit --------------------------------------------------------------------


def test_a_unit_whose_batch_was_created_is_not_posted_again(
    wire: Wire, client: WorkflowImportClient
) -> None:
    first = unit(client, records(5))
    first.run()
    assert first.again().run().count == 5  # the worker died after the answer
    assert len(wire.sent) == 1


def test_lost_answer_holds_the_unit_for_review_instead_of_posting_again(
    wire: Wire, client: WorkflowImportClient
) -> None:
    wire.sim.configure(lose_next=1)
    first = unit(client, records(5))
    with pytest.raises(RetryableError):
        first.run()  # 504 after the batch was created
    with pytest.raises(FinalError) as caught:
        first.again().run()
    message = str(caught.value)
    assert not isinstance(caught.value, RetryableError | RejectedError)
    started = first.remote["post_started_at"]
    for phrase in ("possible duplicate batch", started, '"IMPORT_QUEUE_API:HR_FEED"',
                   "importq dlq replay job7", "WORKFLOW_IMPORT_REPOST_UNKNOWN"):  # fmt: skip
        assert phrase in message
    assert "IMPORT_QUEUE_API:HR_FEED" in first.remote["possible_duplicate"]
    assert len(wire.sent) == 1
    assert wire.sim.ledger()["batches"] == 1


def test_lost_answer_is_posted_again_when_the_setting_says_so(
    wire: Wire, client: WorkflowImportClient
) -> None:
    wire.sim.configure(lose_next=1)
    first = unit(client, records(5))
    with pytest.raises(RetryableError):
        first.run()
    earlier = first.remote["post_started_at"]
    redo = first.again(replace(LIMITS, repost_unknown=True))
    assert redo.run().count == 5
    assert redo.remote["reposted_after"] == earlier
    assert wire.sim.ledger()["batches"] == 2 and wire.sim.ledger()["duplicates"] == 5


def test_after_exhausted_resends_the_next_attempt_posts_without_a_false_alarm(
    wire: Wire, client: WorkflowImportClient
) -> None:
    wire.sim.configure(fail_next=LIMITS.resend_attempts)
    first = unit(client, records(5))
    with pytest.raises(RetryableError) as caught:
        first.run()
    assert isinstance(caught.value, NotApplied) and first.remote["post_started_at"] == ""
    assert first.again().run().count == 5
    assert wire.sim.ledger()["batches"] == 1
    assert len(wire.sent) == LIMITS.resend_attempts + 1


def test_503_is_resent_in_place(wire: Wire, client: WorkflowImportClient) -> None:
    wire.sim.configure(fail_next=1)
    assert unit(client, records(5)).run().count == 5
    assert [len(wire.sent), wire.sim.ledger()["batches"]] == [2, 1]


def test_refused_key_clears_the_marker(wire: Wire) -> None:
    run = unit(make_client(wire, key="wrong-key"), records(2))
    with pytest.raises(AuthError):
        run.run()
    assert run.remote["post_started_at"] == "" and len(wire.sent) == 1


# --- job parameters and planning ------------------------------------------------------------------


def test_params_become_query_values() -> None:
    checked = WorkflowImportSink().check_params(
        {"creationPath": "LH", "dryRun": True, "batchSize": 5}, Settings()
    )
    assert checked == {"creationPath": "LH", "dryRun": "true", "batchSize": "5"}


@pytest.mark.parametrize(
    ("params", "phrase"),
    [
        ({"operation_id": "x"}, "sourcing_data option"),
        ({"apiKey": "x"}, "credentials do not travel"),
        ({"two words": "x"}, "query parameter name"),
        ({"creationPath": ""}, "1 to 1000 characters"),
        ({"tags": ["a"]}, "expected text or a number"),
    ],
)
def test_bad_params_are_refused(params: dict[str, Any], phrase: str) -> None:
    with pytest.raises(InputError) as caught:
        WorkflowImportSink().check_params(params, Settings())
    assert phrase in str(caught.value)


def test_plan_cuts_batches_by_records_and_bytes() -> None:
    located = [(r, f"in:{n}") for n, r in enumerate(records(2500))]
    sizes = [len(b) for b in WorkflowImportSink().plan(located, LIMITS, {})]
    assert sizes == [1000, 1000, 500]
    tight = replace(LIMITS, bytes_per_batch=4000)
    assert max(len(b) for b in WorkflowImportSink().plan(located, tight, {})) < 100


def test_repost_setting_must_be_a_boolean() -> None:
    env = {"WORKFLOW_IMPORT_REPOST_UNKNOWN": "perhaps"}
    with pytest.raises(ConfigError, match="WORKFLOW_IMPORT_REPOST_UNKNOWN"):
        WorkflowImportLimits.from_settings(Settings(env=env))
    on = WorkflowImportLimits.from_settings(
        Settings(env={"WORKFLOW_IMPORT_REPOST_UNKNOWN": "true"})
    )
    assert on.repost_unknown
