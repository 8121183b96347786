"""Tests for the SourcingData simulator, in-process via MockTransport and over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from simulators.http import serve
from simulators.sourcing_data import FAKE_TOKEN, SimConfig, SourcingDataSimulator

BASE = "/api/asol/ds/api/v2/SourcingData/EnqueueData"
AGENT = {"agentId": "demo-agent"}


def records(count: int, first: int = 0, entity: str = "ORG_DEPT") -> list[dict[str, Any]]:
    return [
        {"entityId": entity, "recordId": str(n), "data": {"Code": f"C{n}"}}
        for n in range(first, first + count)
    ]


def client_for(sim: SourcingDataSimulator, token: str | None = FAKE_TOKEN) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(transport=httpx.MockTransport(sim), base_url="http://sim", headers=headers)


@pytest.fixture
def sim() -> SourcingDataSimulator:
    return SourcingDataSimulator(SimConfig(processing_seconds=0))


@pytest.fixture
def client(sim: SourcingDataSimulator) -> Iterator[httpx.Client]:
    with client_for(sim) as c:
        yield c


def start(
    client: httpx.Client, items: list[dict[str, Any]], incomplete: bool = False, **params: str
) -> httpx.Response:
    body = {"items": items, "incompleteData": incomplete}
    return client.post(f"{BASE}/start", params={**AGENT, **params}, json=body)


def append(
    client: httpx.Client, item_id: str, items: list[dict[str, Any]], incomplete: bool = False
) -> httpx.Response:
    body = {"items": items, "incompleteData": incomplete}
    return client.post(f"{BASE}/append/{item_id}", params=AGENT, json=body)


def status(client: httpx.Client, item_id: str) -> dict[str, Any]:
    response = client.get(f"{BASE}/status/{item_id}", params=AGENT)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_missing_or_wrong_token_is_401(sim: SourcingDataSimulator) -> None:
    for token in (None, "not-the-token"):
        with client_for(sim, token) as c:
            response = start(c, records(1))
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert sim.ledger()["items"]["Success"] == 0


def test_forbidden_token_is_403(sim: SourcingDataSimulator) -> None:
    sim.configure(forbidden_tokens=["fake-readonly-token"])
    with client_for(sim, "fake-readonly-token") as c:
        assert start(c, records(1)).status_code == 403


def test_unknown_agent_is_404(client: httpx.Client) -> None:
    response = client.post(f"{BASE}/start", params={"agentId": "nope"}, json={"items": []})
    assert response.status_code == 404
    assert response.json()["title"] == "Agent not found"


def test_invalid_record_names_index_and_field(client: httpx.Client) -> None:
    items = [*records(2), {"entityId": "ORG_DEPT"}]
    response = start(client, items)
    assert response.status_code == 400
    assert "items[2].recordId" in response.json()["detail"]
    both = [{"entityId": "E", "recordId": "1", "data": {}, "fields": []}]
    assert "items[0]" in start(client, both).json()["detail"]


def test_more_than_500_records_is_400_without_effect(
    sim: SourcingDataSimulator, client: httpx.Client
) -> None:
    response = start(client, records(501))
    assert response.status_code == 400
    assert "at most 500" in response.json()["detail"]
    ledger = sim.ledger()
    assert ledger["max_records_in_request"] == 501
    assert sum(ledger["items"].values()) == 0


def test_small_start_is_processed_synchronously(
    sim: SourcingDataSimulator, client: httpx.Client
) -> None:
    response = start(client, records(3))
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "Success"
    assert body["wasSuccess"] is True
    assert body["finishedOn"] is not None
    assert sim.ledger()["committed_records"] == 3


def test_large_start_is_async_then_success(
    sim: SourcingDataSimulator, client: httpx.Client
) -> None:
    response = start(client, records(500))
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "Completed"
    assert body["completedOn"] is not None
    assert body["finishedOn"] is None
    assert sim.ledger()["committed_records"] == 500  # ledger reads also advance processing
    assert status(client, body["queueItemId"])["status"] == "Success"


def test_async_item_waits_processing_seconds() -> None:
    sim = SourcingDataSimulator(SimConfig(processing_seconds=60))
    with client_for(sim) as c:
        item_id = start(c, records(500)).json()["queueItemId"]
        assert status(c, item_id)["status"] == "Completed"
        assert sim.ledger()["committed_records"] == 0


def test_append_flow_with_incomplete_data(sim: SourcingDataSimulator, client: httpx.Client) -> None:
    first = start(client, records(2), incomplete=True, operationId="op-1")
    assert first.status_code == 202
    item_id = first.json()["queueItemId"]
    assert first.json()["status"] == "Pending"
    assert append(client, item_id, records(2, 2), incomplete=True).json()["status"] == "Pending"
    last = append(client, item_id, records(2, 4))
    assert last.status_code == 202
    assert last.json()["status"] == "Completed"
    assert status(client, item_id)["status"] == "Success"
    assert append(client, item_id, records(1, 9)).status_code == 400  # no longer Pending
    ledger = sim.ledger()
    assert ledger["committed_records"] == 6
    assert ledger["max_records_in_item"] == 6
    assert ledger["max_open_items_per_operation"] == 1
    assert ledger["requests_by_kind"]["append"] == 3


def test_open_items_per_operation_are_tracked(
    sim: SourcingDataSimulator, client: httpx.Client
) -> None:
    for _ in range(3):
        start(client, records(1), incomplete=True, operationId="op-2")
    assert sim.ledger()["max_open_items_per_operation"] == 3


def test_item_record_cap_fails_the_item(sim: SourcingDataSimulator, client: httpx.Client) -> None:
    sim.configure(max_records_per_item=5)
    item_id = start(client, records(3), incomplete=True).json()["queueItemId"]
    response = append(client, item_id, records(3, 3))
    assert response.status_code == 400
    assert "5 records" in response.json()["detail"]
    assert status(client, item_id)["status"] == "Failed"
    assert sim.ledger()["committed_records"] == 0


def test_item_byte_cap_fails_the_item(sim: SourcingDataSimulator, client: httpx.Client) -> None:
    sim.configure(max_item_bytes=100)
    response = start(client, records(10))
    assert response.status_code == 400
    ledger = sim.ledger()
    assert ledger["items"]["Failed"] == 1
    assert ledger["max_item_bytes"] > 100
    assert ledger["committed_records"] == 0


def test_poison_record_fails_whole_item(sim: SourcingDataSimulator, client: httpx.Client) -> None:
    sim.configure(poison_record_ids=["1"])
    body = start(client, records(3)).json()
    assert body["status"] == "Failed"
    assert body["wasFailure"] is True
    assert body["errorMessage"] == "Value '1' doesn't fit to expected format. (Parameter 'value')"
    assert sim.ledger()["committed_records"] == 0


def test_cancel(sim: SourcingDataSimulator, client: httpx.Client) -> None:
    item_id = start(client, records(2), incomplete=True).json()["queueItemId"]
    assert client.delete(f"{BASE}/cancel/{item_id}", params=AGENT).status_code == 204
    body = status(client, item_id)
    assert (body["status"], body["wasFailure"]) == ("Canceled", True)
    assert client.delete(f"{BASE}/cancel/{item_id}", params=AGENT).status_code == 400
    assert client.delete(f"{BASE}/cancel/unknown", params=AGENT).status_code == 404
    assert append(client, item_id, records(1)).status_code == 400
    assert sim.ledger()["committed_records"] == 0


@pytest.mark.parametrize(("fault", "retry_after"), [(429, "1"), (503, "1"), (502, None)])
def test_fault_injection_has_no_effect(
    sim: SourcingDataSimulator, client: httpx.Client, fault: int, retry_after: str | None
) -> None:
    sim.configure(fault_rate=1.0, fault_statuses=[fault], seed=7)
    response = start(client, records(3))
    assert response.status_code == fault
    assert response.headers.get("Retry-After") == retry_after
    ledger = sim.ledger()
    assert (ledger["faults"], ledger["requests"], ledger["committed_records"]) == (1, 1, 0)
    assert sum(ledger["items"].values()) == 0


def test_ledger_counts_duplicates(sim: SourcingDataSimulator, client: httpx.Client) -> None:
    start(client, records(3))
    start(client, records(2))
    ledger = sim.ledger()
    assert ledger["commits"]["ORG_DEPT/0"] == 2
    assert ledger["commits"]["ORG_DEPT/2"] == 1
    assert (ledger["committed_records"], ledger["duplicates"]) == (5, 2)


def test_list_is_latest_first_and_filtered(client: httpx.Client) -> None:
    ids = [start(client, records(1), clientId=c).json()["queueItemId"] for c in ("a", "b", "a")]
    body = client.get(BASE, params={**AGENT, "clientId": "a"}).json()
    assert body["totalCount"] == 2
    assert [item["queueItemId"] for item in body["items"]] == [ids[2], ids[0]]
    page = client.get(BASE, params={**AGENT, "offset": "1", "limit": "1"}).json()
    assert [item["queueItemId"] for item in page["items"]] == [ids[1]]


def test_admin_routes_configure_and_reset(sim: SourcingDataSimulator) -> None:
    with client_for(sim, token=None) as admin:
        config = admin.post("/_sim/config", json={"agents": ["a", "b"], "fault_statuses": [503]})
        assert config.status_code == 200
        assert sim.config.agents == {"a", "b"}
        assert sim.config.fault_statuses == (503,)
        assert admin.post("/_sim/config", json={"nope": 1}).status_code == 400
        with client_for(sim) as c:
            c.post(f"{BASE}/start", params={"agentId": "a"}, json={"items": records(1)})
        assert admin.get("/_sim/ledger").json()["committed_records"] == 1
        assert admin.post("/_sim/reset").status_code == 200
        assert admin.get("/_sim/ledger").json()["requests"] == 0


def test_serve_over_real_http() -> None:
    sim = SourcingDataSimulator(SimConfig(processing_seconds=0))
    with serve(sim) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        headers = {"Authorization": f"Bearer {FAKE_TOKEN}"}
        with httpx.Client(base_url=server.url + "/api/asol/ds", headers=headers) as c:
            created = c.post(
                "/api/v2/SourcingData/EnqueueData/start",
                params=AGENT,
                json={"items": records(2), "incompleteData": True},
            )
            assert created.status_code == 202
            item_id = created.json()["queueItemId"]
            # A streamed body goes out chunked; the server must de-chunk it.
            chunked = c.post(
                f"/api/v2/SourcingData/EnqueueData/append/{item_id}",
                params=AGENT,
                content=iter([b'{"items": [], ', b'"incompleteData": true}']),
            )
            assert chunked.json()["status"] == "Pending"
            # 204 then more requests on the same keep-alive connection: framing must hold.
            canceled = c.delete(f"/api/v2/SourcingData/EnqueueData/cancel/{item_id}", params=AGENT)
            assert canceled.status_code == 204
            assert (
                c.get(f"/api/v2/SourcingData/EnqueueData/status/{item_id}", params=AGENT).json()[
                    "status"
                ]
                == "Canceled"
            )
        ledger = httpx.get(f"{server.url}/_sim/ledger").json()
        assert ledger["requests_by_kind"] == {
            "list": 0,
            "start": 1,
            "append": 1,
            "status": 1,
            "cancel": 1,
        }
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/_sim/ledger", timeout=2)
