"""`importq doctor`: is Redis fit for a queue, and does each configured target answer?

Every check says what it found and, when something is wrong, how to fix it.
Target checks use the sink's harmless preflight call (a list or read-only call); each
configured target should have a live worker consuming its queue (workers/consumers.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from importq import broker, sentinel
from importq.errors import ConfigError, FinalError, ImportqError, RedisUnavailable, RetryableError
from importq.settings import Settings


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "warn", "fail" or "skip"
    detail: str
    fix: str = ""


def check_redis(settings: Settings) -> list[Check]:
    try:
        choice = broker.choose(settings, start=False)
    except RedisUnavailable as error:
        return [Check("redis", "fail", str(error), "set REDIS_URL or run `importq redis start`")]
    client = broker.quick_client(choice, timeout=3)
    where = choice.describe().removeprefix("redis: ")  # which one, and why this one
    try:
        info = client.info("server")
    except redis.RedisError as error:
        fix = "start Redis or fix REDIS_URL"
        if choice.sentinel:
            fix = f"check {sentinel.SENTINELS} and the primary's name ({sentinel.MASTER})"
        return [Check("redis", "fail", f"{where}: {error}", fix)]
    checks = [Check("redis", "ok", f"{where}, Redis {info.get('redis_version', '?')}")]
    checks += _redis_config(client, settings.allow_eviction)
    if choice.sentinel:  # other candidates do not matter: the sentinels say where it is
        return checks + _replication(choice.sentinel, settings)
    return checks + _other_candidates(settings, choice)


def _replication(group: sentinel.SentinelConfig, settings: Settings) -> list[Check]:
    """The primary the sentinels name now, its replicas and how far each is behind."""
    try:
        found = sentinel.topology(group)
    except redis.RedisError as error:
        return [Check("redis sentinel", "fail", f"could not read the group: {error}",
                      f"check {sentinel.SENTINELS} and that the sentinels answer")]  # fmt: skip
    replicas = ", ".join(f"{r.address} {r.state}, {r.lag_bytes} bytes and {r.lag_seconds} s "
                         "behind" for r in found.replicas) or "none"  # fmt: skip
    detail = (f"primary {found.primary}; replicas: {replicas}; {found.sentinels_up} sentinels "
              f"see it (quorum {found.quorum})")  # fmt: skip
    wait_ms = sentinel.replica_wait_ms(settings)
    online = [r for r in found.replicas if r.state == "online"]
    if not online:
        return [Check("redis sentinel", "warn", detail, "start a replica: without one a "
                      "failover has nothing to promote, and every guarded write waits "
                      f"{wait_ms} ms ({sentinel.REPLICA_WAIT})")]  # fmt: skip
    if found.sentinels_up < max(found.quorum, 2):
        return [Check("redis sentinel", "warn", detail, "run at least three sentinels on "
                      "separate machines, so a majority can agree on a failover")]  # fmt: skip
    return [Check("redis sentinel", "ok", detail)]


def _other_candidates(settings: Settings, chosen: broker.RedisChoice) -> list[Check]:
    """A warning when another Redis answers too: work published on one is invisible on the
    other, and which one a command uses should never be a surprise."""
    others = [c for c in broker.candidates(settings) if not broker.same_server(c.url, chosen.url)]
    if not others:
        return []
    ignored = ", ".join(f"{c.source} at {broker.safe_url(c.url)}" for c in others)
    fix = ("make sure every producer and worker has this REDIS_URL"
           if chosen.source == "REDIS_URL" else
           "stop the one you do not mean (`importq redis stop` for the embedded one), "
           "or set REDIS_URL to say which")  # fmt: skip
    detail = (f"importq uses {chosen.source} at {broker.safe_url(chosen.url)}, but {ignored} "
              "answers too; jobs on one are invisible on the other")  # fmt: skip
    return [Check("redis choice", "warn", detail, fix)]


def _redis_config(client: redis.Redis, allow_eviction: bool) -> list[Check]:
    try:
        aof = client.config_get("appendonly").get("appendonly")
    except redis.RedisError as error:  # managed Redis often refuses CONFIG
        return [Check("redis persistence", "warn", f"could not read the config: {error}",
                      "make sure AOF is on and maxmemory-policy is noeviction")]  # fmt: skip
    checks = [Check("redis AOF", "ok", "appendonly yes")]
    if aof != "yes":
        checks = [Check("redis AOF", "warn", "appendonly no: a restart loses queued work",
                        "run Redis with --appendonly yes")]  # fmt: skip
    refusal = broker.eviction_refusal(client, allow_eviction=False)
    if refusal:  # workers refuse to start on it (unless IMPORTQ_ALLOW_EVICTION)
        status = "warn" if allow_eviction else "fail"
        checks.append(Check("redis eviction", status, refusal, "set maxmemory-policy noeviction"))
    return checks


def check_targets(settings: Settings) -> list[Check]:
    from workers.targets import TARGETS

    return [check_target(name, settings) for name in TARGETS]


def check_target(name: str, settings: Settings) -> Check:
    from workers.targets import get
    from workers.targets.base import Sink

    target = get(name)
    sink = target.sink
    if type(sink).preflight is Sink.preflight:
        return Check(name, "skip", "the vendor offers no harmless call to check credentials with")
    try:
        client = target.client(settings)
    except ConfigError as error:
        return Check(name, "skip", f"not configured: {error}")
    try:
        sink.preflight(client, {})
    except FinalError as error:
        return Check(name, "fail", str(error), "fix the credentials or ids the message names")
    except RetryableError as error:
        return Check(name, "fail", f"not reachable: {error}", "check the URL and the network")
    except ImportqError as error:
        return Check(name, "fail", str(error))
    finally:
        close = getattr(client, "close", None)
        if callable(close):
            close()
    return Check(name, "ok", "credentials accepted")


def check_consumers(settings: Settings) -> list[Check]:
    """Each configured target (its settings complete here) has a live worker consuming it."""
    from workers import consumers
    from workers.targets import TARGETS

    try:
        client = broker.quick_client(broker.choose(settings, start=False), timeout=3)
        checks = []
        for name, target in TARGETS.items():
            if not _configured(target, settings):
                continue
            live = consumers.live(client, name)
            if live:
                checks.append(Check(f"{name} consumers", "ok", ", ".join(live)))
            else:
                checks.append(Check(f"{name} consumers", "warn", "no live worker consumes it",
                                    f"start one: importq worker --targets {name}"))  # fmt: skip
        return checks
    except (ConfigError, redis.RedisError):  # said by the redis check already
        return []


def _configured(target: Any, settings: Settings) -> bool:
    try:
        client = target.client(settings)
    except ConfigError:
        return False
    close = getattr(client, "close", None)
    if callable(close):
        close()
    return True


def run(settings: Settings) -> list[Check]:
    return check_redis(settings) + check_targets(settings) + check_consumers(settings)
