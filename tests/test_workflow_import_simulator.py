"""The Workflow Import simulator in-process: what it refuses, and what its ledger counts."""

from __future__ import annotations

import httpx
import pytest

from simulators.workflow_import import BASE_PATH, SimConfig, WorkflowImportSimulator

URL = f"http://sim{BASE_PATH}"
API_KEY = "simulator-test-key-2d9f10"


@pytest.fixture
def sim() -> WorkflowImportSimulator:
    return WorkflowImportSimulator(SimConfig(api_key=API_KEY))


def post(sim: WorkflowImportSimulator, body: bytes, key: str | None = API_KEY,
         **query: str) -> httpx.Response:  # fmt: skip
    headers = {"Authorization": f"apikey {key}"} if key else {}
    with httpx.Client(transport=httpx.MockTransport(sim)) as http:
        return http.post(URL, params={"creationPath": "T", **query}, content=body, headers=headers)


@pytest.mark.parametrize(
    ("body", "query", "status", "phrase"),
    [
        (b'[{"a": 1}]', {}, 400, "must be JSON Lines"),
        (b'{"a": 1}\n{"a": \n', {}, 400, "Line 2 is not valid JSON"),
        (b'{"a": 1}\n[1]\n', {}, 400, "Line 2 is not a JSON object"),
        (b"\n", {}, 400, "no records"),
        (b'{"a": 1}\n', {"creationPath": ""}, 400, "'creationPath' is required"),
    ],
)
def test_simulator_refuses_bad_bodies_before_creating_anything(
    sim: WorkflowImportSimulator, body: bytes, query: dict[str, str], status: int, phrase: str
) -> None:
    response = post(sim, body, **query)
    assert response.status_code == status and phrase in response.json()["detail"]
    assert sim.ledger()["batches"] == 0


def test_simulator_checks_the_api_key_and_the_permission(sim: WorkflowImportSimulator) -> None:
    body = b'{"a": 1}\n'
    assert post(sim, body, key=None).status_code == 401
    assert post(sim, body, key="nope").status_code == 401
    sim.configure(keys_without_permission={API_KEY})
    forbidden = post(sim, body)
    assert forbidden.status_code == 403
    assert "BeginWorkflowImportProcess" in forbidden.json()["detail"]
    assert sim.ledger()["refused"] == {"401": 2, "403": 1}


def test_simulator_ledger_counts_records_posted_in_two_batches(
    sim: WorkflowImportSimulator,
) -> None:
    sim.configure(key_column="id")
    for body in (b'{"id": 1}\n{"id": 2}\n', b'{"id": 2}\n'):
        assert post(sim, body).status_code == 200
    ledger = sim.ledger()
    assert ledger["records_by_key"] == {"T/1": 1, "T/2": 2}
    assert (ledger["batches"], ledger["records"], ledger["duplicates"]) == (2, 3, 1)
    assert ledger["max_records_in_batch"] == 2
