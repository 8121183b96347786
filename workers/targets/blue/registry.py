"""Which open Blue transactions importq started, and whether the attempt behind each lives.

Blue keeps a transaction open after its client died, and refuses every other
import until someone cancels it. importq cancels only its own: a transaction
recorded here whose owner (a unit and the claim token of the attempt that
registered it) no longer holds that unit's lease. Anything else open on the
instance was started by someone else, and is left alone.

    importq:blue:transactions:{instance}  hash  transaction id -> {"unit", "token"};
                                                "registering" -> the owner about to
                                                call RegisterImport (its answer may be lost);
                                                {instance} is limits.instance_of(address)
    importq:blue:instances                set   every transactions:{instance} key used
    importq:blue:skipped:{unit}           string JSON [[index, reason], ...] of the rows
                                          Blue skipped, kept while FinalizeImport runs
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis

from workers import keys
from workers.jobs import as_text

FINALIZING = "finalizing"  # the unit's remembered phase while FinalizeImport runs

PREFIX = keys.PREFIX + "blue:"
REGISTERING = "registering"
NAMES = PREFIX + "instances"  # set: every registry key a transaction was recorded under
SKIPPED_TTL_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Owner:
    """The attempt that opened a transaction: a unit and its claim token then."""

    unit: str
    token: str

    def encode(self) -> str:
        return json.dumps({"unit": self.unit, "token": self.token})

    @classmethod
    def decode(cls, raw: bytes | str | None) -> Owner | None:
        if not raw:
            return None
        data = json.loads(raw)
        return cls(str(data.get("unit", "")), str(data.get("token", "")))


class Registry:
    """The transactions importq opened on one Blue instance, seen from one running unit."""

    def __init__(self, client: redis.Redis, instance: str, unit_id: str) -> None:
        self.redis = client
        self.key = f"{PREFIX}transactions:{instance}"
        # While a unit runs, its lease key holds the claim token of this very attempt.
        token = client.get(keys.lease(unit_id))
        self.me = Owner(unit_id, as_text(token) if token else "")

    def intend(self) -> None:
        """Say a RegisterImport is about to be sent: its answer could die with this process."""
        self.redis.hset(self.key, REGISTERING, self.me.encode())

    def record(self, transaction_id: int) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.key, str(transaction_id), self.me.encode())
        pipe.hdel(self.key, REGISTERING)
        pipe.sadd(NAMES, self.key)  # where find() looks under other names of an instance
        pipe.execute()

    def forget(self, transaction_id: int) -> None:
        self.redis.hdel(self.key, str(transaction_id))

    def drop_intent(self) -> None:
        self.redis.hdel(self.key, REGISTERING)

    def owner(self, transaction_id: int) -> Owner | None:
        return Owner.decode(self.redis.hget(self.key, str(transaction_id)))

    def find(self, transaction_id: int) -> tuple[str, Owner] | None:
        """(registry key, owner) of a transaction any importq worker recorded: under this
        instance's name first, then under any other name (a worker that reaches this Blue
        by an address the names cannot tell apart, such as a second DNS name)."""
        owner = self.owner(transaction_id)
        if owner is not None:
            return self.key, owner
        for key in sorted(self.redis.smembers(NAMES)):
            name = as_text(key)
            if name == self.key:
                continue
            found = Owner.decode(self.redis.hget(name, str(transaction_id)))
            if found is not None:
                return name, found
        return None

    def forget_in(self, key: str, transaction_id: int) -> None:
        """Forget a transaction found under another name of the instance (see find)."""
        self.redis.hdel(key, str(transaction_id))

    def dead_intent(self) -> Owner | None:
        """An attempt that was registering an import when it died, if there is one."""
        intent = Owner.decode(self.redis.hget(self.key, REGISTERING))
        return intent if intent and not self.alive(intent) else None

    def alive(self, owner: Owner) -> bool:
        """True while the attempt still holds its unit's lease (a redo holds another token),
        or while its unit waits to learn how a FinalizeImport whose answer was lost ended:
        that transaction may be committing, and only its own unit may settle it."""
        if owner == self.me:
            return True
        token = self.redis.get(keys.lease(owner.unit))
        if token and as_text(token) == owner.token:
            return True
        state, phase = self.redis.hmget(keys.unit(owner.unit), ["state", "remote.phase"])
        return state in (b"waiting", b"queued") and phase == FINALIZING.encode()

    def save_skipped(self, rejected: list[tuple[int, str]]) -> None:
        key = f"{PREFIX}skipped:{self.me.unit}"
        self.redis.set(key, json.dumps(rejected), ex=SKIPPED_TTL_SECONDS)

    def load_skipped(self) -> list[tuple[int, str]]:
        raw = self.redis.get(f"{PREFIX}skipped:{self.me.unit}")
        if not raw:
            return []
        return [(int(index), str(reason)) for index, reason in json.loads(raw)]

    def drop_skipped(self) -> None:
        self.redis.delete(f"{PREFIX}skipped:{self.me.unit}")
