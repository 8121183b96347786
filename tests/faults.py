"""Fault tools for the chaos suite: a stallable TCP proxy and a restartable Redis with AOF.

Both listen on 127.0.0.1 only, on free ports, and stop everything they started
when closed.
"""

from __future__ import annotations

import contextlib
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import redis

from importq import broker

_CHUNK = 65536
_POLL = 0.05


class StallableProxy:
    """Forwards TCP connections from 127.0.0.1:<port> to an upstream (a Redis).

    `stall()` stops forwarding bytes in both directions without closing any socket,
    so both ends see a silent peer (what a network partition looks like); `resume()`
    lets the held bytes through; `close()` drops every connection and the listener.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL)
        self.port: int = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.connections = 0
        self._spawn(self._accept, "proxy-accept")

    @classmethod
    def to_url(cls, url: str) -> StallableProxy:
        """A proxy in front of the Redis at this redis:// URL."""
        client = redis.Redis.from_url(url)
        kwargs = client.connection_pool.connection_kwargs
        client.close()
        return cls(str(kwargs.get("host", "127.0.0.1")), int(kwargs.get("port", 6379)))

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._closed.set()
        self._flowing.set()  # wake the pumps so they notice
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in [self._listener, *sockets]:
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target: object, name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed.is_set():
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
                self.connections += 1
            self._spawn(self._pump, "proxy-up", client, server)
            self._spawn(self._pump, "proxy-down", server, client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while not self._closed.is_set():
                if not self._flowing.wait(_POLL):
                    continue  # stalled: leave the bytes where they are
                readable, _, _ = select.select([source], [], [], _POLL)
                if not readable:
                    continue
                data = source.recv(_CHUNK)
                if not data:
                    break
                while not self._flowing.wait(_POLL):  # stalled in between: hold them
                    if self._closed.is_set():
                        return
                sink.sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class AofRedis:
    """A Redis of its own (AOF, fsync on every write) restartable on the same port and dir."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or broker.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = data_dir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def command(self) -> list[str]:
        binary = shutil.which("redis-server") or broker.server_binary()
        return [binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.data_dir), "--appendonly", "yes",
                "--appendfsync", "always", "--save", "", "--maxmemory-policy", "noeviction",
                "--logfile", str(self.log_path)]  # fmt: skip

    def start(self, timeout: float = 30) -> None:
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_path.read_text(errors="replace")[-2000:] if (
                    self.log_path.exists()) else ""  # fmt: skip
                raise RuntimeError(f"Redis did not start on port {self.port}:\n{tail}")
            time.sleep(0.02)

    def answers(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def signal_stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Send `signum` and wait for the server to exit (SIGTERM: it flushes the AOF first)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def restart(self, signum: int = signal.SIGTERM, down_seconds: float = 0.0) -> None:
        """Stop it with `signum`, stay down a moment, start it again on the same port and dir."""
        self.signal_stop(signum)
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        self.signal_stop(signal.SIGTERM, timeout=10)
