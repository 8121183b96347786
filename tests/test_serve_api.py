"""`importq serve` over real HTTP: a real server process, the session's Redis, real workers.

Producers publish a body (JSON Lines, a JSON array, CSV, gzip) and get a job they follow,
replay and cancel through the API; the tests check what a producer in any language relies
on: idempotent retries, the 422 that lists bad records, 429 when the queue is full, 401
against 403, and that nothing is staged for a refused body.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import redis

from importq.serve.callbacks import signature
from tests.helpers import jsonl, wait_for_job, wait_until
from tests.serving import CALLBACK_SECRET, OTHER, QUEUE_LIMIT, READER, WRITER, Api, api
from tests.test_http_batch_e2e import events, sim, worker
from tests.test_jobs_listing import backdate
from workers.keys import SERVE_CALLBACKS, serve_callback

__all__ = ["api", "sim", "worker"]  # the fixtures: the receiver and its workers
TARGET = "http_batch"
JSONL = {"Content-Type": "application/x-ndjson"}
JOBS = f"/v1/targets/{TARGET}/jobs"


def post(api: Api, body: bytes | str, headers: dict[str, str] = JSONL, **kw: Any) -> httpx.Response:
    with api.client(kw.pop("token", WRITER)) as client:
        return client.post(kw.pop("path", JOBS), content=body, headers=headers, **kw)


def listed_jobs(client: redis.Redis) -> int:
    return int(client.zcard("importq:jobs"))


def test_a_json_lines_body_becomes_a_job_the_workers_deliver(
    api: Api, sim: Any, worker: Any, redis_client: redis.Redis
) -> None:
    worker(concurrency=2)
    answer = post(api, jsonl(*events(1200)), params={"path": "events/"})
    assert answer.status_code == 201, answer.text
    job = answer.json()
    assert job["records_total"] == 1200 and job["units_total"] == 3
    assert answer.headers["Location"] == job["url"] == f"{api.url}/v1/jobs/{job['id']}"
    assert wait_for_job(job["id"]).state == "succeeded"
    with api.client(READER) as client:
        read = client.get(f"/v1/jobs/{job['id']}").json()
    assert read["state"] == "succeeded" and read["records_delivered"] == 1200
    assert [unit["state"] for unit in read["units"]] == ["succeeded"] * 3
    assert sim.ledger()["paths"] == {"events": 3}  # the query parameter reached the target
    # importq's own log pipeline (JSON off a TTY, redacted), as the workers', not bare structlog
    logged = [json.loads(line) for line in api.log.read_text().splitlines() if line[:1] == "{"]
    (published,) = [e for e in logged if e.get("job_id") == job["id"]]
    assert published["event"] == "job published" and published["records"] == 1200
    assert published["level"] == "info" and published["publish_cpu_ms"] > 0
    assert published["caller"] == "writer"  # the token's name, never the token


def test_a_gzipped_json_array_and_a_csv_body_are_read_like_files(
    api: Api, redis_client: redis.Redis
) -> None:
    array = gzip.compress(json.dumps(events(700)).encode())
    answer = post(api, array, {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["records_total"] == 700
    csv = "eventId,type\nev-1,purchase\nev-2,refund\n"
    answer = post(api, csv, {"Content-Type": "text/csv; charset=utf-8"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["records_total"] == 2


def test_a_retried_request_with_its_idempotency_key_gets_the_same_job(
    api: Api, redis_client: redis.Redis
) -> None:
    body = jsonl(*events(10))
    key = {**JSONL, "Idempotency-Key": "order-export-2026-12-07"}
    first, again = post(api, body, key), post(api, body, key)
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert listed_jobs(redis_client) == 1
    other = post(api, jsonl(*events(11)), key)
    assert other.status_code == 409 and "another body" in other.json()["detail"]
    fresh = post(api, body, {**JSONL, "Idempotency-Key": "order-export-2026-12-08"})
    assert fresh.status_code == 201 and fresh.json()["id"] != first.json()["id"]
    assert listed_jobs(redis_client) == 2


def test_a_body_with_bad_records_is_refused_whole_listing_each_error(
    api: Api, redis_client: redis.Redis
) -> None:
    body = jsonl(*events(3), {}, *events(2), "{not json", {"": 1}, *events(4))
    answer = post(api, body, {**JSONL, "Idempotency-Key": "will-be-fixed"})
    assert answer.status_code == 422, answer.text
    refused = answer.json()
    assert [e["where"] for e in refused["errors"]] == ["body:4", "body:7", "body:8"]
    assert refused["errors"][1]["message"].startswith("not valid JSON")
    assert refused["errors"][2]["message"] == "field name '': must not be empty"
    assert refused["detail"].startswith("refused, nothing was staged: body:4: ")
    assert listed_jobs(redis_client) == 0 and not redis_client.keys("importq:unit:*")
    fixed = post(api, jsonl(*events(9)), {**JSONL, "Idempotency-Key": "will-be-fixed"})
    assert fixed.status_code == 201, fixed.text  # a refused body does not keep the key


def test_a_full_queue_answers_429_with_retry_after_at_once(
    api: Api, redis_client: redis.Redis
) -> None:
    assert post(api, jsonl(*events(2000))).status_code == 201  # 4 units, no worker
    assert redis_client.llen(TARGET) > QUEUE_LIMIT
    full = post(api, jsonl(*events(5)))
    assert full.status_code == 429 and int(full.headers["Retry-After"]) > 0
    assert "IMPORTQ_MAX_QUEUED_UNITS" in full.json()["detail"]
    assert listed_jobs(redis_client) == 1


def test_a_queue_that_fills_while_the_body_streams_in_answers_429_not_a_hang(
    api: Api, redis_client: redis.Redis
) -> None:
    # The server checks the queue (LLEN) before it reads the body; the queue fills once
    # that check is seen on Redis's MONITOR, so only the check at staging can catch it.
    checked = threading.Event()
    monitor = redis_client.monitor()
    monitor.__enter__()

    def watch() -> None:
        while not checked.is_set():
            if monitor.next_command()["command"] == f"LLEN {TARGET}":
                checked.set()

    threading.Thread(target=watch, daemon=True).start()

    def body() -> Iterator[bytes]:
        yield jsonl(*events(3)).encode()
        assert checked.wait(30), "the server never checked the queue"
        redis_client.lpush(TARGET, *[b"a message no worker takes"] * QUEUE_LIMIT)
        yield jsonl(*events(2)).encode()

    try:
        with api.client(WRITER) as client:
            full = client.post(JOBS, content=body(), headers=JSONL, timeout=20)
    finally:
        checked.set()
        monitor.__exit__(None, None, None)
    assert full.status_code == 429 and int(full.headers["Retry-After"]) > 0, full.text
    assert "IMPORTQ_MAX_QUEUED_UNITS" in full.json()["detail"]
    assert listed_jobs(redis_client) == 0 and not redis_client.keys("importq:unit:*")


def test_an_idempotency_key_over_200_characters_is_a_422_after_the_token_check(
    api: Api, redis_client: redis.Redis
) -> None:
    # The publish reads its headers itself (the hot path): the same answers as FastAPI's
    # declared Header(max_length=200), in its order (the token first).
    body = jsonl(*events(2))
    too_long = {**JSONL, "Idempotency-Key": "k" * 201}
    refused = post(api, body, too_long)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"] == [
        {"where": "header.idempotency-key", "message": "String should have at most 200 characters"}
    ]
    assert post(api, body, too_long, token=None).status_code == 401
    assert post(api, body, too_long, token=READER).status_code == 422  # 403 comes after
    assert listed_jobs(redis_client) == 0
    assert post(api, body, {**JSONL, "Idempotency-Key": "k" * 200}).status_code == 201


def test_a_jobs_url_is_the_one_url_for_gives_behind_a_root_path() -> None:
    from fastapi import Request

    from importq.serve.app import create_app
    from importq.serve.jobs import job_url

    scope = {"type": "http", "method": "GET", "scheme": "https", "path": "/api/v1/jobs",
             "root_path": "/api", "query_string": b"", "server": ("10.0.0.1", 8080),
             "headers": [(b"host", b"importq.example:8443")], "app": create_app(None)}  # fmt: skip
    request = Request(scope)
    expected = str(request.url_for("get_job", job_id="6b17080d0e5f081d"))
    assert job_url(request, "6b17080d0e5f081d") == expected
    assert expected == "https://importq.example:8443/api/v1/jobs/6b17080d0e5f081d"


@pytest.mark.parametrize(
    "error", [redis.ConnectionError("Redis went away"), KeyError("target")], ids=repr
)
def test_a_failed_read_of_a_published_job_leaves_its_idempotency_key_alone(
    error: Exception,
) -> None:
    # The read runs in the publisher, inside the code that forgets the key when the
    # publish fails: any error there would let a retry publish the records twice.
    from types import SimpleNamespace

    from importq.serve.publishing import job_and_pause

    class Down:
        def hgetall(self, key: str) -> None:
            pass

        def execute(self) -> None:
            raise error

    store: Any = SimpleNamespace(redis=SimpleNamespace(pipeline=lambda **_: Down()))
    assert job_and_pause(store, "6b17080d0e5f081d", "http_batch") == (None, None)


def test_tokens_401_when_unknown_403_when_out_of_scope(api: Api, redis_client: redis.Redis) -> None:
    body = jsonl(*events(2))
    missing = post(api, body, token=None)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert post(api, body, token="fake-unknown-token-for-tests-9").status_code == 401
    reading = post(api, body, token=READER)
    assert reading.status_code == 403 and "may only read" in reading.json()["detail"]
    elsewhere = post(api, body, token=OTHER)
    assert elsewhere.status_code == 403 and "not scoped" in elsewhere.json()["detail"]
    job_id = post(api, body).json()["id"]
    with api.client(OTHER) as client:
        assert client.get(f"/v1/jobs/{job_id}").status_code == 403
        assert client.get("/v1/jobs").json() == []  # its listing holds only blue's jobs
        assert [t["target"] for t in client.get("/v1/targets").json()] == ["blue"]
    assert listed_jobs(redis_client) == 1
    log = api.log.read_text()
    assert WRITER not in log and READER not in log and "ev-000001" not in log


def test_bodies_over_the_size_or_of_unknown_types_are_refused(
    api: Api, redis_client: redis.Redis
) -> None:
    big = post(api, b'{"eventId": "x"}\n' * 300_000)  # 5 MB over the test's 4 MiB cap
    assert big.status_code == 413 and "IMPORTQ_SERVE_MAX_BODY_BYTES" in big.json()["detail"]
    xml = post(api, "<records/>", {"Content-Type": "application/xml"})
    assert xml.status_code == 415 and "application/x-ndjson" in xml.json()["detail"]
    assert post(api, "{}", path="/v1/targets/nowhere/jobs").status_code == 404
    unknown_param = post(api, jsonl(*events(1)), params={"colour": "blue"})
    assert unknown_param.status_code == 422 and "colour" in unknown_param.json()["detail"]
    assert listed_jobs(redis_client) == 0


def test_dead_letters_are_paged_with_reasons_and_replayed_as_a_new_job(
    api: Api, sim: Any, worker: Any
) -> None:
    sim.configure(refuse_values={"ev-000003", "ev-000005", "ev-000007"})
    worker(concurrency=2)
    job_id = post(api, jsonl(*events(20))).json()["id"]
    assert wait_for_job(job_id).state == "partial"
    with api.client(READER) as client:
        first = client.get(f"/v1/jobs/{job_id}/dead-letters", params={"limit": 2}).json()
        rest = client.get(f"/v1/jobs/{job_id}/dead-letters", params={"offset": 2}).json()
        read = client.get(f"/v1/jobs/{job_id}").json()
    assert (first["total"], first["next_offset"], rest["next_offset"]) == (3, 2, None)
    refused = {item["record"]["eventId"] for item in first["items"] + rest["items"]}
    assert refused == {"ev-000003", "ev-000005", "ev-000007"}
    assert "is not accepted" in first["items"][0]["reason"]
    assert read["state"] == "partial" and read["failure"]["dead_letters_total"] == 3
    sim.configure(refuse_values=set())
    with api.client(WRITER) as client:
        replayed = client.post(f"/v1/jobs/{job_id}/replay", json={"params": {}})
        assert replayed.status_code == 201, replayed.text
        again = client.post(f"/v1/jobs/{job_id}/replay")
    assert replayed.json()["records"] == 3 and again.status_code == 409
    assert wait_for_job(replayed.json()["new_job"]["id"]).records_delivered == 3


def test_a_target_is_paused_and_resumed_and_a_job_cancelled(
    api: Api, redis_client: redis.Redis
) -> None:
    with api.client(WRITER) as client:
        paused = client.post(f"/v1/targets/{TARGET}/pause", json={"reason": "vendor upgrade"})
        assert paused.status_code == 200 and paused.json()["paused"]["reason"] == "vendor upgrade"
        job = post(api, jsonl(*events(3))).json()
        assert job["paused"]["by"] == "operator"
        (view,) = [t for t in client.get("/v1/targets").json() if t["target"] == TARGET]
        assert view["paused"]["reason"] == "vendor upgrade" and view["queued"] == 1
        resumed = client.post(f"/v1/targets/{TARGET}/resume").json()
        assert resumed["was_paused"] and client.post(f"/v1/targets/{TARGET}/resume").json() == {
            "target": TARGET, "was_paused": False, "woken": 0}  # fmt: skip
        cancelled = client.post(f"/v1/jobs/{job['id']}/cancel")
        assert cancelled.json()["state"] == "cancelled", cancelled.text
        assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409
        listed = client.get("/v1/jobs", params={"state": "cancelled", "target": TARGET}).json()
    assert [j["id"] for j in listed] == [job["id"]]
    with api.client(READER) as client:
        assert client.post(f"/v1/targets/{TARGET}/pause").status_code == 403


def test_jobs_since_takes_the_cli_forms_and_refuses_a_bad_one(
    api: Api, redis_client: redis.Redis
) -> None:
    old, new = (post(api, jsonl(*events(1))).json()["id"] for _ in range(2))
    backdate(redis_client, old, 3 * 3600)
    half_an_hour_ago = time.time() - 1800
    an_hour_ago = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 3600))
    two_hours_ago_utc = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(time.time() - 7200))
    with api.client(READER) as client:

        def ids(since: str) -> set[str]:
            answer = client.get("/v1/jobs", params={"since": since})
            assert answer.status_code == 200, answer.text
            return {job["id"] for job in answer.json()}

        assert ids("4h") == ids("240m") == ids("1d") == {old, new}
        assert ids("2h") == ids(an_hour_ago) == ids(two_hours_ago_utc) == {new}
        assert ids(str(half_an_hour_ago)) == {new} and ids(str(time.time() + 60)) == set()
        bad = client.get("/v1/jobs", params={"since": "yesterday"})
    assert bad.status_code == 422
    (error,) = bad.json()["errors"]
    assert error["where"] == "query.since" and "neither a duration" in error["message"]


def test_the_committed_openapi_document_is_the_one_served(api: Api) -> None:
    from importq.serve.app import OPENAPI_PATH
    from tests.test_import_graph import ROOT

    served = httpx.get(f"{api.url}/openapi.json").json()
    assert json.loads((ROOT / OPENAPI_PATH).read_text()) == served


class Receiver(BaseHTTPRequestHandler):
    """A producer's callback endpoint: refuses the first call (503), takes the next."""

    calls: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.calls.append((dict(self.headers), body))
        self.send_response(503 if len(self.calls) == 1 else 204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:  # quiet
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/importq-done"
    server.shutdown()
    server.server_close()


def test_a_finished_job_calls_back_signed_and_retries_a_refused_call(
    api: Api, sim: Any, worker: Any, receiver: str, redis_client: redis.Redis
) -> None:
    worker(concurrency=1)
    job_id = post(api, jsonl(*events(30)), params={"callback_url": receiver}).json()["id"]
    assert wait_for_job(job_id).state == "succeeded"
    wait_until("the callback to be retried and taken", lambda: len(Receiver.calls) == 2)
    for headers, body in Receiver.calls:  # the same signed summary both times
        stamp = headers["X-Importq-Timestamp"]
        assert headers["X-Importq-Signature"] == signature(CALLBACK_SECRET, stamp, body)
        summary = json.loads(body)
        assert (summary["id"], summary["state"]) == (job_id, "succeeded")
        assert summary["records_delivered"] == 30
    wait_until(
        "the call to be settled", lambda: redis_client.zscore(SERVE_CALLBACKS, job_id) is None
    )
    settled = redis_client.hgetall(serve_callback(job_id))
    assert (settled[b"attempts"], settled[b"outcome"]) == (b"2", b"HTTP 204")
    unsigned = post(api, jsonl(*events(1)), token=OTHER, path="/v1/targets/blue/jobs",
                    params={"callback_url": receiver})  # fmt: skip
    assert unsigned.status_code == 422
    assert "blue_only=SECRET to IMPORTQ_SERVE_CALLBACK_SECRETS" in unsigned.json()["detail"]
    not_http = post(api, jsonl(*events(1)), params={"callback_url": "ftp://example.invalid/x"})
    assert not_http.status_code == 422 and "not an http(s) URL" in not_http.json()["detail"]
