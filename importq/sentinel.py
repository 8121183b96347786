"""Redis behind Sentinel: REDIS_SENTINELS and REDIS_SENTINEL_MASTER, read once, in every form.

The broker (kombu's `sentinel://` transport), the job-state client (redis-py's
`Sentinel(...).master_for`), the rate limiter (the `limits` library's
`redis+sentinel://` storage) and Flower (the app's broker settings) each take the
same group of sentinels in their own form; this module writes each from one
`SentinelConfig`, so they cannot disagree about where the primary is.

Two passwords: REDIS_PASSWORD for the primary and its replicas, REDIS_SENTINEL_PASSWORD
for the sentinels themselves (often none). Neither is ever part of `url`, the name
commands print and log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from redis.sentinel import Sentinel, SentinelManagedConnection

from importq.errors import ConfigError
from importq.settings import Secret, Settings

SENTINELS = "REDIS_SENTINELS"
MASTER = "REDIS_SENTINEL_MASTER"
PASSWORD = "REDIS_PASSWORD"
SENTINEL_PASSWORD = "REDIS_SENTINEL_PASSWORD"
REPLICA_WAIT = "IMPORTQ_REPLICA_WAIT_MS"
DEFAULT_MASTER = "mymaster"  # the name in Redis's own sentinel.conf and most charts
DEFAULT_PORT = 26379
# How long a guarded write waits for a replica to confirm it (WAIT 1 <ms>): a round trip
# to a healthy replica takes well under a millisecond; a dead one costs this much a write.
DEFAULT_WAIT_MS = 500


class PrimaryConnection(SentinelManagedConnection):
    """A connection to the group's primary that asks the sentinels again on every reconnect.

    redis-py's own reconnects after a command failed mid-flight (and its retries) go back
    to the address the connection had (redis/redis-py#3874): after a failover, that is the
    old primary's. When the old primary comes back on it (a restart, with the data of its
    last sync or none), it is a writable primary for about 10 s until the sentinels demote
    it and wipe it with a sync: every write it took is lost, and what it answers is stale.
    That is how issue 16's unit lost its claim and its remembered queue item id.
    """

    def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if self._sock:
            return
        if retry_socket_connect:  # redis-py's reconnect: ask the sentinels where to go
            self.connect()  # type: ignore[no-untyped-call]
        else:  # connect_to(): the address the sentinels just named
            super().connect_check_health(check_health, retry_socket_connect=False)


@dataclass(frozen=True)
class NamedPrimary:
    """The server the sentinels name the primary: its run id ("" for a few seconds after a
    failover, until they have asked it) and its address."""

    run_id: str
    address: str

    def is_server(self, run_id: str, address: str) -> bool:
        """Whether a server with this run id, reached at this address, is that primary."""
        return run_id == self.run_id if self.run_id else address == self.address


@dataclass(frozen=True)
class SentinelConfig:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    password: Secret
    sentinel_password: Secret
    db: int = 0

    @property
    def url(self) -> str:
        """The group's name in the `limits` library's form, with no password: what commands
        print, what the rate limiter is given, and how two configurations are compared."""
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.master}"

    def kombu_url(self) -> str:
        """The broker URL: one `sentinel://` per sentinel, `;` between, none trailing (a
        trailing one makes kombu add localhost). The password in it is the primary's."""
        auth = f":{self.password.reveal()}@" if self.password else ""
        urls = (f"sentinel://{auth}{host}:{port}/{self.db}" for host, port in self.sentinels)
        return ";".join(urls)

    def transport_options(self) -> dict[str, Any]:
        """What kombu's Sentinel channel needs beside the URL."""
        return {"master_name": self.master, "sentinel_kwargs": self.sentinel_kwargs()}

    def sentinel_kwargs(self, timeout: float = 5.0) -> dict[str, Any]:
        """How to talk to the sentinels themselves (not to the primary)."""
        password = self.sentinel_password.reveal() or None
        return {"password": password, "socket_timeout": timeout, "socket_connect_timeout": timeout}

    def sentinel(self, timeout: float = 5.0) -> Sentinel:
        return Sentinel(list(self.sentinels), sentinel_kwargs=self.sentinel_kwargs(timeout),
                        socket_timeout=timeout, socket_connect_timeout=timeout)  # fmt: skip

    def master_client(self, **kwargs: Any) -> redis.Redis:
        """A client of the current primary that follows a failover: each new connection asks
        the sentinels where the primary is, and a demoted one is dropped (READONLY)."""
        password = self.password.reveal() or None
        client: redis.Redis = self.sentinel().master_for(
            self.master,
            password=password,
            db=self.db,
            connection_class=PrimaryConnection,
            **kwargs,
        )
        return client

    def named_primary(self, timeout: float = 3.0) -> NamedPrimary | None:
        """The primary as the first sentinel that answers names it (None when none does)."""
        sentinels = self.sentinel(timeout).sentinels
        try:
            for one in sentinels:
                try:
                    state = one.sentinel_master(self.master)
                except redis.RedisError:
                    continue
                if isinstance(state, dict) and state.get("ip"):
                    address = f"{state['ip']}:{state.get('port')}"
                    return NamedPrimary(str(state.get("runid") or ""), address)
            return None
        finally:
            for one in sentinels:
                one.close()

    def limits_options(self) -> dict[str, Any]:
        """Keyword arguments of the `limits` library's RedisSentinelStorage beside `url`.

        Replicas are not read from: a window read a few writes behind lets a burst through.
        """
        return {
            "password": self.password.reveal() or None,
            "sentinel_kwargs": self.sentinel_kwargs(),
            "use_replicas": False,
            "db": self.db,
        }


def config(settings: Settings) -> SentinelConfig | None:
    """The Sentinel group REDIS_SENTINELS names, or None when it is unset."""
    raw = settings.get(SENTINELS).strip()
    if not raw:
        return None
    sentinels = tuple(_address(entry.strip(), raw) for entry in raw.split(",") if entry.strip())
    master = settings.get(MASTER, DEFAULT_MASTER).strip()
    return SentinelConfig(sentinels, master, settings.secret(PASSWORD),
                          settings.secret(SENTINEL_PASSWORD))  # fmt: skip


def _address(entry: str, raw: str) -> tuple[str, int]:
    host, sep, port = entry.rpartition(":")
    if not sep:
        return entry, DEFAULT_PORT
    if host and port.isdigit() and 0 < int(port) < 65536:
        return host.strip("[]"), int(port)
    raise ConfigError(
        f"{SENTINELS}={raw!r}: {entry!r} is not host:port; write the sentinels as "
        "host:port,host:port (port 26379 when left out)"
    )


def replica_wait_ms(settings: Settings, client: redis.Redis | None = None) -> int:
    """Milliseconds a guarded write waits for one replica: 0 (off) without Sentinel.

    With `client`, at most half its socket timeout: a WAIT that outlasted the timeout
    would be retried, and with it the write before it.
    """
    default = DEFAULT_WAIT_MS if config(settings) else 0
    wait_ms = settings.integer(REPLICA_WAIT, default, maximum=60_000)
    timeout = client.connection_pool.connection_kwargs.get("socket_timeout") if client else None
    return min(wait_ms, int(float(timeout) * 500)) if timeout else wait_ms


@dataclass(frozen=True)
class Replica:
    address: str
    state: str
    lag_bytes: int
    lag_seconds: int


@dataclass(frozen=True)
class Topology:
    """The group as the sentinels and the primary see it, for `importq doctor`."""

    primary: str
    replicas: tuple[Replica, ...]
    sentinels_up: int
    quorum: int


def topology(group: SentinelConfig) -> Topology:
    """Ask a sentinel for the primary and the primary for its replicas and their lag.

    Raises redis.RedisError when no sentinel answers or the primary does not.
    """
    sentinel = group.sentinel(timeout=3.0)
    host, port = sentinel.discover_master(group.master)
    state = _master_state(sentinel, group.master)
    primary = group.master_client(socket_timeout=3.0, socket_connect_timeout=3.0)
    try:
        info = primary.info("replication")
    finally:
        primary.close()
    offset = int(info.get("master_repl_offset", 0))
    replicas = tuple(
        Replica(f"{entry.get('ip')}:{entry.get('port')}", str(entry.get("state", "?")),
                max(0, offset - int(entry.get("offset", 0))), int(entry.get("lag", 0)))
        for name, entry in sorted(info.items())
        if name.startswith("slave") and isinstance(entry, dict)
    )  # fmt: skip
    others = int(state.get("num-other-sentinels", 0))
    return Topology(f"{host}:{port}", replicas, others + 1, int(state.get("quorum", 0)))


def _master_state(sentinel: Sentinel, master: str) -> dict[str, Any]:
    """SENTINEL MASTER from the first sentinel that answers ({} when none does)."""
    for one in sentinel.sentinels:
        try:
            state = one.sentinel_master(master)
            if isinstance(state, dict):
                return state
        except redis.RedisError:
            continue
    return {}
