"""Publisher processes: where `importq serve` stages the bodies it receives.

A publish is CPU-bound Python (parse, validate, plan, compress: about 6 ms of CPU for
1,000 records). Run in a server process's threads, the publishes shared one GIL with
each other and with the event loop; and a producer's keep-alive connection stays with
the server process that accepted it, so with 8 producers on 2 cores one process could
hold 6 of them while the other's core idled. So each server process hands every body to
the next free publisher of its pool (IMPORTQ_SERVE_PUBLISHERS, one per core): the cores
publish whichever process took the connection, and the event loop only speaks HTTP.

The wire is a socket pair per publisher. A request is a length-prefixed JSON header and
then the body's bytes (none when the body was spooled to a file: the publisher opens the
file). The answer is a length-prefixed pickle of what publishing.publish_body returned or
raised; both ends are this module, in processes the server started.

A publisher that dies mid-publish leaves the outcome unknown (its records may be staged):
the request is a 503 that says so, its Idempotency-Key stays taken (as when a server
process dies), and a new publisher takes the slot.

    python -m importq.serve.publishers FD   # one publisher (the server starts them)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pickle
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import redis
import structlog

from importq.errors import ImportqError
from importq.serve import bodies
from importq.serve.publishing import Published, Publishing, Request, publish_body

log = structlog.get_logger("importq.serve")

COUNT_SETTING = "IMPORTQ_SERVE_PUBLISHERS"
START_SECONDS = 60.0  # a publisher imports importq and connects: seconds on a busy machine
STOP_SECONDS = 10.0  # a publisher finishing its body at shutdown
_LENGTH = struct.Struct("!Q")
_READY = b"ready"
_BUFFER_BYTES = 1 << 20  # fewer wake-ups for a body of a few hundred kilobytes
T = TypeVar("T")


class PublisherUnavailable(ImportqError):
    """No publisher process could take the body; nothing was staged, a retry is safe: 503."""


class PublisherLost(ImportqError):
    """The publisher process ended while it published the body: its records may be staged
    or not. 503; the request's Idempotency-Key stays taken (see publish_job)."""


@dataclass(eq=False)  # compared and hashed by identity: one process each
class _Publisher:
    process: subprocess.Popen[bytes]
    channel: socket.socket
    ready: bool = False


class Publishers:
    """`count` publisher processes and the queue of the free ones (start() in the app's
    lifespan, on its event loop). `environ` is theirs (default: this process's)."""

    def __init__(self, count: int, environ: dict[str, str] | None = None) -> None:
        self.count = count
        self.environ = environ
        self._free: asyncio.Queue[_Publisher] = asyncio.Queue()
        self._all: list[_Publisher] = []  # those in a slot
        self._discarded: set[_Publisher] = set()  # replaced, until they have ended
        self._reaping: set[asyncio.Future[None]] = set()  # the loop keeps no reference
        self._stopping = False
        # Bodies spooled to disk (over bodies.IN_MEMORY_BYTES) take seconds to minutes each:
        # they get all publishers but one, so a small body never waits behind them.
        self._big_bodies = asyncio.Semaphore(max(1, count - 1))

    async def start(self) -> None:
        """Start every publisher and wait until each is ready, START_SECONDS in all;
        PublisherUnavailable names the first that ended or hung instead (its log lines
        are the server's)."""
        started = [self._spawn() for _ in range(self.count)]
        deadline = time.monotonic() + START_SECONDS
        try:
            for publisher in started:
                await self._await_ready(publisher, max(0.1, deadline - time.monotonic()))
        except PublisherUnavailable:
            await self.stop()
            raise
        for publisher in started:
            self._free.put_nowait(publisher)

    async def publish(self, request: Request, body: bodies.Body) -> Published:
        """Publish `body` in the next free publisher: what publish_body returns, or raises.

        A body spooled to disk (a big one) waits while all publishers but one have one.
        A publisher that ended before it read the body is replaced and the body sent to the
        new one. One interrupted with the body in hand (cancelled, or its channel broken)
        is discarded, never put back with an answer no one will read."""
        with anyio.CancelScope(shield=True):  # see run_to_end for native cancellation
            if body.path is None:
                outcome = await self._publish_on_next(request, body)
            else:  # a big body: one publisher at least stays free for the small ones
                async with self._big_bodies:
                    outcome = await self._publish_on_next(request, body)
        if isinstance(outcome, BaseException):
            raise outcome
        assert isinstance(outcome, Published)
        return outcome

    async def _publish_on_next(self, request: Request, body: bodies.Body) -> Any:
        """The exchange with the next free publisher, which is replaced when it fails (the
        body sent once more, to the new one, when the first never read it); the slot's
        publisher goes back to the free queue whatever happens."""
        publisher = await self._free.get()
        try:
            for attempt in (1, 2):
                try:
                    return await self._exchange(publisher, request, body)
                except PublisherUnavailable as error:
                    publisher = self._replace(publisher, str(error))
                    if attempt == 2:
                        raise
                except BaseException as error:
                    publisher = self._replace(publisher, str(error) or type(error).__name__)
                    raise
            raise AssertionError("unreachable")
        finally:
            self._free.put_nowait(publisher)

    async def stop(self) -> None:
        """End every publisher: each finishes the body in hand, answers, and sees its
        channel shut; one still running STOP_SECONDS later (a replaced one too) is killed,
        and a request still waiting on it is a 503 (PublisherLost)."""
        self._stopping = True
        for publisher in self._all:
            # Shut for writing only: the answer to a body in hand still arrives, and the
            # read waiting for it ends (with EOF if the publisher is killed); closing the
            # socket under that read would leave it waiting for ever.
            with contextlib.suppress(OSError):
                publisher.channel.shutdown(socket.SHUT_WR)
        everyone = [*self._all, *self._discarded]
        await asyncio.gather(*(_reap(p, kill_after=STOP_SECONDS) for p in everyone))
        for publisher in self._all:
            publisher.channel.close()
        self._all.clear()

    def _spawn(self) -> _Publisher:
        ours, theirs = socket.socketpair()
        with theirs:  # the publisher's end, ours closed once it is passed on
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER_BYTES)
            theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER_BYTES)
            command = [sys.executable, "-m", "importq.serve.publishers", str(theirs.fileno())]
            try:
                process = subprocess.Popen(command, pass_fds=[theirs.fileno()], env=self.environ)
            except BaseException:
                ours.close()
                raise
        ours.setblocking(False)
        publisher = _Publisher(process, ours)
        self._all.append(publisher)
        return publisher

    def _replace(self, publisher: _Publisher, why: str) -> _Publisher:
        """A new publisher for the slot (it says it is ready on first use). The old one's
        channel is closed and it is reaped once it ends: at once if it never became ready,
        else after any body in hand. If none can be started, the closed one stays in the
        slot, and the next body tries again."""
        if publisher in self._all:
            log.warning("a publisher process is replaced", pid=publisher.process.pid, why=why)
            self._all.remove(publisher)
            publisher.channel.close()
            if not publisher.ready:  # no body in hand: a hung start is not waited for
                publisher.process.kill()
            self._discarded.add(publisher)
            reaping = asyncio.ensure_future(_reap(publisher, kill_after=None))
            self._reaping.add(reaping)
            reaping.add_done_callback(self._reaping.discard)
            reaping.add_done_callback(lambda _: self._discarded.discard(publisher))
        if self._stopping:
            raise PublisherUnavailable("the server is stopping: nothing was staged; retry")
        try:
            return self._spawn()
        except OSError as error:
            raise PublisherUnavailable(
                f"no new publisher process could be started ({error}): nothing was staged; "
                "retry later, and see the server's log"
            ) from error

    async def _await_ready(self, publisher: _Publisher, seconds: float = START_SECONDS) -> None:
        if publisher.ready:
            return
        try:
            with anyio.fail_after(seconds):
                said = await _receive(publisher.channel)
        except (OSError, ValueError, TimeoutError):  # ended, closed, or hung as it started
            said = b""
        if said != _READY:
            code = publisher.process.poll()
            ended = f"ended as it started (exit code {code})" if code is not None else (
                f"was not ready within {seconds:.0f} s")  # fmt: skip
            raise PublisherUnavailable(
                f"a publisher process {ended}: nothing was staged; retry, and see the "
                "server's log for why"
            )
        publisher.ready = True

    async def _exchange(self, publisher: _Publisher, request: Request, body: bodies.Body) -> Any:
        if publisher.channel.fileno() == -1:  # left in its slot when no new one could start
            raise PublisherUnavailable("the slot's publisher had ended: nothing was staged")
        await self._await_ready(publisher)  # a publisher started after a lost one
        loop = asyncio.get_running_loop()
        spooled = body.path is not None
        head = json.dumps({"target": request.target, "fmt": request.fmt,
                           "params": request.params, "size": body.size,
                           "path": str(body.path) if spooled else None}).encode()  # fmt: skip
        try:
            await loop.sock_sendall(publisher.channel, _LENGTH.pack(len(head)) + head)
            if not spooled:
                await loop.sock_sendall(publisher.channel, body.data)
        except (OSError, ValueError):  # it ended before it read the whole body: not staged
            code = await _exit_code(publisher)
            raise PublisherUnavailable(
                f"the publisher process ended (exit code {code}) before it read the body: "
                "nothing was staged; retry"
            ) from None
        try:
            answer = await _receive(publisher.channel)
        except (OSError, ValueError):
            code = await _exit_code(publisher)
            raise PublisherLost(
                f"the publisher process ended (exit code {code}) while it published the "
                "body: its records may be staged or not. Look for the job in GET /v1/jobs "
                "before you send it again; a retry with the same Idempotency-Key is a 409 "
                "until the key's pending time (at most an hour) has passed"
            ) from None
        try:
            return pickle.loads(answer)
        except Exception as error:  # the outcome is unknown: the records may be staged
            raise PublisherLost(
                f"the publisher's answer could not be read ({error}): the body's records "
                "may be staged or not; look for the job in GET /v1/jobs"
            ) from None


async def _reap(publisher: _Publisher, kill_after: float | None) -> None:
    """Wait for it to end (it does once its channel is shut and any body is done); with
    `kill_after`, kill it if it has not ended by then (the server is stopping)."""
    try:
        await asyncio.to_thread(publisher.process.wait, kill_after)
    except subprocess.TimeoutExpired:
        publisher.process.kill()
        await asyncio.to_thread(publisher.process.wait)


async def run_to_end(work: Awaitable[T]) -> T:
    """`work`, run to its end even if the caller is cancelled meanwhile, by an anyio scope
    or a native task.cancel() (a shielded anyio scope stops only the former): the
    cancellation is raised once the work has ended, so what it changed is consistent."""
    task = asyncio.ensure_future(work)
    cancelled: BaseException | None = None
    with anyio.CancelScope(shield=True):
        while not task.done():
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError as interruption:
                cancelled = interruption
    if cancelled is not None:
        if not task.cancelled() and (failed := task.exception()) is not None:
            log.warning("work ended in an error after its caller was cancelled",
                        error=f"{type(failed).__name__}: {failed}")  # fmt: skip
        raise cancelled
    return task.result()


async def _exit_code(publisher: _Publisher) -> int | None:
    """Its exit code once it has ended (a lost channel is a publisher ending, or ended)."""
    try:
        return await asyncio.to_thread(publisher.process.wait, 5)
    except subprocess.TimeoutExpired:
        return None


async def _receive(channel: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    (size,) = _LENGTH.unpack(await _exactly(loop, channel, _LENGTH.size))
    return await _exactly(loop, channel, size)


async def _exactly(loop: asyncio.AbstractEventLoop, channel: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        count = await loop.sock_recv_into(channel, view[got:])
        if not count:
            raise ConnectionError("the publisher's channel closed")
        got += count
    return bytes(buffer)


# -- the publisher process ---------------------------------------------------------------------


def serve(fd: int) -> None:
    """Publish each body the server sends on the socket `fd` until the server closes it."""
    # The server stops its publishers (it closes their channels); a Ctrl-C or a process
    # runner's SIGTERM to the whole group must not end one in the middle of a body.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from importq import logging as importq_logging
    from workers import app as worker_app
    from workers.jobs import JobStore

    settings = worker_app.settings()
    importq_logging.configure(settings)
    publishing = Publishing(settings, JobStore(worker_app.redis_client()), worker_app.publish_unit)
    with socket.socket(fileno=fd) as channel, contextlib.suppress(ConnectionError):
        # ConnectionError: the server closed the channel (it stopped, or gave up on this
        # body): the body in hand is done, nobody waits for its answer, so this one ends.
        _send(channel, _READY)
        while (head := _read(channel, _LENGTH.size)) is not None:
            fields = json.loads(_read_all(channel, _LENGTH.unpack(head)[0]))
            path = fields["path"]
            data = b"" if path else _read_all(channel, fields["size"])
            body = bodies.Body(fields["size"], "", data, Path(path) if path else None)
            request = Request(fields["target"], fields["fmt"], fields["params"])
            _send(channel, _answer(publishing, request, body))


def _answer(publishing: Publishing, request: Request, body: bodies.Body) -> bytes:
    """What publish_body returned or raised, pickled. An error that would not come back
    whole on the server's side (one whose class takes other arguments than its message)
    goes as a RuntimeError with its text: a 500, as it was in the server's own threads."""
    try:
        published = publish_body(publishing, request, body)
    except Exception as error:
        if not isinstance(error, ImportqError | redis.RedisError):  # not one the API answers
            log.exception("publishing a body failed", target=request.target)
        try:
            pickled = pickle.dumps(error)
            crossed = pickle.loads(pickled)
            if type(crossed) is type(error) and str(crossed) == str(error):
                return pickled
        except Exception:  # it goes as a RuntimeError below
            pass
        return pickle.dumps(RuntimeError(f"{type(error).__name__}: {error}"))
    return pickle.dumps(published)


def _send(channel: socket.socket, payload: bytes) -> None:
    channel.sendall(_LENGTH.pack(len(payload)) + payload)


def _read(channel: socket.socket, size: int) -> bytes | None:
    """`size` bytes, or None when the server closed the channel before the first."""
    first = channel.recv(size, socket.MSG_WAITALL)
    if not first:
        return None
    return first + _read_all(channel, size - len(first))


def _read_all(channel: socket.socket, size: int) -> bytes:
    parts, left = [], size
    while left:
        part = channel.recv(left, socket.MSG_WAITALL)
        if not part:
            raise ConnectionError("the server closed the channel mid-request")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
