"""The documented table of importq's own environment variables, and the shape of a row.

Each target declares its own rows (its `Target.settings`); these are the core's. The
README's configuration tables and the deployment files are written from both by
`importq deploy-files`, so the documentation and what a service is given cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass

PER_TARGET = "<TARGET>"  # in a name: one variable per target, e.g. IMPORTQ_RATE_LIMIT_BLUE


@dataclass(frozen=True)
class EnvSetting:
    """One row of the settings table: one environment variable, or a few that go together
    ("A / B"), what it defaults to and what it means."""

    name: str
    default: str
    """As shown to people ("" for none, "(bucket root)" for a described default)."""
    help: str
    secret: bool = False
    """Never logged, never in job state; only the services that read it get it."""
    workers: bool = True
    """Passed to the worker services by the deployment files (False: read elsewhere)."""

    @property
    def names(self) -> tuple[str, ...]:
        """The variables of this row: "A / B" documents two that go together."""
        return tuple(part.strip() for part in self.name.split(" / "))

    def names_for(self, target: str) -> tuple[str, ...]:
        """The variables a worker of `target` reads from this row."""
        suffix = target.upper()
        return tuple(name.replace(PER_TARGET, suffix) for name in self.names)


_S = EnvSetting
CORE: tuple[EnvSetting, ...] = (
    _S("REDIS_URL", "(see below)", "the broker and job-state Redis", workers=False),
    _S("REDIS_SENTINELS", "(none)",
       "`host:port,host:port` of Redis Sentinels: the broker, job state, rate limits and "
       "Flower follow the primary they name through a failover (REDIS_URL is then ignored)",
       workers=False),
    _S("REDIS_SENTINEL_MASTER", "mymaster", "the primary's name the sentinels monitor",
       workers=False),
    _S("REDIS_PASSWORD", "(none)", "with Sentinel: the password of the primary and replicas",
       secret=True, workers=False),
    _S("REDIS_SENTINEL_PASSWORD", "(none)", "with Sentinel: the sentinels' own password",
       secret=True, workers=False),
    _S("IMPORTQ_REPLICA_WAIT_MS", "500 with Sentinel, else 0 (off)",
       "after each claim, remembered remote id, finish and published job, wait this long "
       "for a replica to confirm it (`WAIT 1 <ms>`), so a failover cannot lose it; see "
       "docs/operations.md"),
    _S("IMPORTQ_HOME", "`~/.local/share/importq`",
       "data directory of the embedded Redis and the demo", workers=False),
    _S("IMPORTQ_LEASE_SECONDS", "30",
       "a running unit's lease; a worker dead this long has its unit re-enqueued"),
    _S("IMPORTQ_REAPER_INTERVAL", "5",
       "seconds between reaper sweeps (one sweep across all workers)"),
    _S("IMPORTQ_VISIBILITY_TIMEOUT", "14400",
       "kombu's visibility timeout: the last safety net, longer than any unit"),
    _S("IMPORTQ_MAX_ATTEMPTS", "8", "attempts of a unit before its records are dead-lettered"),
    _S("IMPORTQ_MAX_CRASHES", "5", "worker deaths on one unit before it counts as a poison pill"),
    _S("IMPORTQ_BACKOFF_BASE / IMPORTQ_BACKOFF_MAX", "1 / 300",
       "unit retry backoff (exponential, full jitter), seconds"),
    _S("IMPORTQ_RETRY_GRACE", "60", "a retry message this late is re-published by the reaper"),
    _S("IMPORTQ_RESCUE_SECONDS", "300",
       "a published unit nobody claimed this long is published again (its message may be "
       "lost); each further rescue of it waits twice as long"),
    _S("IMPORTQ_UNIT_TIME_LIMIT", "10800",
       "seconds one run of a unit may take; past it the run stops and counts an attempt"),
    _S("IMPORTQ_MAX_WAIT_SECONDS / IMPORTQ_MAX_WAIT_SECONDS_<TARGET>", "86400",
       "longest wait that costs no attempt (a slot, a turn, someone else's Blue import); then "
       "the unit fails with the reason. A paused target's units have no ceiling"),
    _S("IMPORTQ_BREAKER_FAILURES / IMPORTQ_BREAKER_WINDOW_SECONDS", "3 / 120",
       "target-wide failures (unreachable, 5xx) of this many units within the window pause "
       "the target; 401/403 pause it at once"),
    _S("IMPORTQ_BREAKER_PROBE_SECONDS / IMPORTQ_BREAKER_PROBE_MAX_SECONDS", "30 / 600",
       "a paused target is probed by one unit after this long, the interval doubling up to "
       "the maximum"),
    _S("IMPORTQ_STAGING_TTL", "21600",
       "a job still staging after this long (its producer died) is discarded by the reaper; "
       "one whose units were being sent is cancelled instead, keeping what ran"),
    _S("IMPORTQ_ALLOW_EVICTION", "false",
       "`true` lets workers start on a Redis whose `maxmemory-policy` is not `noeviction` "
       "(they refuse by default)"),
    _S("IMPORTQ_JOB_TTL", "1209600",
       "seconds a finished job's state is kept (14 days); jobs with dead letters stay until "
       "replayed"),
    _S("IMPORTQ_RATE_LIMIT_<TARGET>", "(none)",
       "requests per window for a target across all workers, e.g. "
       "`IMPORTQ_RATE_LIMIT_BLUESHIFT=5/second`; anything else stops the target's workers "
       "from starting"),
    _S("IMPORTQ_DRY_RUN_MAX_ERRORS", "20",
       "errors `importq publish --dry-run` lists before it stops reading", workers=False),
    _S("IMPORTQ_NO_WORKER_SECONDS", "30",
       "once a job has not moved this long with none of its units held, `--wait` checks the "
       "workers' heartbeats for a consumer of the target's queue; if none has one, it says so",
       workers=False),
    _S("IMPORTQ_MAX_QUEUED_UNITS / IMPORTQ_MAX_QUEUED_UNITS_<TARGET>", "0 (off)",
       "backpressure: a producer waits while the target's queue holds this many units",
       workers=False),
    _S("IMPORTQ_SERVE_TOKENS / IMPORTQ_SERVE_TOKENS_FILE", "(none)",
       "`importq serve`'s API tokens, hashed: lines `NAME SHA256 SCOPE TARGETS` (SCOPE: read "
       "or write; `;` between entries in the variable); `importq serve-token NAME` makes one",
       workers=False),
    _S("IMPORTQ_SERVE_ADDRESS / IMPORTQ_SERVE_PORT", "127.0.0.1 / 8080",
       "where `importq serve` listens (TLS is a proxy's job)", workers=False),
    _S("IMPORTQ_SERVE_WORKERS", "1",
       "HTTP server processes of `importq serve` (`--workers`); one speaks HTTP for about 600 "
       "bodies of 1,000 records a second", workers=False),
    _S("IMPORTQ_SERVE_PUBLISHERS", "one per core",
       "publisher processes of each `importq serve` process (`--publishers`): they stage the "
       "bodies, which is CPU-bound", workers=False),
    _S("IMPORTQ_SERVE_MAX_BODY_BYTES", "2147483648",
       "a `POST .../jobs` body over this many bytes (as sent) is refused with 413",
       workers=False),
    _S("IMPORTQ_SERVE_MAX_ERRORS", "20", "bad records a 422 of `importq serve` lists",
       workers=False),
    _S("IMPORTQ_SERVE_CALLBACK_SECRETS", "(none)",
       "the keys job callbacks (`callback_url`) are signed with (HMAC-SHA256), one per token: "
       "`NAME=SECRET` entries, `;` between them; a job of a token without one cannot ask for a "
       "callback", secret=True, workers=False),
    _S("IMPORTQ_SERVE_IDEMPOTENCY_SECONDS", "86400",
       "how long `importq serve` remembers an Idempotency-Key", workers=False),
    _S("IMPORTQ_LOG_FORMAT", "auto", "`json`, `kv`, or auto (JSON lines off a TTY)",
       workers=False),
    _S("FLOWER_BASIC_AUTH", "(none)",
       "Flower's logins, `user:password[,user2:password2]`; required by docker-compose and "
       "by `importq flower` on any non-loopback address", secret=True, workers=False),
    _S("FLOWER_PORT / FLOWER_ADDRESS", "5555 / 127.0.0.1", "where `importq flower` listens",
       workers=False),
    _S("WORKER_CONCURRENCY", "4",
       "processes per worker in docker-compose.yml and the Procfile (one-process targets "
       "always run 1)", workers=False),
    _S("IMPORTQ_LOG_LEVEL", "INFO", "the lowest level logged: DEBUG, INFO, WARNING or ERROR"),
)  # fmt: skip
