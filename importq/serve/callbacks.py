"""Callbacks: when a job published with `callback_url` ends, POST its summary there.

The body is the job as `GET /v1/jobs/{id}` shows it (without units), signed with
HMAC-SHA256 under the publishing token's callback secret (its `NAME=SECRET` entry in
IMPORTQ_SERVE_CALLBACK_SECRETS): `X-Importq-Signature: sha256=<hex>` over
`<X-Importq-Timestamp>.<body>`, so a receiver can refuse a replayed or forged call.
An answer other than 2xx, or none, is retried with backoff (workers/retry.py's policy)
up to MAX_ATTEMPTS. Every `importq serve` process runs the sender; a short lock per job
lets one of them send each call.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis
import structlog

from importq.errors import ConfigError, InputError
from importq.settings import Secret, Settings
from workers import keys
from workers.jobs import JobStore, JobView, as_text
from workers.retry import unit_delay

log = structlog.get_logger("importq.serve")
SECRETS_SETTING = "IMPORTQ_SERVE_CALLBACK_SECRETS"
MAX_ATTEMPTS = 8
BACKOFF_BASE, BACKOFF_CAP = 2.0, 600.0
UNFINISHED_POLL_SECONDS = 2.0
LOCK_SECONDS = 60
TIMEOUT_SECONDS = 10.0


def secrets(settings: Settings) -> dict[str, Secret]:
    """Each token's key from IMPORTQ_SERVE_CALLBACK_SECRETS (`NAME=SECRET`, `;` or a line
    between entries): one variable, so a deployment passes one, whatever the tokens' names.
    ConfigError names a malformed entry by its place, never by what it holds."""
    keys_of: dict[str, Secret] = {}
    text = settings.secret(SECRETS_SETTING).reveal().replace("\n", ";")
    entries = [entry.strip() for entry in text.split(";")]
    for place, entry in enumerate(entries, start=1):
        if not entry:
            continue
        name, equals, key = (part.strip() for part in entry.partition("="))
        if not (equals and name.isidentifier() and key):
            raise ConfigError(f"{SECRETS_SETTING}: entry {place} is not NAME=SECRET (NAME: the "
                              "token's name, as `importq serve-token NAME` gave it)")  # fmt: skip
        keys_of[name] = Secret(key)
    return keys_of


def secret_of(settings: Settings, token_name: str) -> str:
    """The key the calls of `token_name`'s jobs are signed with ("" when it has none)."""
    found = secrets(settings).get(token_name)
    return found.reveal() if found else ""


def check(settings: Settings, url: str, token_name: str) -> None:
    """InputError unless `url` is http(s) and the token has a secret to sign calls with."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"callback_url {url!r} is not an http(s) URL")
    if not secret_of(settings, token_name):
        raise InputError(f"callback_url needs a secret to sign the call with: add "
                         f"{token_name}=SECRET to {SECRETS_SETTING}, or publish without a "
                         "callback")  # fmt: skip


def register(
    client: redis.Redis, settings: Settings, job_id: str, url: str, token_name: str
) -> None:
    """Remember to call `url` when the job ends (after `check`)."""
    pipe = client.pipeline()
    pipe.hset(keys.serve_callback(job_id), mapping={"url": url, "token": token_name,
                                                    "attempts": 0})  # fmt: skip
    pipe.expire(keys.serve_callback(job_id), settings.job_ttl)
    pipe.zadd(keys.SERVE_CALLBACKS, {job_id: time.time() * 1000})
    pipe.execute()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


class Sender:
    """Sends the calls that are due; `run` loops until cancelled."""

    def __init__(
        self, store: JobStore, settings: Settings, summary: Callable[[JobView], dict[str, Any]]
    ) -> None:
        self.store = store
        self.settings = settings
        self.summary = summary

    async def run(self, interval: float = 0.5) -> None:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as http:
            while True:
                try:
                    await self.send_due(http)
                except redis.RedisError as error:  # Redis away: the calls wait in it
                    log.warning("callbacks wait for Redis", error=str(error))
                await asyncio.sleep(interval)

    async def send_due(self, http: httpx.AsyncClient) -> None:
        client = self.store.redis
        now_ms = time.time() * 1000
        for raw in client.zrangebyscore(keys.SERVE_CALLBACKS, "-inf", now_ms, start=0, num=50):
            job_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            if client.set(keys.serve_callback(job_id) + ":lock", "1", nx=True, ex=LOCK_SECONDS):
                try:
                    await self._one(http, job_id)
                finally:
                    client.delete(keys.serve_callback(job_id) + ":lock")

    async def _one(self, http: httpx.AsyncClient, job_id: str) -> None:
        client = self.store.redis
        stored = client.hgetall(keys.serve_callback(job_id))
        call = {as_text(k): as_text(v) for k, v in stored.items()}
        job = self.store.get(job_id)
        if not call or job is None:  # expired, or never registered: nothing to call
            client.zrem(keys.SERVE_CALLBACKS, job_id)
            return
        if not job.finished:
            self._again(job_id, UNFINISHED_POLL_SECONDS)
            return
        body = json.dumps(self.summary(job), separators=(",", ":")).encode()
        stamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Importq-Timestamp": stamp,
                   "X-Importq-Signature": signature(secret_of(self.settings, call["token"]),
                                                    stamp, body)}  # fmt: skip
        try:
            answer = await http.post(call["url"], content=body, headers=headers)
            outcome = f"HTTP {answer.status_code}"
            delivered = answer.is_success
        except httpx.HTTPError as error:
            outcome, delivered = f"{type(error).__name__}: {error}", False
        attempts = int(call.get("attempts", 0)) + 1
        if delivered or attempts >= MAX_ATTEMPTS:
            client.zrem(keys.SERVE_CALLBACKS, job_id)
            client.hset(keys.serve_callback(job_id), mapping={"attempts": attempts,
                                                              "outcome": outcome})  # fmt: skip
            say = log.info if delivered else log.warning
            say("callback sent" if delivered else "callback given up", job_id=job_id,
                attempts=attempts, outcome=outcome)  # fmt: skip
            return
        client.hset(keys.serve_callback(job_id), mapping={"attempts": attempts, "outcome": outcome})
        self._again(job_id, unit_delay(attempts, BACKOFF_BASE, BACKOFF_CAP))

    def _again(self, job_id: str, seconds: float) -> None:
        self.store.redis.zadd(keys.SERVE_CALLBACKS, {job_id: (time.time() + seconds) * 1000})
