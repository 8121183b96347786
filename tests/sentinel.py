"""A Redis Sentinel group of the test's own: a primary, a replica and three sentinels.

All are `redis-server` processes (the sentinels with `--sentinel`) on free ports of
127.0.0.1, with their files in a temporary directory. `kill_primary()` is the failover
the tests cause: SIGKILL of whichever server is the primary now, then a wait until the
sentinels have promoted the other. `restart_old()` brings the killed one back on its
address, as a restarted Redis comes back: with the RDB its last sync left (stale), a
primary for about 10 s until the sentinels turn it into a replica of the new one (and a
sync wipes it), so the group can fail over again. `stop()` stops every process it started.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from importq import broker

MASTER = "importq-test"
# A primary silent this long is down (SDOWN); a quorum of 2 agrees (ODOWN). At 1 s, a
# sentinel starved of CPU on a loaded 2-core machine once took the new primary and the
# restarted old one for down at the same moment and failed over to the old one (a stale
# RDB): a second failover the scenario never meant.
DOWN_AFTER_MS = 3000
FAILOVER_TIMEOUT_MS = 4000  # an election that stalls is tried again after this long


def wait_for(what: str, check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the Sentinel group: {what} did not happen within {timeout:.0f} s")
        time.sleep(0.05)


class SentinelGroup:
    def __init__(self, root: Path, password: str = "", sentinel_password: str = "") -> None:
        """`password`: the primary's and replica's (requirepass, masterauth); `sentinel_password`:
        the sentinels' own (requirepass in their config)."""
        self.root = root
        self.password, self.sentinel_password = password, sentinel_password
        self.data_ports = [broker.free_port(), broker.free_port()]
        self.sentinel_ports = [broker.free_port() for _ in range(3)]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.killed: int | None = None
        self.failovers = 0

    # -- what clients are given ----------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """The settings that point importq at this group."""
        sentinels = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        env = {"REDIS_SENTINELS": sentinels, "REDIS_SENTINEL_MASTER": MASTER}
        if self.password:
            env["REDIS_PASSWORD"] = self.password
        if self.sentinel_password:
            env["REDIS_SENTINEL_PASSWORD"] = self.sentinel_password
        return env

    def primary_port(self) -> int:
        """The primary the sentinels name now (the first sentinel that answers)."""
        for port in self.sentinel_ports:
            client = self.client(port)
            try:
                _, primary = client.sentinel_get_master_addr_by_name(MASTER)
                return int(primary)
            except (redis.RedisError, OSError, TypeError):
                continue
            finally:
                client.close()
        raise redis.ConnectionError("no sentinel of the group answers")

    def client(self, port: int) -> redis.Redis:
        """A client of one server of the group (a data server or a sentinel), logged in."""
        password = self.sentinel_password if port in self.sentinel_ports else self.password
        return redis.Redis(port=port, password=password or None, socket_timeout=2,
                           decode_responses=True)  # fmt: skip

    # -- start, fail over, stop --------------------------------------------------------------

    def start(self) -> None:
        primary, replica = self.data_ports
        self._data(primary)
        self._data(replica, "--replicaof", "127.0.0.1", str(primary))
        for port in self.sentinel_ports:
            self._sentinel(port, primary)
        wait_for("the replica in sync", lambda: self._in_sync(replica))
        wait_for("three sentinels that see the replica and each other", self._watched)
        self.wait_settled()

    def wait_settled(self) -> None:
        """Wait until the primary sees every other running data server as an online replica
        (a replica resyncing, `wait_bgsave`, would make `importq doctor` warn)."""

        def settled() -> bool:
            info = self.client(self.primary_port()).info("replication")
            replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
            online = {int(v["port"]) for v in replicas if v.get("state") == "online"}
            running = {port for port in self.data_ports if port != self.killed}
            return online == running - {self.primary_port()}

        wait_for("the replica online at the primary", settled, timeout=60)

    def kill_primary(self) -> int:
        """SIGKILL the primary; return once the sentinels name the other server primary."""
        old = self.primary_port()
        self.processes[old].send_signal(signal.SIGKILL)
        self.processes[old].wait(timeout=10)
        self.killed = old
        new = next(port for port in self.data_ports if port != old)
        wait_for("the failover", lambda: self.primary_port() == new and self._is_primary(new),
                 timeout=60)  # fmt: skip
        self.failovers += 1
        return new

    def restart_old(self, *, in_sync: bool = True) -> None:
        """Start the killed server again with the RDB of its last sync: the sentinels make it
        the new replica about 10 s later; until then it is a stale primary on the old
        address."""
        if self.killed is None:
            return
        port, self.killed = self.killed, None
        self._data(port)
        if in_sync:
            wait_for("the old primary back as a replica", lambda: self._in_sync(port), timeout=60)

    def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        for process in self.processes.values():
            process.wait(timeout=10)
        self.processes.clear()

    # -- the parts -------------------------------------------------------------------------------

    def _data(self, port: int, *extra: str) -> None:
        directory = self.root / f"redis-{port}"
        directory.mkdir(parents=True, exist_ok=True)
        command = [broker.server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                   "--dir", str(directory), "--save", "", "--appendonly", "no",
                   "--maxmemory-policy", "noeviction", "--logfile", "log", *extra]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password, "--masterauth", self.password]
        self.processes[port] = broker.launch(command, port, self.password)

    def _sentinel(self, port: int, primary: int) -> None:
        directory = self.root / f"sentinel-{port}"
        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / "sentinel.conf"  # the sentinel rewrites it: writable, its own
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {directory}\nlogfile sentinel.log\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n"
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER} 1\n"
            + (f"sentinel auth-pass {MASTER} {self.password}\n" if self.password else "")
            + (f"requirepass {self.sentinel_password}\n" if self.sentinel_password else "")
        )
        command = [broker.server_binary(), str(conf), "--sentinel"]
        self.processes[port] = broker.launch(command, port, self.sentinel_password)

    def _is_primary(self, port: int) -> bool:
        return self.client(port).info("replication").get("role") == "master"

    def _in_sync(self, port: int) -> bool:
        info = self.client(port).info("replication")
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def _watched(self) -> bool:
        for port in self.sentinel_ports:
            state = self.client(port).sentinel_master(MASTER)
            if int(state.get("num-other-sentinels", 0)) < 2 or int(state.get("num-slaves", 0)) < 1:
                return False
        return True


@pytest.fixture(scope="module")
def sentinel_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """A group of the module's own (about 5 s to start); a test that fails it over comes last."""
    group = SentinelGroup(tmp_path_factory.mktemp("sentinel"))
    try:
        group.start()
        yield group
    finally:
        group.stop()


@pytest.fixture
def fresh_sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    """A group of the test's own, for tests that fail it over many times."""
    group = SentinelGroup(tmp_path / "sentinel")
    try:
        group.start()
        yield group
    finally:
        group.stop()
