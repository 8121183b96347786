"""`importq serve`'s publisher processes: bodies are staged there, and the server copes
when one ends (killed, crashed) with or without a body in hand.

Real server processes, or a pool in the test's own process, with real publisher processes
(one, where which one has the body must be known) and the session's Redis. A publisher is
paused (SIGSTOP) to hold a body unread, and `ss` shows when the body waits in its channel.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from importq.errors import ConfigError, InputError, QueueFull, RedisUnavailable
from importq.serve.bodies import Body
from importq.serve.publishers import Publishers, PublisherUnavailable, run_to_end
from importq.serve.publishing import RefusedBody
from importq.serve.publishing import Request as PublishRequest
from tests.helpers import jsonl, wait_until
from tests.serving import Api, serving
from tests.test_http_batch_e2e import events
from tests.test_serve_api import JSONL, listed_jobs, post
from workers import keys


@pytest.mark.parametrize(
    "error",
    [
        RefusedBody(
            [InputError("record: should be non-empty", "body:4"), InputError("bad JSON", "body:7")],
            True,
        ),
        InputError("params: unknown param 'pth'", "params"),
        QueueFull("the queue of http_batch holds 3 units"),
        ConfigError("HTTP_BATCH_URL is not set"),
        RedisUnavailable("Redis at 127.0.0.1:1 does not answer"),
        redis.ConnectionError("Error 111 connecting"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_what_a_publish_raises_crosses_from_its_publisher_whole(error: Exception) -> None:
    # The server answers by the error's type (its status), words and places (the 422's list).
    crossed = pickle.loads(pickle.dumps(error))
    assert type(crossed) is type(error) and str(crossed) == str(error)
    assert getattr(crossed, "where", None) == getattr(error, "where", None)
    if isinstance(error, RefusedBody):
        assert isinstance(crossed, RefusedBody)
        assert [(e.where, str(e)) for e in crossed.errors] == [
            (e.where, str(e)) for e in error.errors
        ]
        assert crossed.stopped_early is True


def publisher_pids(server_pid: int) -> list[int]:
    """The server's publisher processes (its children running importq.serve.publishers)."""
    found = []
    for task in Path(f"/proc/{server_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:  # a child that ended meanwhile
                continue
            if b"importq.serve.publishers" in command:
                found.append(int(child))
    return found


@pytest.fixture
def one_publisher(tmp_path: Path) -> Iterator[tuple[Api, Any]]:
    with serving(tmp_path, IMPORTQ_SERVE_PUBLISHERS="1") as (api, server):
        yield api, server


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def queued_bytes(pid: int) -> int:
    """Bytes waiting unread in the sockets of process `pid` (`ss`'s Recv-Q)."""
    lines = subprocess.run(["ss", "-xpH"], capture_output=True, text=True, check=True).stdout
    return sum(int(line.split()[2]) for line in lines.splitlines() if f"pid={pid}," in line)


def test_a_publisher_killed_mid_publish_is_a_503_that_keeps_the_key_and_is_replaced(
    one_publisher: tuple[Api, Any], redis_client: redis.Redis
) -> None:
    api, server = one_publisher
    (publisher,) = publisher_pids(server.process.pid)
    os.kill(publisher, signal.SIGSTOP)  # it holds the body, unread, until it is killed
    answers: list[Any] = []
    key = {"Idempotency-Key": "fake-key-publisher-lost"}
    sending = threading.Thread(
        target=lambda: answers.append(post(api, jsonl(*events(3)), headers={**JSONL, **key}))
    )
    sending.start()
    try:
        wait_until("the body in its channel", lambda: queued_bytes(publisher) > 0, timeout=30)
    finally:
        os.kill(publisher, signal.SIGKILL)
        sending.join(timeout=60)
    (lost,) = answers
    assert lost.status_code == 503, lost.text
    assert "exit code -9" in lost.json()["detail"] and "may be staged" in lost.json()["detail"]
    # Its outcome is unknown: a retry with the key must not publish again.
    retried = post(api, jsonl(*events(3)), headers={**JSONL, **key})
    assert retried.status_code == 409 and "still being published" in retried.json()["detail"]
    assert redis_client.exists(keys.serve_idempotency("writer", key["Idempotency-Key"]))
    # The slot has a new publisher, which publishes the next body.
    assert post(api, jsonl(*events(3))).status_code == 201
    (replacement,) = publisher_pids(server.process.pid)
    assert replacement != publisher and not alive(publisher)


def test_a_publisher_that_ended_while_idle_is_replaced_before_the_next_body(
    one_publisher: tuple[Api, Any], redis_client: redis.Redis
) -> None:
    api, server = one_publisher
    (publisher,) = publisher_pids(server.process.pid)
    os.kill(publisher, signal.SIGKILL)
    wait_until("the publisher ended", lambda: not alive(publisher), timeout=30)
    answer = post(api, jsonl(*events(3)))
    assert answer.status_code == 201, answer.text  # nothing sent to the dead one: no 503
    assert answer.json()["records_total"] == 3 and listed_jobs(redis_client) == 1
    assert publisher_pids(server.process.pid) != [publisher]


def test_a_body_spooled_to_disk_is_published_from_its_file(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    # Over 8 MiB a body is written to a temporary file as it streams in; the publisher
    # reads that file, and the server deletes it once answered.
    body = jsonl(*events(150_000)).encode()
    assert len(body) > 8 * 1024 * 1024
    spool = tmp_path / "spool"
    spool.mkdir()
    settings = {"IMPORTQ_SERVE_MAX_BODY_BYTES": str(64 * 1024 * 1024), "TMPDIR": str(spool),
                "IMPORTQ_MAX_QUEUED_UNITS_HTTP_BATCH": "0"}  # fmt: skip
    with serving(tmp_path, **settings) as (api, _):
        answer = post(api, body)
        assert answer.status_code == 201, answer.text
        assert answer.json()["records_total"] == 150_000
        assert list(spool.iterdir()) == []


def test_stopping_the_server_ends_its_publishers(tmp_path: Path, redis_client: redis.Redis) -> None:
    with serving(tmp_path, "--publishers", "3") as (api, server):
        publishers = publisher_pids(server.process.pid)
        assert len(publishers) == 3 and all(alive(pid) for pid in publishers)
        assert post(api, jsonl(*events(2))).status_code == 201
    assert server.process.returncode == 0  # a clean stop: not the SIGKILL that follows 20 s
    assert not any(alive(pid) for pid in publishers)


# -- the pool in this process: what the server relies on, one case at a time ------------------

REQUEST = PublishRequest("http_batch", "jsonl", {})


def body_of(records: int) -> Body:
    data = jsonl(*events(records)).encode()
    return Body(len(data), "", data)


def in_a_pool(scenario: Callable[[Publishers], Awaitable[None]], count: int = 1) -> None:
    """`scenario` run against a pool of `count` publishers (the session's Redis), stopped
    after."""

    async def run() -> None:
        pool = Publishers(count)
        await pool.start()
        try:
            await scenario(pool)
        finally:
            await pool.stop()

    asyncio.run(run())


def test_a_publish_cancelled_with_the_body_in_hand_leaves_the_next_body_its_own_answer(
    redis_client: redis.Redis,
) -> None:
    # A native task.cancel() (uvicorn's graceful-shutdown timeout, asyncio.run's clean-up)
    # goes through a shielded anyio scope: the publisher must not go back to the free queue
    # with the cancelled body's answer still to come, or the next body gets that answer.
    async def scenario(pool: Publishers) -> None:
        (pid,) = publisher_pids(os.getpid())
        os.kill(pid, signal.SIGSTOP)  # it has the body, unread
        try:
            first = asyncio.create_task(pool.publish(REQUEST, body_of(3)))
            with anyio.fail_after(30):
                while queued_bytes(pid) == 0:
                    await asyncio.sleep(0.02)
            first.cancel()
        finally:
            os.kill(pid, signal.SIGCONT)
        with pytest.raises(asyncio.CancelledError):
            await first
        second = await pool.publish(REQUEST, body_of(5))
        assert second.job is not None and second.job.records_total == 5

    in_a_pool(scenario)


def test_big_bodies_leave_a_publisher_free_for_the_small_ones(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    # Two big bodies (spooled to disk) and then a small one, with two publishers: the
    # second big body waits, so the small one is not stuck behind two long publishes.
    spooled = tmp_path / "big.jsonl"
    spooled.write_text(jsonl(*events(50)))
    big = Body(spooled.stat().st_size, "", b"", spooled)  # sent as its path: a short header
    small = body_of(300)  # sent whole: its bytes wait in the publisher's channel

    async def scenario(pool: Publishers) -> None:
        children = publisher_pids(os.getpid())
        for pid in children:
            os.kill(pid, signal.SIGSTOP)
        try:
            sent = [asyncio.create_task(pool.publish(REQUEST, b)) for b in (big, big, small)]
            with anyio.fail_after(30):
                while not all(queued_bytes(pid) for pid in children):
                    await asyncio.sleep(0.02)
            assert max(queued_bytes(pid) for pid in children) >= small.size
        finally:
            for pid in children:
                os.kill(pid, signal.SIGCONT)
        published = await asyncio.gather(*sent)
        assert [p.job.records_total for p in published if p.job] == [50, 50, 300]

    in_a_pool(scenario, count=2)


@pytest.mark.parametrize("ready", [True, False], ids=["ready", "never-ready"])
def test_a_slot_left_with_a_closed_channel_gets_a_new_publisher(
    ready: bool, redis_client: redis.Redis
) -> None:
    # What a replacement that could not be started leaves in its slot: the old publisher,
    # its channel closed, ready or never ready. The next body starts a new one.
    async def scenario(pool: Publishers) -> None:
        (publisher,) = pool._all
        publisher.channel.close()
        publisher.ready = ready
        published = await pool.publish(REQUEST, body_of(2))
        assert published.job is not None and published.job.records_total == 2

    in_a_pool(scenario)


def test_a_cancelled_request_waits_for_its_publish_then_is_cancelled() -> None:
    # The route settles or forgets the Idempotency-Key from the publish's outcome: cancelled
    # halfway (natively), it would forget the key of a job that exists, and a retry would
    # publish the records twice.
    async def scenario() -> None:
        release, done = asyncio.Event(), []

        async def publish_and_settle() -> str:
            await release.wait()
            done.append("settled")
            return "job"

        request = asyncio.create_task(run_to_end(publish_and_settle()))
        await asyncio.sleep(0.01)
        request.cancel()
        await asyncio.sleep(0.01)
        assert not request.done()  # still waiting for the work
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await request
        assert done == ["settled"]

    asyncio.run(scenario())


@pytest.mark.parametrize("outcome", ["cancelled", "failed"])
def test_a_cancelled_publish_keeps_its_idempotency_key_a_failed_one_frees_it(
    outcome: str, redis_client: redis.Redis
) -> None:
    # Cancelled (the server stopping), the publisher may have had the body: a retry with
    # the key must not publish again. Failed, nothing was staged: a retry may.
    from types import SimpleNamespace

    from importq.serve import idempotency
    from importq.serve.jobs import _Handed, _publish_and_keep

    class Publishing:
        async def publish(self, request: Any, body: Any) -> Any:
            if outcome == "cancelled":
                raise asyncio.CancelledError
            raise QueueFull("the queue of http_batch holds 3 units")

    claim = idempotency.claim(redis_client, "writer", "fake-key-1", "digest", 60)
    svc: Any = SimpleNamespace(publishers=Publishing(), store=SimpleNamespace(redis=redis_client))
    handed = _Handed(REQUEST, claim, None, "writer")
    with pytest.raises(asyncio.CancelledError if outcome == "cancelled" else QueueFull):
        asyncio.run(_publish_and_keep(svc, handed, body_of(1)))
    assert bool(redis_client.exists(claim.key)) is (outcome == "cancelled")


@pytest.mark.parametrize(
    ("source", "pinned"), [("embedded", True), ("localhost", True), ("REDIS_URL", False)]
)
def test_publishers_use_the_redis_the_server_chose(
    source: str, pinned: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A publisher started later must not choose another Redis (an embedded one started
    # meanwhile, or none while localhost blinks): the server's choice goes to them.
    from importq import broker
    from importq.serve.app import publisher_environ
    from workers import app as worker_app

    chosen = "redis://127.0.0.1:6400/0"
    monkeypatch.setitem(worker_app._state, "redis_choice", broker.RedisChoice(chosen, source))
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert publisher_environ().get("REDIS_URL") == (chosen if pinned else None)


def test_stopping_the_pool_lets_a_body_in_hand_finish_and_answer(redis_client: redis.Redis) -> None:
    # uvicorn drains requests before the app's lifespan ends, unless its graceful-shutdown
    # timeout cuts them short: then a body still being published gets its answer.
    async def scenario() -> None:
        pool = Publishers(1)
        await pool.start()
        (pid,) = publisher_pids(os.getpid())
        os.kill(pid, signal.SIGSTOP)
        try:
            sending = asyncio.create_task(pool.publish(REQUEST, body_of(4)))
            with anyio.fail_after(30):
                while queued_bytes(pid) == 0:
                    await asyncio.sleep(0.02)
            stopping = asyncio.create_task(pool.stop())
            await asyncio.sleep(0.05)
        finally:
            os.kill(pid, signal.SIGCONT)
        published = await sending
        await stopping
        assert published.job is not None and published.job.records_total == 4
        assert not alive(pid)

    asyncio.run(scenario())


def test_a_publisher_that_hangs_as_it_starts_is_given_up_killed_and_replaced(
    redis_client: redis.Redis,
) -> None:
    # A replacement that never says it is ready (here: stopped before it could) fails the
    # body waiting for it with a 503 that says so, instead of holding it for ever; it has no
    # body in hand, so it is killed, and the slot's next publisher takes bodies.
    async def scenario() -> None:
        pool = Publishers(1)
        hung = pool._spawn()
        os.kill(hung.process.pid, signal.SIGSTOP)
        with pytest.raises(PublisherUnavailable, match="was not ready within 1 s"):
            await pool._await_ready(hung, 1.0)
        fresh = pool._replace(hung, "hung as it started")
        assert await asyncio.to_thread(hung.process.wait, 30) == -signal.SIGKILL
        pool._free.put_nowait(fresh)
        try:
            published = await pool.publish(REQUEST, body_of(2))
            assert published.job is not None and published.job.records_total == 2
        finally:
            await pool.stop()

    asyncio.run(scenario())
