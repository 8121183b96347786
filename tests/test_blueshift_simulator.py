"""The Blueshift simulator: the vendor's answers, per-import states and its ledger."""

from __future__ import annotations

import base64
import threading

import httpx
import pytest

from simulators.blueshift import (
    FAKE_API_KEY,
    TRIGGER_PATH,
    BlueshiftSimulator,
    SimConfig,
    summarize,
)
from simulators.http import serve

UUID = "9b2f1c3e-4d5a-4b6c-8d7e-0f1a2b3c4d5e"


def basic(username: str, password: str = "") -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def trigger(sim: BlueshiftSimulator, uuid: str = UUID, **headers: str) -> httpx.Response:
    with httpx.Client(transport=httpx.MockTransport(sim), base_url="http://sim") as client:
        return client.post(
            TRIGGER_PATH, json={"uuid": uuid}, headers=headers or basic(FAKE_API_KEY)
        )


@pytest.fixture
def sim() -> BlueshiftSimulator:
    return BlueshiftSimulator(SimConfig(imports={UUID: "launched"}))


def test_a_launched_import_is_triggered(sim: BlueshiftSimulator) -> None:
    response = trigger(sim)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert sim.ledger()["accepted"] == {UUID: 1}


@pytest.mark.parametrize(
    "headers",
    [{}, basic("wrong-key"), basic(FAKE_API_KEY, "a-password"), {"Authorization": "Bearer x"}],
    ids=["none", "wrong-key", "password-set", "bearer"],
)
def test_anything_but_the_key_as_basic_username_is_refused(
    sim: BlueshiftSimulator, headers: dict[str, str]
) -> None:
    with httpx.Client(transport=httpx.MockTransport(sim), base_url="http://sim") as client:
        response = client.post(TRIGGER_PATH, json={"uuid": UUID}, headers=headers)
    assert (response.status_code, response.json()) == (401, {"message": "Not authorized"})


@pytest.mark.parametrize("state", ["not_s3", "not_launched", "processing"])
def test_untriggerable_states_answer_405_with_the_vendor_message(
    sim: BlueshiftSimulator, state: str
) -> None:
    sim.configure(imports={UUID: state})
    response = trigger(sim)
    assert response.status_code == 405
    assert response.json()["errors"][0]["detail"] == "Error: Action not supported"
    assert sim.ledger()["refused_405"] == {UUID: 1}


def test_unknown_import_is_404(sim: BlueshiftSimulator) -> None:
    response = trigger(sim, uuid="00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404
    assert response.json()["errors"][0]["detail"] == "Error: Resource not found"


def test_one_shot_processing_passes_after_n_triggers(sim: BlueshiftSimulator) -> None:
    sim.configure(busy_triggers={UUID: 2})
    assert [trigger(sim).status_code for _ in range(3)] == [405, 405, 200]


def test_an_accepted_trigger_keeps_the_import_busy_for_a_while(sim: BlueshiftSimulator) -> None:
    sim.configure(processing_seconds=60)
    assert [trigger(sim).status_code for _ in range(2)] == [200, 405]


def test_scripted_answers_and_early_retries_are_recorded(sim: BlueshiftSimulator) -> None:
    sim.configure(answers={UUID: [429, 502]}, retry_after_seconds=30)
    first = trigger(sim)
    assert (first.status_code, first.headers["Retry-After"]) == (429, "30")
    assert [trigger(sim).status_code for _ in range(2)] == [502, 200]
    ledger = sim.ledger()
    assert ledger["early_triggers"] == {UUID: 2}  # both came back within the 30 s
    assert ledger["statuses"] == {"200": 1, "429": 1, "502": 1}


def test_overlapping_triggers_of_one_import_are_counted_over_http(
    sim: BlueshiftSimulator,
) -> None:
    both_inside = threading.Barrier(2, timeout=10)
    sim.trigger_hooks.append(lambda uuid: both_inside.wait())  # hold each until both arrived
    with serve(sim) as server:

        def post() -> None:
            httpx.post(server.url + TRIGGER_PATH, json={"uuid": UUID}, headers=basic(FAKE_API_KEY))

        threads = [threading.Thread(target=post) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ledger = httpx.get(server.url + "/_sim/ledger").json()
    assert ledger["max_concurrent"] == {UUID: 2}  # what the ledger shows when nothing caps it
    assert ledger["accepted"] == {UUID: 2}


def test_reset_forgets_counts_and_hooks(sim: BlueshiftSimulator) -> None:
    sim.trigger_hooks.append(lambda uuid: None)
    trigger(sim)
    assert summarize(sim.ledger()) == [
        "1 triggers accepted for 1 imports, 0 answered 405, 0 faults injected, "
        "at most 1 at once per import"
    ]
    sim.reset()
    assert sim.ledger()["triggers"] == {} and sim.trigger_hooks == []
