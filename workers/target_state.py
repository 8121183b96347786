"""What a sink may keep in the job-state Redis, through the core: locks, open things, claims.

The runner builds one TargetState per running unit. A sink asks it for exactly the few
things targets need (SourcingData's start turn and registered queue items, Blue's
registry of open transactions and its skipped rows) and never holds a Redis client, so
it cannot read another unit's raw keys: "is that attempt still running" and "what state
is that unit in" are answered here. Every key is keys.target_key(target, kind, ...):

    importq:{target}:{kind}:{name}   string  a FencedLock: "unit lease-token", with a TTL
    importq:{target}:{kind}:{name}:wake  list  a token a release leaves for one waiter
    importq:{target}:{kind}:{name}   zset    an OpenSet: member -> when added (ms)
    importq:{target}:{kind}:{name}   hash    Claims: thing -> {"unit", "token"} (JSON)
    importq:{target}:{index}         set     every Claims key of that kind used (find)
    importq:{target}:{kind}:{unit}   string  a unit's Note, with a TTL
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from redis import Redis

from workers import keys

# The lock is "unit lease-token": a holder whose unit lease is gone (it died) loses it, and
# the same holder takes it again (a release Redis did not confirm does not block it).
# KEYS: the lock. ARGV: our value, TTL ms, the lease key prefix.
_TAKE = """
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then
  local unit, token = string.match(held, '^(%S+) (%S+)$')
  if unit and redis.call('GET', ARGV[3] .. unit) == token then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
# KEYS: the lock, its wake list. ARGV: our value, the lock's TTL ms. Only its holder
# deletes it, and leaves one token on the wake list for the next waiter (at most one: a
# release nobody waits for wakes the next taker once, who finds the lock free anyway).
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
redis.call('RPUSH', KEYS[2], 1)
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Claim:
    """One attempt at a unit: the unit and the token its lease held then."""

    unit: str
    token: str

    def encode(self) -> str:
        return json.dumps({"unit": self.unit, "token": self.token})

    @classmethod
    def decode(cls, raw: bytes | str | None) -> Claim | None:
        if not raw:
            return None
        data = json.loads(raw)
        return cls(str(data.get("unit", "")), str(data.get("token", "")))


class FencedLock:
    """An exclusive lock that passes on at once when its holder's unit lease is gone.

    A unit waiting for it blocks on its wake list (`wait`) instead of asking again and
    again: the release wakes one waiter at once. A holder that died releases nothing; the
    waiters then ask again when their wait runs out."""

    def __init__(self, redis: Redis, key: str, holder: Claim, ttl_ms: int) -> None:
        self._redis = redis
        self._key = key
        self._wake = keys.wake_list(key)
        self._value = f"{holder.unit} {holder.token or '-'}"
        self._ttl_ms = ttl_ms

    def take(self) -> bool:
        """True if this holder has the lock now (taken, or held by it already)."""
        return bool(self._redis.eval(_TAKE, 1, self._key, self._value, self._ttl_ms,
                                     keys.lease("")))  # fmt: skip

    def wait(self, seconds: float) -> bool:
        """Block until a release wakes this waiter (True) or `seconds` pass (False). Keep
        `seconds` well under the client's socket timeout."""
        return self._redis.blpop([self._wake], timeout=seconds) is not None

    def release(self) -> None:
        self._redis.eval(_RELEASE, 2, self._key, self._wake, self._value, self._ttl_ms)


class OpenSet:
    """Remote things open at a vendor, each kept for a while after it was added."""

    def __init__(self, redis: Redis, key: str) -> None:
        self._redis = redis
        self._key = key

    def add(self, member: str, keep_ms: int) -> None:
        """Add `member`, and drop those added more than keep_ms ago."""
        now = int(time.time() * 1000)
        pipe = self._redis.pipeline(transaction=True)
        pipe.zadd(self._key, {member: now})
        pipe.zremrangebyscore(self._key, "-inf", now - keep_ms)
        pipe.pexpire(self._key, keep_ms)
        pipe.execute()

    def remove(self, member: str) -> None:
        self._redis.zrem(self._key, member)

    def members(self) -> set[str]:
        return {_text(member) for member in self._redis.zrange(self._key, 0, -1)}


class Claims:
    """Which attempt holds each of some remote things (Blue's transactions of one instance).

    `key` names this set of claims; `index` lists every key of its kind, so a thing claimed
    under another name (another spelling of one instance) can still be found.
    """

    def __init__(self, redis: Redis, key: str, index: str) -> None:
        self._redis = redis
        self.key = key
        self._index = index

    def hold(self, thing: str, claim: Claim, *, instead_of: str | None = None) -> None:
        """Record `claim` on `thing` (replacing the one on `instead_of`) in one step."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(self.key, thing, claim.encode())
        if instead_of is not None:
            pipe.hdel(self.key, instead_of)
        pipe.sadd(self._index, self.key)
        pipe.execute()

    def mark(self, thing: str, claim: Claim) -> None:
        """Record `claim` on `thing` in this key only (a short-lived note, such as an intent)."""
        self._redis.hset(self.key, thing, claim.encode())

    def holder(self, thing: str) -> Claim | None:
        return Claim.decode(self._redis.hget(self.key, thing))

    def drop(self, thing: str, key: str | None = None) -> None:
        """Forget the claim on `thing`, here or under `key` (one found by `elsewhere`)."""
        self._redis.hdel(self.key if key is None else self._known(key), thing)

    def elsewhere(self, thing: str) -> tuple[str, Claim] | None:
        """(key, claim) of `thing` claimed under another key of the index."""
        for raw in sorted(self._redis.smembers(self._index)):
            name = _text(raw)
            if name == self.key:
                continue
            found = Claim.decode(self._redis.hget(name, thing))
            if found is not None:
                return name, found
        return None

    def _known(self, key: str) -> str:
        if key != self.key and not self._redis.sismember(self._index, key):
            raise ValueError(f"{key} is not a key of {self._index}")
        return key


class Note:
    """A short text one unit keeps for its next attempt, expiring by itself."""

    def __init__(self, redis: Redis, key: str) -> None:
        self._redis = redis
        self._key = key

    def save(self, text: str, ttl_seconds: int) -> None:
        self._redis.set(self._key, text, ex=ttl_seconds)

    def load(self) -> str | None:
        raw = self._redis.get(self._key)
        return _text(raw) if raw else None

    def drop(self) -> None:
        self._redis.delete(self._key)


class TargetState:
    """The state one running unit of `target` may keep and read, keyed by the core."""

    def __init__(self, redis: Redis, target: str, unit_id: str) -> None:
        self._redis = redis
        self.target = target
        self.unit_id = unit_id

    def me(self) -> Claim:
        """This attempt: while a unit runs, its lease key holds this attempt's claim token."""
        token = self._redis.get(keys.lease(self.unit_id))
        return Claim(self.unit_id, _text(token) if token else "")

    def lock(self, kind: str, *name: str, ttl_ms: int) -> FencedLock:
        return FencedLock(self._redis, keys.target_key(self.target, kind, *name), self.me(),
                          ttl_ms)  # fmt: skip

    def open_set(self, kind: str, *name: str) -> OpenSet:
        return OpenSet(self._redis, keys.target_key(self.target, kind, *name))

    def claims(self, kind: str, *name: str, index: str) -> Claims:
        key = keys.target_key(self.target, kind, *name)
        return Claims(self._redis, key, keys.target_key(self.target, index))

    def note(self, kind: str) -> Note:
        return Note(self._redis, keys.target_key(self.target, kind, self.unit_id))

    def running(self, claim: Claim) -> bool:
        """True while that attempt still holds its unit's lease (a redo holds another token)."""
        token = self._redis.get(keys.lease(claim.unit))
        return bool(token) and _text(token) == claim.token

    def unit_state(self, unit_id: str, remote: str) -> tuple[str, str]:
        """A unit's state ("waiting", "queued", "running"...) and its remembered `remote`
        field ("" for none)."""
        state, value = self._redis.hmget(keys.unit(unit_id), ["state", f"remote.{remote}"])
        return (_text(state) if state else "", _text(value) if value else "")
