"""A circuit breaker per target: pause the target, not the records, while it is down.

A vendor outage, a revoked token or a bad setting fails every unit of a target
alike; spending each unit's attempts on it would dead-letter a whole backlog
within minutes. So failures that say nothing about the unit itself (the target
unreachable, 5xx across units, 401/403, the worker's configuration) are counted
per target. Once enough units hit them within a window (auth and configuration:
at once) the target is *paused*: its units wait without using attempts, one
probe unit runs at a growing interval, and the first probe that reaches the
vendor resumes the target and wakes every waiting unit.

An operator pauses a target the same way (`importq pause`): its units wait
without using attempts, but none probes and no answer lifts it; only `importq
resume` does, which also lifts the breaker's own pause at once.

    importq:breaker:{target}           hash  reason, since, probe_at, interval (s), by
                                             ("operator" for an operator's pause)
    importq:breaker:{target}:failures  zset  unit id -> when it failed target-wide (ms)
    importq:breaker:{target}:probe     string the probing unit's claim token, TTL = lease
    importq:breaker:{target}:waiting   zset  unit id -> since (ms): units paused by it
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import redis

from importq.errors import AuthError, ConfigError, RetryableError, Unreachable
from importq.settings import Settings
from workers import keys

# KEYS: breaker hash, failures zset, probe key.
# ARGV: unit id, now ms, reason, threshold, window ms, first interval s, longest interval s,
#       at once (1: open on this failure alone), probe token.
# Returns {state, probe_at}: state 'closed' (below the threshold) or 'open'.
_FAILED = """
local now = tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 1 then
  -- already paused: a failed probe doubles the interval; others change nothing
  if redis.call('GET', KEYS[3]) == ARGV[9] then
    local interval = math.min(tonumber(redis.call('HGET', KEYS[1], 'interval')) * 2,
                              tonumber(ARGV[7]))
    redis.call('HSET', KEYS[1], 'interval', interval, 'probe_at', now + interval * 1000,
               'reason', ARGV[3])
    redis.call('DEL', KEYS[3])
  end
  return {'open', redis.call('HGET', KEYS[1], 'probe_at')}
end
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[5]))
redis.call('PEXPIRE', KEYS[2], ARGV[5])
if ARGV[8] ~= '1' and redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[4]) then
  return {'closed', '0'}
end
local probe_at = now + tonumber(ARGV[6]) * 1000
redis.call('HSET', KEYS[1], 'reason', ARGV[3], 'since', now, 'probe_at', probe_at,
           'interval', ARGV[6])
redis.call('DEL', KEYS[2])
return {'open', tostring(probe_at)}
"""

# KEYS: breaker hash, probe key.  ARGV: now ms, token, lease ms, operator recheck ms.
# Returns {'run'} (not paused), {'probe'} (paused, and this unit probes) or {'wait', probe_at}.
# An operator's pause is never probed: its units look again after the recheck (resume
# wakes them at once; the recheck only bounds a unit that missed the wake-up).
_ADMIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'run'} end
if redis.call('HGET', KEYS[1], 'by') == 'operator' then
  return {'wait', tostring(tonumber(ARGV[1]) + tonumber(ARGV[4]))}
end
local probe_at = redis.call('HGET', KEYS[1], 'probe_at')
if tonumber(ARGV[1]) >= tonumber(probe_at) then
  if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return {'probe'} end
end
return {'wait', probe_at}
"""

# KEYS: breaker hash, probe key, waiting zset.  ARGV: '1' when an operator resumes.
# Returns {resumed (1 or 0), unit ids that waited...}: a probe's answer leaves an
# operator's pause in place.
_RESUME = """
if ARGV[1] ~= '1' and redis.call('HGET', KEYS[1], 'by') == 'operator' then return {0} end
local waiting = redis.call('ZRANGE', KEYS[3], 0, -1)
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
table.insert(waiting, 1, 1)
return waiting
"""

OPERATOR = "operator"


@dataclass(frozen=True)
class Pause:
    """A paused target: why, since when, and when it is probed next (epoch seconds; 0 for
    an operator's pause, which is not probed)."""

    target: str
    reason: str
    since: float
    probe_at: float
    by: str = "breaker"  # or OPERATOR

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        if self.by == OPERATOR:
            return (f"target {self.target} paused by an operator since {since}: {self.reason} "
                    f"(`importq resume {self.target}` lifts it)")  # fmt: skip
        return f"target {self.target} paused since {since}: {self.reason}"


def target_wide(error: BaseException) -> bool:
    """True when the failure says the target is unusable, not that this unit is bad."""
    if isinstance(error, AuthError | ConfigError | Unreachable):
        return True
    return isinstance(error, RetryableError) and (error.status or 0) >= 500


def at_once(error: BaseException) -> bool:
    """Failures one unit is enough to be sure of: credentials and configuration."""
    return isinstance(error, AuthError | ConfigError)


class Breaker:
    """The breakers of every target, on one Redis."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.lease_ms = int(settings.lease_seconds * 1000)
        self.threshold = settings.integer("IMPORTQ_BREAKER_FAILURES", 3, minimum=1)
        window = settings.number("IMPORTQ_BREAKER_WINDOW_SECONDS", 120, above=0)
        self.window_ms = int(window * 1000)
        self.first_interval = settings.number("IMPORTQ_BREAKER_PROBE_SECONDS", 30, above=0)
        self.longest_interval = settings.number(
            "IMPORTQ_BREAKER_PROBE_MAX_SECONDS", 600, minimum=self.first_interval
        )
        self._failed = client.register_script(_FAILED)
        self._admit = client.register_script(_ADMIT)
        self._resume = client.register_script(_RESUME)

    def admit(self, target: str, token: str) -> tuple[str, float]:
        """('run', 0), ('probe', 0) or ('wait', probe_at) for a unit about to run."""
        recheck_ms = int(self.longest_interval * 1000)
        found = self._admit(keys=[keys.breaker(target), keys.breaker_probe(target)],
                            args=[_now_ms(), token, self.lease_ms, recheck_ms])  # fmt: skip
        verdict = _text(found[0])
        return verdict, float(_text(found[1])) / 1000 if len(found) > 1 else 0.0

    def failed(self, target: str, unit_id: str, token: str, error: BaseException) -> float | None:
        """Count a target-wide failure; the next probe time if the target is paused now."""
        reason = str(error)[:500]
        args: list[Any] = [unit_id, _now_ms(), reason, self.threshold, self.window_ms,
                           self.first_interval, self.longest_interval,
                           "1" if at_once(error) else "0", token]  # fmt: skip
        state, probe_at = (_text(x) for x in self._failed(keys=self._keys(target), args=args))
        return float(probe_at) / 1000 if state == "open" else None

    def resume(self, target: str, *, by_operator: bool = False) -> list[str] | None:
        """Unpause the target: the units that waited, to be woken; None when only an
        operator may lift this pause and the caller is a probe that reached the vendor."""
        resume_keys = [keys.breaker(target), keys.breaker_probe(target),
                       keys.breaker_waiting(target)]  # fmt: skip
        found = self._resume(keys=resume_keys, args=["1" if by_operator else "0"])
        if not int(found[0]):
            return None
        return [_text(unit_id) for unit_id in found[1:]]

    def hold(self, target: str, reason: str) -> None:
        """An operator's pause: units wait without attempts until `resume(by_operator=True)`."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(keys.breaker_probe(target), keys.breaker_failures(target))
        pipe.hset(keys.breaker(target), mapping={"reason": reason, "since": _now_ms(),
                                                 "probe_at": 0, "by": OPERATOR})  # fmt: skip
        pipe.execute()

    def wait(self, target: str, unit_id: str, probe_at: float) -> float:
        """Park a unit until the target resumes; returns when it should look again."""
        self.redis.zadd(keys.breaker_waiting(target), {unit_id: _now_ms()}, nx=True)
        # It is woken when the target resumes; until then it looks again after the next
        # probe, spread out so a large backlog does not come back all at once.
        spread = random.uniform(0, self.first_interval)
        return max(probe_at, time.time()) + spread

    def pause(self, target: str) -> Pause | None:
        return pause_of(target, self.redis.hgetall(keys.breaker(target)))

    def _keys(self, target: str) -> list[str]:
        return [keys.breaker(target), keys.breaker_failures(target), keys.breaker_probe(target)]


def pause_of(target: str, stored: dict[Any, Any]) -> Pause | None:
    """The pause of `target` from its breaker's hash (keys.breaker) as read; None: not paused."""
    raw = {_text(k): _text(v) for k, v in stored.items()}
    if not raw:
        return None
    return Pause(target, raw.get("reason", ""), float(raw.get("since", 0)) / 1000,
                 float(raw.get("probe_at", 0)) / 1000, raw.get("by", "breaker"))  # fmt: skip


def _now_ms() -> int:
    return int(time.time() * 1000)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
