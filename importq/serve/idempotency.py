"""Idempotency-Key: a producer that retries gets the job its first request made.

A key is remembered per token for IMPORTQ_SERVE_IDEMPOTENCY_SECONDS with the body's
digest: first as pending (SET NX, so two requests racing with one key publish once),
then with the job id. The same key with the same body returns that job; with another
body it is a conflict; a publish that failed forgets the key, so a retry can succeed.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from workers import keys

TTL_SETTING = "IMPORTQ_SERVE_IDEMPOTENCY_SECONDS"
DEFAULT_TTL = 86400
# A pending key outlives any publish, yet a server that died mid-publish frees it in time.
PENDING_SECONDS = 3600
_PENDING = ""


class KeyConflict(Exception):
    """The key was used with another body, or its first request is still publishing: 409."""


@dataclass(frozen=True)
class Claim:
    key: str  # the Redis key
    job_id: str | None  # the job an earlier request with this key made; None: publish now
    body: str  # the request's digest, kept with the job id
    ttl: int  # seconds the key is kept once settled


def claim(client: redis.Redis, owner: str, key: str, body: str, ttl: int) -> Claim:
    """Take the key for this body, or find the job it already made; KeyConflict otherwise."""
    redis_key = keys.serve_idempotency(owner, key)
    if client.set(redis_key, f"{body} {_PENDING}", nx=True, ex=min(ttl, PENDING_SECONDS)):
        return Claim(redis_key, None, body, ttl)
    raw = client.get(redis_key)
    if raw is None:  # expired between the two calls: take it again
        return claim(client, owner, key, body, ttl)
    stored_body, _, job_id = (raw.decode() if isinstance(raw, bytes) else raw).partition(" ")
    if stored_body != body:
        raise KeyConflict(
            f"Idempotency-Key {key!r} was used with another body; use a new key for a new job"
        )
    if job_id == _PENDING:
        raise KeyConflict(
            f"a request with Idempotency-Key {key!r} is still being published; "
            "retry in a few seconds"
        )
    return Claim(redis_key, job_id, body, ttl)


def settle(client: redis.Redis, taken: Claim, job_id: str) -> None:
    client.set(taken.key, f"{taken.body} {job_id}", ex=taken.ttl)


def forget(client: redis.Redis, taken: Claim) -> None:
    client.delete(taken.key)
