"""The Blue simulator's ledger judges the client: a second import tried while one is open counts.

Blue refuses a second RegisterImport while an import is open on the instance,
and the simulator answers the same way; but a ledger that only counted what
Blue let through could never show a client that tried to run two imports at
once. So the attempt is recorded: `overlaps`, and `max_open` counting it.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from importq.settings import Secret
from simulators.blue import BUSY, FAKE_API_KEY, BlueSimulator
from simulators.blue_soap import Refusal
from workers.targets.blue.answers import ImportOptions
from workers.targets.blue.client import BlueClient
from workers.targets.blue.refusals import BlueBusy

SVC = "http://blue.test/BlueWebService.svc"


def test_one_import_at_a_time_leaves_no_overlap() -> None:
    sim = BlueSimulator()
    for _ in range(2):
        transaction = sim.register("Data1", abort_on_empty=False)
        sim.prepare(str(transaction))
        sim.finalize(str(transaction))
    ledger = sim.ledger()
    assert (ledger["max_open"], ledger["overlaps"], ledger["busy_refusals"]) == (1, 0, 0)


def test_a_second_register_is_refused_as_blue_does_and_recorded_as_an_overlap() -> None:
    sim = BlueSimulator()
    first = sim.register("Data1", abort_on_empty=False)
    with pytest.raises(Refusal, match="currently being imported by another process"):
        sim.register("Data2", abort_on_empty=False)  # another datasource: the same instance
    ledger = sim.ledger()
    assert ledger["overlaps"] == 1
    assert ledger["max_open"] == 2  # the refused attempt counts as a second open import
    assert ledger["transactions"] == {"registered": 1}  # Blue itself kept one open
    sim.cancel(str(first))
    sim.register("Data1", abort_on_empty=False)  # after the first ended: no overlap
    assert sim.ledger()["overlaps"] == 1


def test_registering_over_someone_elses_import_is_an_overlap_too() -> None:
    sim = BlueSimulator()
    sim.open_foreign("Data2")
    with pytest.raises(Refusal, match=BUSY):
        sim.register("Data1", abort_on_empty=True)
    assert (sim.ledger()["overlaps"], sim.ledger()["max_open"]) == (1, 2)


def test_the_overlap_is_recorded_for_a_client_over_soap() -> None:
    sim = BlueSimulator()
    client = BlueClient(Secret(FAKE_API_KEY), endpoint=SVC, soap_version="1.2",
                        transport=httpx.MockTransport(sim))  # fmt: skip
    client.register("Data1", ImportOptions())
    with pytest.raises(BlueBusy):
        client.register("Data1", ImportOptions())
    ledger = sim.ledger()
    assert (ledger["overlaps"], ledger["max_open"], ledger["busy_refusals"]) == (1, 2, 1)
    assert ledger["requests"]["RegisterImport"] == 2


def test_a_prepare_lasts_as_long_as_prepare_seconds_says_now() -> None:
    # A test that needed a long prepare (the slot's lease renewals) shortens it afterwards
    # rather than waiting it out.
    sim = BlueSimulator()
    sim.configure(prepare_seconds=600)
    transaction = str(sim.register("Data1", abort_on_empty=False))
    preparing = threading.Thread(target=sim.prepare, args=(transaction,))
    preparing.start()
    while not sim.ledger()["transactions"].get("preparing"):
        time.sleep(0.01)
    sim.configure(prepare_seconds=0.05)
    preparing.join(timeout=60)  # far below the 600 s it started with
    assert not preparing.is_alive()
    assert sim.ledger()["transactions"] == {"prepared": 1}
