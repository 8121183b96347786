"""Data Source end to end: real Redis, real Celery worker processes, the simulator over HTTP."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from importq.cli import main
from importq.errors import InputError
from tests.helpers import wait_for_job, wait_for_pause
from workers import keys
from workers.jobs import JobStore

HEADERS = "Code:Title,Name:SubLeft,Info"
CANARY_KEY = "canary-datasource-key-5e2a90"
STALE = [["OLD-1", "stale", "gone after a replace"], ["OLD-2", "stale", "gone too"]]


def rows(count: int, first: int = 0, tag: str = "v1") -> list[list[str]]:
    return [[f"K{n}", f"Sport {n} {tag}", f"about {n}"] for n in range(first, first + count)]


def publish(mode: str, external_id: str, vals: list[list[str]], **params: str) -> str:
    from producers.publish import locate
    from producers.publish import publish as publish_job
    from workers import app

    defaults = {"mode": mode, "external_id": external_id, "name": f"Sports {external_id}"}
    if mode != "delete":
        defaults["headers"] = HEADERS
    return publish_job(
        "datasource",
        locate({"Vals": v} for v in vals),
        {**defaults, **params},
        settings=app.settings(),
        store=JobStore(app.redis_client()),
        publish_unit=app.publish_unit,
    )


def operations(ledger: dict[str, Any], external_id: str) -> list[tuple[str, int]]:
    return [
        (op["kind"], op["rows"]) for op in ledger["operations"] if op["data_source"] == external_id
    ]


def rows_of(ledger: dict[str, Any], external_id: str) -> list[list[str]]:
    rows_now: list[list[str]] = ledger["data_sources"][external_id]["rows"]
    return rows_now


def succeeded(*job_ids: str) -> None:
    for job_id in job_ids:
        job = wait_for_job(job_id, timeout=90)
        assert job.state == "succeeded", job


@pytest.fixture
def ds(fresh_simulators: dict[str, Any]) -> Any:
    sim = fresh_simulators["datasource"]
    sim.configure(
        data_sources={
            "sports",
            "other",
            "e10000",
            "e10001",
            "u1500",
            "u1501",
            "d500",
            "d501",
            "e50000",
        }
    )
    return sim


def test_replace_upsert_and_delete_leave_exactly_the_published_rows(
    ds: Any, start_worker: Any
) -> None:
    ds.load("sports", STALE)
    start_worker(queues="datasource", concurrency=2)
    replace = publish("replace", "sports", rows(12_000))
    upsert = publish("upsert", "sports", rows(1_000, tag="v2") + rows(1_000, first=20_000))
    delete = publish("delete", "sports", [[f"K{n}"] for n in range(1_000, 1_600)])
    succeeded(replace, upsert, delete)

    expected = {vals[0]: vals for vals in rows(12_000)}
    expected.update((vals[0], vals) for vals in rows(1_000, tag="v2") + rows(1_000, first=20_000))
    for n in range(1_000, 1_600):
        del expected[f"K{n}"]
    ledger = ds.ledger()
    assert {vals[0]: vals for vals in rows_of(ledger, "sports")} == expected
    assert len(rows_of(ledger, "sports")) == 12_000 + 1_000 - 600
    assert operations(ledger, "sports") == [
        ("Rows", 10_000),
        ("NewRows", 1_500),
        ("NewRows", 500),  # the replace
        ("NewRows", 1_500),
        ("NewRows", 500),  # the upsert
        ("DeletedRows", 500),
        ("DeletedRows", 100),  # the delete
    ]
    source = ledger["data_sources"]["sports"]
    assert source["name"] == "Sports sports"
    assert [h.get("DisplayAt") for h in source["headers"]] == ["Title", "SubLeft", None]


def test_requests_are_cut_at_the_vendor_limits_and_larger_inputs_refused_up_front(
    ds: Any, start_worker: Any, redis_client: redis.Redis
) -> None:
    refused = [
        ("replace", rows(50_001), "record 50001: more than 50000 rows"),
        ("replace", [*rows(3), ["K9"]], "record 4: 1 Val(s) but 3 headers"),
        ("upsert", [*rows(3), ["K9", "a", "b", "c"]], "record 4: 4 Val(s) but 3 headers"),
        ("delete", [["K1"], ["K2", "Sport 2"]], "record 2: a delete names a row by its key"),
    ]
    for mode, vals, message in refused:
        with pytest.raises(InputError, match=re.escape(message)):
            publish(mode, "e50000", vals)
    assert redis_client.keys("importq:*") == [] and redis_client.llen("datasource") == 0

    ds.load("d500", rows(600))
    ds.load("d501", rows(600))
    start_worker(queues="datasource", concurrency=4)
    succeeded(
        publish("replace", "e10000", rows(10_000)),
        publish("replace", "e10001", rows(10_001)),
        publish("upsert", "u1500", rows(1_500)),
        publish("upsert", "u1501", rows(1_501)),
        publish("delete", "d500", [[f"K{n}"] for n in range(500)]),
        publish("delete", "d501", [[f"K{n}"] for n in range(501)]),
        publish("replace", "e50000", rows(50_000)),
    )
    ledger = ds.ledger()
    assert operations(ledger, "e10000") == [("Rows", 10_000)]
    assert operations(ledger, "e10001") == [("Rows", 10_000), ("NewRows", 1)]
    assert operations(ledger, "u1500") == [("NewRows", 1_500)]
    assert operations(ledger, "u1501") == [("NewRows", 1_500), ("NewRows", 1)]
    assert operations(ledger, "d500") == [("DeletedRows", 500)]
    assert operations(ledger, "d501") == [("DeletedRows", 500), ("DeletedRows", 1)]
    assert operations(ledger, "e50000") == [("Rows", 10_000)] + [("NewRows", 1_500)] * 26 + [
        ("NewRows", 1_000)
    ]
    assert rows_of(ledger, "e50000") == rows(50_000)  # in publish order: the display order
    assert [len(rows_of(ledger, ext)) for ext in ("d500", "d501")] == [100, 99]
    assert ledger["max_rows_by_kind"] == {"Rows": 10_000, "NewRows": 1_500, "DeletedRows": 500}
    assert ledger["refused"] == 0


def test_xml_bodies_end_to_end(ds: Any, start_worker: Any) -> None:
    ds.load("sports", STALE)
    start_worker(queues="datasource", concurrency=2, DATASOURCE_FORMAT="xml")
    replace = publish("replace", "sports", rows(10_500))
    delete = publish("delete", "sports", [["K0"], ["K10499"]])
    succeeded(replace, delete)
    ledger = ds.ledger()
    assert rows_of(ledger, "sports") == rows(10_500)[1:-1]
    assert operations(ledger, "sports") == [("Rows", 10_000), ("NewRows", 500), ("DeletedRows", 2)]
    assert ledger["requests_by_format"] == {"json": 0, "xml": 3}


def test_an_entity_expansion_answer_fails_the_job_without_being_parsed(
    ds: Any, start_worker: Any
) -> None:
    ds.configure(hostile_xml=True, data_sources=set())  # every answer is a 400 with a bomb
    start_worker(queues="datasource", concurrency=1, DATASOURCE_FORMAT="xml")
    job = wait_for_job(publish("replace", "sports", rows(20)))
    assert job.state == "failed" and job.records_dead == 20
    letters = json.loads(_cli("dlq", "show", job.id, "--json", "--limit", "1").stdout)
    assert "declares a DTD or entities" in letters[0]["reason"]
    assert ds.ledger()["requests"] == 1  # final at once: no retry of a hostile answer


def test_a_worker_killed_mid_replace_leaves_exactly_the_published_rows(
    ds: Any, start_worker: Any
) -> None:
    ds.load("sports", STALE)
    ds.configure(latency_seconds=0.4)
    first = start_worker(queues="datasource", concurrency=1)
    job_id = publish("replace", "sports", rows(12_000))
    deadline = time.monotonic() + 60
    while not operations(ds.ledger(), "sports"):  # the Rows request has landed
        assert time.monotonic() < deadline, "the worker never sent its Rows request"
        time.sleep(0.02)
    first.kill()  # between the Rows request and the last NewRows request
    assert len(rows_of(ds.ledger(), "sports")) < 12_000
    start_worker(queues="datasource", concurrency=1)
    job = wait_for_job(job_id, timeout=90)
    assert job.state == "succeeded" and job.crashes >= 1
    ledger = ds.ledger()
    assert rows_of(ledger, "sports") == rows(12_000)
    kinds = [kind for kind, _ in operations(ledger, "sports")]
    assert kinds.count("Rows") == 2 and kinds[-3:] == ["Rows", "NewRows", "NewRows"]
    assert ledger["max_in_flight_per_data_source"] == 1


def test_a_replace_lands_before_the_upsert_published_after_it(ds: Any, start_worker: Any) -> None:
    ds.configure(latency_seconds=0.1)
    start_worker(queues="datasource", concurrency=4)
    replace = publish("replace", "sports", rows(12_000))
    upsert = publish("upsert", "sports", rows(300, first=11_900, tag="v2"))
    succeeded(replace, upsert)
    ledger = ds.ledger()
    assert operations(ledger, "sports") == [
        ("Rows", 10_000),
        ("NewRows", 1_500),
        ("NewRows", 500),
        ("NewRows", 300),
    ]
    assert rows_of(ledger, "sports") == rows(11_900) + rows(100, first=11_900, tag="v2") + rows(
        200, first=12_000, tag="v2"
    )
    assert ledger["max_in_flight_per_data_source"] == 1


def test_different_data_sources_are_updated_in_parallel(ds: Any, start_worker: Any) -> None:
    ds.configure(latency_seconds=0.2)
    start_worker(queues="datasource", concurrency=4)
    succeeded(
        publish("replace", "sports", rows(12_000)),
        publish("replace", "other", rows(12_000)),
        publish("upsert", "sports", rows(10, tag="v2")),
    )
    ledger = ds.ledger()
    assert ledger["max_in_flight"] == 2  # both data sources at once...
    assert ledger["max_in_flight_per_data_source"] == 1  # ...but each by one worker at a time
    assert rows_of(ledger, "other") == rows(12_000)


def test_canary_integration_key_never_leaves_the_process(
    ds: Any, start_worker: Any, redis_client: redis.Redis
) -> None:
    ds.configure(integration_key=CANARY_KEY, fault_rate=0.3, seed=1)
    worker = start_worker(queues="datasource", concurrency=2, DATASOURCE_INTEGRATION_KEY=CANARY_KEY)
    succeeded(publish("replace", "sports", rows(12_000)))
    assert ds.ledger()["faults"] > 0  # retried requests went out with the key again
    ds.configure(integration_key="the-vendor-now-wants-another-key")
    job_id = publish("upsert", "sports", rows(10))
    assert "DATASOURCE_INTEGRATION_KEY" in wait_for_pause("datasource").reason  # paused
    assert redis_client.llen(keys.dead_letters(job_id)) == 0
    worker.stop()
    log = worker.log_path.read_bytes()
    assert b"401" in log  # the failure was logged...
    assert CANARY_KEY.encode() not in log  # ...without the key
    assert CANARY_KEY.encode() not in b"\n".join(_redis_values(redis_client))


def _redis_values(client: redis.Redis) -> Iterator[bytes]:
    """Every key and value in Redis, whatever its type."""
    readers = {
        b"string": lambda key: [client.get(key) or b""],
        b"hash": lambda key: [part for pair in client.hgetall(key).items() for part in pair],
        b"list": lambda key: client.lrange(key, 0, -1),
        b"set": lambda key: list(client.smembers(key)),
        b"zset": lambda key: client.zrange(key, 0, -1),
    }
    for key in client.scan_iter():
        yield key
        yield from readers[client.type(key)](key)


def _cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))
