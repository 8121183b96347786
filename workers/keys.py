"""Every Redis key importq writes, in one place.

    importq:jobs                  zset   job id -> created (ms); the `importq jobs` listing
    importq:staging               zset   job id -> created (s): jobs a producer is staging
    importq:job:{job}             hash   target, params, counters (units, records, retries...)
    importq:job:{job}:units       list   unit ids of the job, in creation order
    importq:unit:{unit}           hash   state, epoch, owner, attempts, crashes, remote.* ids...
    importq:payload:{unit}        string the unit's records (zstd JSON): the claim check
    importq:payload:{unit}:unreadable  string  a payload no worker could read, set aside
                                  when its unit failed (kept with the job, for a look)
    importq:lease:{unit}          string the owner's token, with a TTL: the unit's lease
    importq:watch                 zset   unit id -> deadline (ms) the reaper checks
    importq:slots:{target}:{key}  zset   claim token -> expiry (ms): units in flight per key
    importq:slots:{target}:{key}:cooldown  string, TTL = the sink's gap between units on a key
    importq:slots:{target}:{key}:waiting   zset  unit id -> since (ms): units deferred for it
    importq:order:{target}:{key}  list   job ids in publish order; only the head job runs
    importq:order:{target}:{key}:held  string  JSON {job, reason}: a failed job holds the line
    importq:dlq                   zset   job id -> last dead letter (ms)
    importq:dlq:{job}             list   dead letters of a job (JSON: record, reason, unit)
    importq:reaper                string lock so one reaper sweeps per interval
    importq:shutdown:{node}:{pid} string set while that worker process shuts down: hand back
    importq:ratelimit...          the shared request windows of the `limits` library
    importq:pipeline...           ordered pipelines of jobs (listed in workers/pipelines.py)
    importq:{target}:{kind}:...   what a sink keeps through workers/target_state.py (its
                                  locks, open things, claims and notes; listed there):
      importq:sourcing_data:start:{agent}:{client}:{operation}  string  one SourcingData
                                  start of a shared operationId at a time (holder, TTL);
                                  its `:wake` list wakes the next unit waiting for it
      importq:sourcing_data:items:{agent}:{client}:{operation}  zset  queue item id -> when
                                  (ms): items of that operation whose id a unit recorded
      importq:blue:transactions:{instance}, importq:blue:instances, importq:blue:skipped:{unit}
                                  Blue's registry of importq's open transactions and skipped
                                  rows (listed in workers/targets/blue/registry.py)
    importq:stats:{target}        hash   running totals for the Prometheus metrics
    importq:recent:{target}:{minute}  hash  records delivered / dead in that minute (epoch
                                  minutes), TTL RECENT_TTL: `importq queues` and its ETA
    importq:consumers:{target}    zset   worker id -> until (ms): live workers consuming the
                                  target's queue, each renewing its own (workers/consumers.py)
    {target}                      list   kombu's Celery queue of the target: unit messages
    importq:breaker:{target}...   a paused target and its probe (listed in workers/breaker.py)
    importq:serve:callbacks       zset   job id -> next try (ms): jobs whose end importq serve
                                  calls back (importq/serve/callbacks.py)
    importq:serve:callback:{job}  hash   url, token, attempts, outcome (:lock while sending)
    importq:serve:idempotency:{token}:{key}  string "{request digest} {job id}", TTL: the job
                                  an Idempotency-Key made (importq/serve/idempotency.py)

A unit id is "{job}:{n}", and a bisected unit's halves are "{unit}.0" and "{unit}.1".
No Lua script spells a key or a prefix: every key comes through KEYS, except those
a script learns only as it runs (the reaper's unit ids, a finished unit's target),
which it builds from a prefix made here and passed as ARGV (`unit("")`, `lease("")`,
`stats("")`, `recent("%s", minute)`). That is fine on one Redis (importq does not
support Redis Cluster).
"""

from __future__ import annotations

import hashlib

PREFIX = "importq:"

JOBS = PREFIX + "jobs"
STAGING = PREFIX + "staging"
WATCH = PREFIX + "watch"
DLQ_INDEX = PREFIX + "dlq"
REAPER_LOCK = PREFIX + "reaper"
SERVE_CALLBACKS = PREFIX + "serve:callbacks"
# A minute's delivered/dead tally outlives the hour `importq queues` reads by a little.
RECENT_TTL = 3600 + 300


def job(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def job_units(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}:units"


def unit(unit_id: str) -> str:
    return f"{PREFIX}unit:{unit_id}"


def payload(unit_id: str) -> str:
    return f"{PREFIX}payload:{unit_id}"


def unreadable_payload(unit_id: str) -> str:
    return f"{payload(unit_id)}:unreadable"


def lease(unit_id: str) -> str:
    return f"{PREFIX}lease:{unit_id}"


def slots(target: str, key: str) -> str:
    return f"{PREFIX}slots:{target}:{key}"


def order(target: str, key: str) -> str:
    return f"{PREFIX}order:{target}:{key}"


def order_hold(target: str, key: str) -> str:
    return f"{PREFIX}order:{target}:{key}:held"


def dead_letters(job_id: str) -> str:
    return f"{PREFIX}dlq:{job_id}"


def shutdown(hostname: str) -> str:
    return f"{PREFIX}shutdown:{hostname}"


def stats(target: str) -> str:
    return f"{PREFIX}stats:{target}"


def recent(target: str, minute: int) -> str:
    """One minute's records delivered and dead-lettered; `minute` is epoch seconds // 60."""
    return f"{PREFIX}recent:{target}:{minute}"


def consumers(target: str) -> str:
    return f"{PREFIX}consumers:{target}"


def serve_callback(job_id: str) -> str:
    return f"{PREFIX}serve:callback:{job_id}"


def serve_idempotency(token: str, key: str) -> str:
    """An API token's Idempotency-Key (hashed: a producer's key may hold any character)."""
    hashed = hashlib.sha256(key.encode()).hexdigest()
    return f"{PREFIX}serve:idempotency:{token}:{hashed}"


def celery_queue(target: str) -> str:
    """kombu's list of the target's waiting messages: the queue name itself (newest left)."""
    return target


def job_of(unit_id: str) -> str:
    """The job id a unit id belongs to."""
    return unit_id.split(":", 1)[0]


def breaker(target: str) -> str:
    return f"{PREFIX}breaker:{target}"


def breaker_failures(target: str) -> str:
    return f"{PREFIX}breaker:{target}:failures"


def breaker_probe(target: str) -> str:
    return f"{PREFIX}breaker:{target}:probe"


def breaker_waiting(target: str) -> str:
    return f"{PREFIX}breaker:{target}:waiting"


def target_key(target: str, kind: str, *name: str) -> str:
    """A key of a target's own state (workers/target_state.py): importq:{target}:{kind}:..."""
    return ":".join((f"{PREFIX}{target}:{kind}", *name))


def wake_list(lock: str) -> str:
    """The list a lock's release leaves a token on for the next waiter."""
    return f"{lock}:wake"
