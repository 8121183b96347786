"""`importq serve` as a real process on 127.0.0.1 (a free port), with tokens of each kind.

Fake tokens only: each is made up here for the tests, and only its hash reaches the server.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from importq.processes import Process
from importq.serve.auth import token_line
from tests.conftest import free_port

WRITER = "fake-writer-token-for-tests-0001"  # write, every target
READER = "fake-reader-token-for-tests-0002"  # read, every target
OTHER = "fake-blue-only-token-for-tests-0003"  # write, blue only
CALLBACK_SECRET = "fake-callback-secret-for-tests-0004"  # the writer's
QUEUE_LIMIT = 3  # IMPORTQ_MAX_QUEUED_UNITS_HTTP_BATCH: a 2,000-record job (4 units) fills it


@dataclass
class Api:
    url: str
    log: Path

    def client(self, token: str | None = WRITER) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def tokens() -> str:
    return ";".join([
        token_line("writer", WRITER, "write", "*"),
        token_line("reader", READER, "read", "*"),
        token_line("blue_only", OTHER, "write", "blue"),
    ])  # fmt: skip


@contextlib.contextmanager
def serving(directory: Path, *options: str, **settings: str) -> Iterator[tuple[Api, Process]]:
    """`importq serve` on a free port with the test tokens, `options` and `settings`,
    stopped after."""
    port = free_port()
    log = directory / "serve.log"
    env = {**os.environ, "IMPORTQ_SERVE_TOKENS": tokens(),
           "IMPORTQ_MAX_QUEUED_UNITS_HTTP_BATCH": str(QUEUE_LIMIT),
           "IMPORTQ_SERVE_MAX_BODY_BYTES": str(4 * 1024 * 1024),
           "IMPORTQ_SERVE_CALLBACK_SECRETS": f"writer={CALLBACK_SECRET}", **settings}  # fmt: skip
    command = [sys.executable, "-m", "importq.cli", "serve", "--port", str(port), *options]
    server = Process(command, env, log)
    try:
        server.wait_ready(marker=b"Application startup complete")
        yield Api(f"http://127.0.0.1:{port}", log), server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The API served for the module's tests (Redis: the session's, emptied per test)."""
    with serving(tmp_path_factory.mktemp("serve")) as (served, _):
        yield served
