"""Claim, renew and finish a unit under a lease; find units whose lease expired.

Redis job state is the truth, the Celery message only wakes a worker (see
shared/notes on Celery-over-Redis). A worker claims a unit by writing a lease
key with a TTL; it renews the lease from a heartbeat thread while it works,
and every write it makes afterwards is fenced on still holding that lease, so
a worker that was presumed dead cannot commit over its successor.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import structlog
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from importq.sentinel import NamedPrimary
from workers import keys
from workers.jobs import TERMINAL_UNIT_STATES
from workers.signals import ReplicaUnconfirmed


def lua_set(name: str, members: tuple[str, ...]) -> str:
    """A Lua line declaring the table `name` with `members` as keys: `name[x]` is membership."""
    entries = ", ".join(f"[{json.dumps(str(member))}] = true" for member in members)
    return f"local {name} = {{{entries}}}\n"


# Is the unit still this attempt's? Its lease key says so while it lives. A lease that
# expired while nobody claimed the unit since (the claim rewrites `owner`) is still ours:
# only a successor makes a late holder a zombie, and a heartbeat starved past the TTL
# on a busy machine must not turn into a "crash" that counts toward the poison pill.
MINE = """
local function mine(lease, unit, token)
  local holder = redis.call('GET', lease)
  if holder then return holder == token end
  return redis.call('HGET', unit, 'state') == 'running' and
         redis.call('HGET', unit, 'owner') == token
end
"""

# KEYS: unit hash, lease, watch zset, job hash, payload, and optionally the target's
#       breaker hash (workers/breaker.py), then optionally the worker's shutdown key.
# ARGV: token, lease ms, now ms, unit id, max crashes, early tolerance ms
# TERMINAL: the unit states a unit never leaves (workers.jobs.TERMINAL_UNIT_STATES).
# A waiting unit is never claimed before its due time (next_attempt_at), whoever sent the
# message: the caller re-schedules it without an attempt. A hand-back's resume point is
# consumed here, so it holds for exactly one claim: if the resuming attempt dies too, the
# next one does not trust a checkpoint that the crash may have overtaken.
# A claimed unit comes back with what the run needs, read in the same round trip: the unit
# hash, the job hash, the payload (nil when missing) and whether the target is paused
# (1 or 0; -1 when no breaker key was given), so the breaker is asked only when it is,
# and whether this worker is shutting down (likewise), so the first checkpoint need not ask.
_CLAIM = (
    lua_set("TERMINAL", TERMINAL_UNIT_STATES)
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing'} end
if TERMINAL[state] then return {'done', state} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'held'} end
if state == 'waiting' then
  local due = redis.call('HGET', KEYS[1], 'next_attempt_at')
  if due and due ~= '' and tonumber(due) * 1000 > tonumber(ARGV[3]) + tonumber(ARGV[6]) then
    return {'early', due}
  end
end
if state == 'running' then
  -- the previous holder's lease expired without a finish: it died
  redis.call('HINCRBY', KEYS[1], 'crashes', 1)
  redis.call('HINCRBY', KEYS[4], 'crashes', 1)
end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[1], 'state', 'running', 'owner', ARGV[1])
redis.call('ZADD', KEYS[3], tonumber(ARGV[3]) + tonumber(ARGV[2]), ARGV[4])
redis.call('HSETNX', KEYS[4], 'started_at', ARGV[3])
local crashes = tonumber(redis.call('HGET', KEYS[1], 'crashes') or '0')
local handed_back = redis.call('HGET', KEYS[1], 'handed_back') or ''
redis.call('HSET', KEYS[1], 'handed_back', '')
local status = 'claimed'
if crashes >= tonumber(ARGV[5]) then status = 'poisoned' end
local paused, stopping = -1, -1
if KEYS[6] then paused = redis.call('EXISTS', KEYS[6]) end
if KEYS[7] then stopping = redis.call('EXISTS', KEYS[7]) end
return {status, epoch, attempts, crashes, handed_back, redis.call('HGETALL', KEYS[1]),
        redis.call('HGETALL', KEYS[4]), redis.call('GET', KEYS[5]), paused, stopping}
"""
)

# KEYS: unit hash.  ARGV: now (s), reason.  A unit waiting for `reason` (a slot, its turn)
# becomes due now, so the message that wakes it is not turned away as early.
_WAKE = """
if redis.call('HGET', KEYS[1], 'state') ~= 'waiting' then return 0 end
if redis.call('HGET', KEYS[1], 'waits_for') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'next_attempt_at', ARGV[1])
return 1
"""

# KEYS: lease, watch, unit hash.  ARGV: token, lease ms, now ms, unit id
_RENEW = (
    MINE
    + """
if not mine(KEYS[1], KEYS[3], ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], tonumber(ARGV[3]) + tonumber(ARGV[2]), ARGV[4])
return 1
"""
)

# KEYS: unit hash, lease.  ARGV: token, field, value, field, value...
_REMEMBER = (
    MINE
    + """
if not mine(KEYS[2], KEYS[1], ARGV[1]) then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""
)

# KEYS: unit hash, lease, watch, job hash, payload, job units list, dlq list, dlq index,
#       then per child (in the order of the finish JSON's children): its unit hash, its payload.
# ARGV: token, now ms, unit id, finish JSON, stats key prefix, this minute's tally key with
#       %s for the target (keys.recent), its TTL s, the job TTL s (0: none), the unit hash
#       key prefix (keys.unit("")), child payloads...
# Returns 0 when the lease is not ours, 1 when recorded, {2, job hash} when that also
# finished the job: the job as it ended, read in the same step, its state (the job hash,
# its units list and every unit hash) let go after the job TTL unless it has dead letters
# or failed units (those stay until replayed). The units' keys are found in the units list,
# so they are built from the prefix, like _REAP's (one Redis, no Cluster).
# The finish JSON: state, fields{}, delivered, dead, attempts_delta, deadline (ms or null),
# dead_letters[] (JSON strings), children[{id, fields{}}] (payloads in ARGV[10..]).
# The keys not in KEYS are the metrics hash (keys.stats) and the minute's tally
# (keys.recent), named by the target that the unit hash holds: the script reads it there,
# the truth, rather than trust the caller's, and the prefix and template come from keys.py
# as ARGV[5] and ARGV[6] (importq runs on one Redis, not a Cluster).
_FINISH = (
    MINE
    + """
if not mine(KEYS[2], KEYS[1], ARGV[1]) then return 0 end
local f = cjson.decode(ARGV[4])
local now = tonumber(ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'state', f.state, 'owner', '')
for k, v in pairs(f.fields) do redis.call('HSET', KEYS[1], k, v) end
if f.attempts_delta ~= 0 then redis.call('HINCRBY', KEYS[1], 'attempts', f.attempts_delta) end
for i, entry in ipairs(f.dead_letters) do redis.call('RPUSH', KEYS[7], entry) end
if #f.dead_letters > 0 then redis.call('ZADD', KEYS[8], now, redis.call('HGET', KEYS[1], 'job')) end
local job = redis.call('HGET', KEYS[1], 'job')
for i, child in ipairs(f.children) do
  local child_unit, child_payload = KEYS[7 + 2 * i], KEYS[8 + 2 * i]
  for k, v in pairs(child.fields) do redis.call('HSET', child_unit, k, v) end
  redis.call('SET', child_payload, ARGV[9 + i])
  redis.call('RPUSH', KEYS[6], child.id)
  redis.call('ZADD', KEYS[3], now + f.grace_ms, child.id)
end
redis.call('HINCRBY', KEYS[4], 'units_total', #f.children)
-- running totals per target for the Prometheus metrics (workers/metrics.py)
local target = redis.call('HGET', KEYS[1], 'target') or '-'
local stats = ARGV[5] .. target
if f.terminal then
  redis.call('HINCRBY', stats, 'units_' .. f.state, 1)
  redis.call('HINCRBY', stats, 'records_delivered', f.delivered)
  redis.call('HINCRBY', stats, 'records_dead', f.dead)
  -- this minute's tally (importq queues: the last 5 and 60 minutes, the backlog's ETA)
  if f.delivered + f.dead > 0 then
    local recent = string.format(ARGV[6], target)
    redis.call('HINCRBY', recent, 'delivered', f.delivered)
    redis.call('HINCRBY', recent, 'dead', f.dead)
    redis.call('EXPIRE', recent, ARGV[7])
  end
elseif f.retry then
  redis.call('HINCRBY', stats, 'retries', 1)
end
if f.terminal then
  -- a failed unit counts even when it held no records (a bare Blueshift trigger)
  if f.state == 'failed' then redis.call('HINCRBY', KEYS[4], 'units_failed', 1) end
  redis.call('ZREM', KEYS[3], ARGV[3])
  redis.call('DEL', KEYS[5])
  redis.call('HINCRBY', KEYS[4], 'records_delivered', f.delivered)
  redis.call('HINCRBY', KEYS[4], 'records_dead', f.dead)
  local done = redis.call('HINCRBY', KEYS[4], 'units_done', 1)
  if done >= tonumber(redis.call('HGET', KEYS[4], 'units_total')) then
    redis.call('HSET', KEYS[4], 'finished_at', now)
    local ttl = tonumber(ARGV[8])
    local kept = tonumber(redis.call('HGET', KEYS[4], 'records_dead') or '0') > 0 or
                 tonumber(redis.call('HGET', KEYS[4], 'units_failed') or '0') > 0
    if ttl > 0 and not kept then
      for i, id in ipairs(redis.call('LRANGE', KEYS[6], 0, -1)) do
        redis.call('EXPIRE', ARGV[9] .. id, ttl)
      end
      redis.call('EXPIRE', KEYS[6], ttl)
      redis.call('EXPIRE', KEYS[4], ttl)
    end
    return {2, redis.call('HGETALL', KEYS[4])}
  end
else
  redis.call('ZADD', KEYS[3], f.deadline, ARGV[3])
  if f.retry then redis.call('HINCRBY', KEYS[4], 'retries', 1) end
end
return 1
"""
)

# KEYS: watch.  ARGV: now ms, limit, grace ms, rescue ms, longest rescue ms,
#       unit hash key prefix, lease key prefix (keys.unit(""), keys.lease("")).
# The unit and lease keys are those of the ids the script finds in the watch zset, so they
# cannot be declared in KEYS up front: their prefixes come from keys.py as ARGV instead of
# a ZRANGEBYSCORE from Python and a second call, which keeps one round trip per sweep and
# reads the due units in the same atomic step that re-dates them (one Redis, no Cluster).
# Returns unit ids to publish again. A unit is due when its lease expired (worker died),
# its retry time passed plus grace (the retry message was lost), or it stayed unclaimed
# for a rescue period (its message was lost, or a backlog is long). Each rescue of one unit
# waits twice as long as the last, so a long backlog is not flooded with copies.
_REAP = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local now = tonumber(ARGV[1])
local out = {}
for i, id in ipairs(due) do
  local unit = ARGV[6] .. id
  local state = redis.call('HGET', unit, 'state')
  if redis.call('EXISTS', ARGV[7] .. id) == 1 then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), id)
  elseif state == 'running' or state == 'waiting' then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), id)
    table.insert(out, id)
  elseif state == 'queued' then
    local rescues = redis.call('HINCRBY', unit, 'rescues', 1)
    local wait = math.min(tonumber(ARGV[4]) * 2 ^ (rescues - 1), tonumber(ARGV[5]))
    redis.call('ZADD', KEYS[1], now + wait, id)
    table.insert(out, id)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"""

# A slot caps the units in flight per key (Blue: one import per instance). Members are
# claim tokens, so a presumed-dead attempt and its successor never share an entry, and
# only the holder can release or renew its own.
# KEYS: slots zset, cooldown key, waiting zset.  ARGV: member, cap, now ms, expiry ms,
# unit id (or ''): a unit that gets the slot leaves the waiting list in the same step.
_ACQUIRE_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local function taken()
  if ARGV[5] ~= '' then redis.call('ZREM', KEYS[3], ARGV[5]) end
  return 1
end
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
  return taken()
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]) - tonumber(ARGV[3]))
  return taken()
end
return 0
"""

# KEYS: slots zset, cooldown key, waiting zset.  ARGV: member, gap ms.
# Gives the place back (closing the key for the gap, if any) and takes the unit that has
# waited longest off the waiting list: returns its id, or nil when none waits.
_HAND_ON_SLOT = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 and tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
end
local next = redis.call('ZPOPMIN', KEYS[3])
if #next == 0 then return false end
return next[1]
"""


def now_ms() -> int:
    return int(time.time() * 1000)


# A message may arrive this much before the unit's due time and still run: clocks of two
# machines and Celery's countdown rounding differ by a little; more than this is early.
EARLY_TOLERANCE_MS = 100


@dataclass
class Claim:
    """What a claim found: `claimed`, `poisoned`, `early`, `held`, `done` or `missing`."""

    status: str
    token: str = ""
    epoch: int = 0
    attempts: int = 0
    crashes: int = 0
    handed_back: bool = False
    """The last attempt stopped cleanly at a checkpoint: what it remembered is exact."""
    due: float = 0.0
    """For `early`: when the unit is due (epoch seconds)."""
    sent_at: float = 0.0
    """time.monotonic() when the claim was sent: the lease runs from no earlier than this."""
    unit: dict[str, str] = field(default_factory=dict)
    """For a claimed unit: its hash, as the claim left it."""
    job: dict[str, str] = field(default_factory=dict)
    """For a claimed unit: its job's hash (empty when the job is gone)."""
    payload: bytes | None = None
    """For a claimed unit: its staged records, compressed (None when they are missing)."""
    target_paused: bool | None = None
    """Whether the target's breaker hash existed at the claim (None: not asked)."""
    shutting_down: bool | None = None
    """Whether the worker's shutdown key existed at the claim (None: not asked)."""


@dataclass
class Recorded:
    """What a finish recorded: 0 (not our lease), 1 (recorded), 2 (and the job finished)."""

    status: int
    job: dict[str, str] = field(default_factory=dict)
    """For 2: the job's hash as the finish left it."""


@dataclass
class Finish:
    """The fenced end of one run of a unit."""

    state: str
    terminal: bool
    fields: dict[str, str] = field(default_factory=dict)
    delivered: int = 0
    dead: int = 0
    attempts_delta: int = 0
    retry: bool = False
    deadline_ms: int = 0
    dead_letters: list[str] = field(default_factory=list)
    children: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)


log = structlog.get_logger("importq.leases")
# A replica that does not confirm is said at most this often (seconds), not on every write.
UNCONFIRMED_SAID_EVERY = 60.0
# The sentinels' word that a server is the primary holds this long (seconds) for later writes.
PRIMARY_VOUCHED_SECONDS = 1.0


class Leases:
    """The lease scripts, bound to one Redis connection.

    With `replica_wait_ms` (a Sentinel group: importq/sentinel.py) the writes that guard
    against a double commit, claim, remember and finish, are each followed by `WAIT 1
    <ms>` on the same connection: the worker goes on to the vendor only once a replica
    holds the write, so a failover cannot take the claim or the remote id with the old
    primary. A remembered remote id that no replica confirmed stops the unit before its
    vendor call, unless no replica is connected and the sentinels name this server the
    primary; claims and finishes go on with a warning (docs/operations.md, "Redis
    Sentinel").
    """

    def __init__(
        self,
        client: redis.Redis,
        lease_seconds: float,
        grace_seconds: float,
        replica_wait_ms: int = 0,
        named_primary: Callable[[], NamedPrimary | None] | None = None,
    ) -> None:
        """`named_primary`: asks the sentinels which server is the primary, for a guarding
        write that no replica confirmed because none is connected."""
        self.redis = client
        self.lease_ms = int(lease_seconds * 1000)
        self.grace_ms = int(grace_seconds * 1000)
        self.replica_wait_ms = replica_wait_ms
        self.named_primary = named_primary
        self._vouched: tuple[str, float] = ("", 0.0)  # a run id the sentinels named, and when
        self._unconfirmed_said_at: float | None = None
        self._claim = client.register_script(_CLAIM)
        self._renew = client.register_script(_RENEW)
        self._remember = client.register_script(_REMEMBER)
        self._finish = client.register_script(_FINISH)
        self._reap = client.register_script(_REAP)
        self._acquire_slot = client.register_script(_ACQUIRE_SLOT)
        self._hand_on_slot = client.register_script(_HAND_ON_SLOT)
        self._wake = client.register_script(_WAKE)

    def claim(
        self, unit_id: str, max_crashes: int, target: str | None = None, shutdown_key: str = ""
    ) -> Claim:
        """Take the unit's lease; with `target`, also say whether its breaker is open, and
        with `shutdown_key` too, whether this worker is shutting down."""
        token = uuid.uuid4().hex
        sent_at = time.monotonic()
        unit_keys = [
            keys.unit(unit_id),
            keys.lease(unit_id),
            keys.WATCH,
            keys.job(keys.job_of(unit_id)),
            keys.payload(unit_id),
        ]
        if target is not None:
            unit_keys.append(keys.breaker(target))
            if shutdown_key:
                unit_keys.append(shutdown_key)
        args: list[Any] = [token, self.lease_ms, now_ms(), unit_id, max_crashes,
                           EARLY_TOLERANCE_MS]  # fmt: skip
        found = self._guarded(self._claim, unit_keys, args)
        status = _text(found[0])
        if status == "early":
            return Claim("early", due=float(_text(found[1])))
        if status not in ("claimed", "poisoned"):
            return Claim(status)
        epoch, attempts, crashes, handed_back, unit, job, payload, paused, stopping = found[1:]
        return Claim(status, token, int(epoch), int(attempts), int(crashes),
                     _text(handed_back) == "1", sent_at=sent_at, unit=_fields(unit),
                     job=_fields(job), payload=payload, target_paused=_flag(paused),
                     shutting_down=_flag(stopping))  # fmt: skip

    def wake(self, unit_id: str, reason: str) -> bool:
        """Make a unit that waits for `reason` due now; False if it waits for something else."""
        return bool(self._wake(keys=[keys.unit(unit_id)], args=[time.time(), reason]))

    def renew(self, unit_id: str, token: str) -> bool:
        args: list[Any] = [token, self.lease_ms, now_ms(), unit_id]
        renew_keys = [keys.lease(unit_id), keys.WATCH, keys.unit(unit_id)]
        return bool(self._renew(keys=renew_keys, args=args))

    def remember(self, unit_id: str, token: str, values: dict[str, str]) -> bool:
        flat: list[str] = [token]
        for name, value in values.items():
            flat += [name, value]
        unit_keys = [keys.unit(unit_id), keys.lease(unit_id)]
        try:
            return bool(self._guarded(self._remember, unit_keys, flat, before_vendor_call=True))
        except ReplicaUnconfirmed as error:
            raise ReplicaUnconfirmed(f"unit {unit_id}: {error}") from None

    def finish(self, unit_id: str, token: str, result: Finish, job_ttl: int = 0) -> int:
        """0: not our lease, nothing written; 1: recorded; 2: recorded and the job is done."""
        return self.record(unit_id, token, result, job_ttl).status

    def record(self, unit_id: str, token: str, result: Finish, job_ttl: int = 0) -> Recorded:
        """The fenced finish; when it ends the job, the job's hash with it, and the job's
        state let go after `job_ttl` seconds (0: kept) unless it holds dead letters."""
        job_id = keys.job_of(unit_id)
        spec: dict[str, Any] = {
            "state": result.state,
            "terminal": result.terminal,
            "fields": result.fields,
            "delivered": result.delivered,
            "dead": result.dead,
            "attempts_delta": result.attempts_delta,
            "retry": result.retry,
            "deadline": result.deadline_ms,
            "grace_ms": self.grace_ms,
            "dead_letters": result.dead_letters,
            "children": [{"id": cid, "fields": f} for cid, f, _ in result.children],
        }
        finish_keys = [
            keys.unit(unit_id),
            keys.lease(unit_id),
            keys.WATCH,
            keys.job(job_id),
            keys.payload(unit_id),
            keys.job_units(job_id),
            keys.dead_letters(job_id),
            keys.DLQ_INDEX,
        ]
        for child_id, _, _ in result.children:
            finish_keys += [keys.unit(child_id), keys.payload(child_id)]
        now = now_ms()
        tally = keys.recent("%s", now // 60_000)  # the script fills in the unit's target
        args: list[Any] = [token, now, unit_id, json.dumps(spec), keys.stats(""), tally,
                           keys.RECENT_TTL, job_ttl, keys.unit("")]  # fmt: skip
        args += [payload for _, _, payload in result.children]
        found = self._guarded(self._finish, finish_keys, args)
        if isinstance(found, list):
            return Recorded(int(found[0]), _fields(found[1]))
        return Recorded(int(found))

    def _guarded(
        self,
        script: Script,
        script_keys: list[str],
        args: list[Any],
        before_vendor_call: bool = False,
    ) -> Any:
        """Run a guarding script; with replica_wait_ms, then WAIT on the same connection.

        `before_vendor_call` (a remembered remote id): a write no replica confirmed raises
        ReplicaUnconfirmed, so the sink stops before the vendor request that the write
        guards, unless no replica is connected and the sentinels name this server the
        primary (nothing could be promoted in its place): then it goes on with a warning.
        """
        if not self.replica_wait_ms:
            return script(keys=script_keys, args=args)
        result, confirmed = self._write_and_wait(script, script_keys, args)
        if int(confirmed) >= 1:
            return result
        replicas, server = self._replication()
        if before_vendor_call and result:
            self._stop_unless_safe(replicas, server)
        said_at = self._unconfirmed_said_at
        if said_at is None or time.monotonic() - said_at > UNCONFIRMED_SAID_EVERY:
            self._unconfirmed_said_at = time.monotonic()
            log.warning(
                "no replica confirmed a guarding write in time: a failover now could lose it",
                waited_ms=self.replica_wait_ms,
                replicas_connected=replicas,
                fix="check the replica (importq doctor); IMPORTQ_REPLICA_WAIT_MS sets the wait",
            )
        return result

    def _write_and_wait(
        self, script: Script, script_keys: list[str], args: list[Any]
    ) -> tuple[Any, int]:
        """The script's answer and how many replicas confirmed it (one connection: the WAIT
        covers the write)."""
        for _ in range(2):
            pipe = self.redis.pipeline(transaction=False)
            script(keys=script_keys, args=args, client=pipe)
            pipe.wait(1, self.replica_wait_ms)
            try:
                result, confirmed = pipe.execute()
                return result, int(confirmed)
            except NoScriptError:
                # redis-py resent the pipeline after a failover to a primary that never
                # loaded the script (a replica's cache is its own): the script did not run
                # there, so loading it and sending again is the same retry.
                continue
        raise NoScriptError(f"the lease script stayed unknown to Redis ({script.sha})")

    def _replication(self) -> tuple[int, tuple[str, str]]:
        """The replicas connected to the server written to, and its run id and address."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.info("replication")
        pipe.info("server")
        pipe.client_info()
        replication, server, me = pipe.execute()
        identity = (str(server.get("run_id", "")), str(me.get("laddr", "")))
        return int(replication.get("connected_slaves", 0)), identity

    def _stop_unless_safe(self, replicas: int, server: tuple[str, str]) -> None:
        """Raise ReplicaUnconfirmed unless an unconfirmed guarding write is safe to act on.

        With a replica connected, a failover now could promote it without the write. With
        none, the write is safe only on the primary the sentinels name: a server they do
        not name (an old primary back on its address after a failover, or one cut off
        from them) is demoted soon and loses every write it took.
        """
        if replicas:
            raise ReplicaUnconfirmed(
                f"no replica confirmed what the unit recorded within {self.replica_wait_ms} ms "
                "(IMPORTQ_REPLICA_WAIT_MS): stopping before the vendor request it guards, as "
                "a failover now could lose it"
            )
        if self.named_primary is None or self._is_named(*server):
            return
        run_id, address = server
        raise ReplicaUnconfirmed(
            f"the Redis that took what the unit recorded ({address}, run id {run_id}) has no "
            "replica and is not the primary the sentinels name: it may be an old primary a "
            "failover left behind, whose writes are lost when it is demoted; stopping before "
            "the vendor request it guards"
        )

    def _is_named(self, run_id: str, address: str) -> bool:
        """Whether the sentinels name this server the primary (a yes holds for a second)."""
        vouched, at = self._vouched
        if run_id and run_id == vouched and time.monotonic() - at < PRIMARY_VOUCHED_SECONDS:
            return True
        named = self.named_primary() if self.named_primary else None
        if named is None or not named.is_server(run_id, address):
            return False
        self._vouched = (run_id, time.monotonic())
        return True

    def reap(
        self,
        rescue_seconds: float = 300.0,
        longest_rescue_seconds: float = 4 * 3600,
        limit: int = 500,
    ) -> list[str]:
        """Unit ids whose lease expired, whose retry is overdue, or that stayed unclaimed."""
        rescue_ms = int(rescue_seconds * 1000)
        longest_ms = max(rescue_ms, int(longest_rescue_seconds * 1000))
        prefixes = [keys.unit(""), keys.lease("")]  # of the unit ids the script finds
        args: list[Any] = [now_ms(), limit, self.grace_ms, rescue_ms, longest_ms, *prefixes]
        found = self._reap(keys=[keys.WATCH], args=args)
        return [_text(x) for x in found]

    def acquire_slot(self, slot_key: str, member: str, cap: int, unit_id: str = "") -> bool:
        """Take (or keep) a place among at most `cap` holders of `slot_key`; `unit_id`
        leaves the slot's waiting list when it gets the place."""
        now = now_ms()
        slot_keys = [slot_key, slot_key + ":cooldown", slot_key + ":waiting"]
        args: list[Any] = [member, cap, now, now + self.lease_ms, unit_id]
        return bool(self._acquire_slot(keys=slot_keys, args=args))

    def renew_slot(self, slot_key: str, member: str) -> bool:
        """Extend the holder's place; False if it expired (it may be someone else's now)."""
        pipe = self.redis.pipeline(transaction=True)
        # XX without CH: whether the member is still there is asked with ZSCORE, because
        # ZADD XX CH answers 0 when the new score equals the old one (a renewal in the same
        # millisecond as the acquire), which would read as "slot lost".
        pipe.zadd(slot_key, {member: now_ms() + self.lease_ms}, xx=True)
        # The key's TTL was set at acquire: without this, a unit longer than one lease
        # (a Blue prepare) loses the whole slot key, and with it its place.
        pipe.pexpire(slot_key, self.lease_ms)
        pipe.zscore(slot_key, member)
        _, _, score = pipe.execute()
        return score is not None

    def wait_for_slot(self, slot_key: str, unit_id: str) -> None:
        """Queue up for the slot, first come first served (see next_waiter)."""
        waiting = slot_key + ":waiting"
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(waiting, {unit_id: now_ms()}, nx=True)
        pipe.pexpire(waiting, 3_600_000)
        pipe.execute()

    def stop_waiting(self, slot_key: str, unit_id: str) -> None:
        self.redis.zrem(slot_key + ":waiting", unit_id)

    def next_waiter(self, slot_key: str) -> str | None:
        """The unit that has waited longest for this slot, taken off the waiting list."""
        popped = self.redis.zpopmin(slot_key + ":waiting")
        return _text(popped[0][0]) if popped else None

    def hand_on_slot(self, slot_key: str, member: str, gap_seconds: float = 0.0) -> str | None:
        """release_slot and next_waiter in one round trip: the unit to wake, if any."""
        slot_keys = [slot_key, slot_key + ":cooldown", slot_key + ":waiting"]
        found = self._hand_on_slot(keys=slot_keys, args=[member, int(gap_seconds * 1000)])
        return _text(found) if found is not None else None

    def release_slot(self, slot_key: str, member: str, gap_seconds: float = 0.0) -> None:
        """Give the place back; with a gap, nobody takes the key for that long."""
        if self.redis.zrem(slot_key, member) and gap_seconds > 0:
            self.redis.set(slot_key + ":cooldown", member, px=int(gap_seconds * 1000))


def _flag(found: Any) -> bool | None:
    """A script's 1 or 0 as a bool; -1 (not asked) as None."""
    return None if int(found) < 0 else bool(int(found))


def _fields(flat: list[Any]) -> dict[str, str]:
    """A hash as HGETALL inside a script returns it (name, value, ...) as text."""
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)  # binary client
