"""Serve httpx-style simulator handlers over real HTTP, plus the helpers those handlers share."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Protocol, cast

import httpx

Handler = Callable[[httpx.Request], httpx.Response]

# The server frames every response itself (Content-Length), so the handler's framing must not leak.
_SKIP_RESPONSE_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive"}
)
# serve_forever checks for shutdown this often; small so stop() returns quickly in tests.
_POLL_INTERVAL = 0.05


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The stdlib default listen backlog of 5 is small for bursts of workers connecting at once.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: Handler) -> None:
        super().__init__(address, _RequestHandler)
        self.app = app
        self.base_url = f"http://{address[0]}:{self.server_address[1]}"
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients dropping keep-alive connections is normal; only real bugs deserve a traceback.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]

    def close_connections(self) -> None:
        """Shut idle keep-alive sockets so their daemon threads end with the server."""
        with self.connections_lock:
            open_sockets = list(self.connections)
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; Nagle plus delayed ACKs would add ~40 ms each.
    disable_nagle_algorithm = True

    @property
    def _server(self) -> _Server:
        return cast(_Server, self.server)

    def setup(self) -> None:
        super().setup()
        with self._server.connections_lock:
            self._server.connections.add(self.connection)

    def finish(self) -> None:
        with self._server.connections_lock:
            self._server.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: per-request lines on stderr drown test and demo output."""

    def _dispatch(self) -> None:
        request = self._to_httpx()
        try:
            response = self._server.app(request)
            body = response.read()
        except Exception as exc:
            # A handler bug must still produce a framed response or the client's connection hangs.
            response = httpx.Response(500, json={"title": "Simulator error", "detail": repr(exc)})
            body = response.content
        self._write(response, body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def _to_httpx(self) -> httpx.Request:
        body = self._read_body()
        # The body is de-chunked above, so the chunked framing header no longer describes it.
        headers = [(k, v) for k, v in self.headers.items() if k.lower() != "transfer-encoding"]
        url = self._server.base_url + self.path
        return httpx.Request(self.command, url, headers=headers, content=body)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # Skip optional trailers up to the blank line that ends the message.
                while self.rfile.readline().strip():
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()  # the CRLF that closes each chunk

    def _write(self, response: httpx.Response, body: bytes) -> None:
        self.send_response(response.status_code)
        for name, value in response.headers.multi_items():
            if name.lower() not in _SKIP_RESPONSE_HEADERS:
                self.send_header(name, value)
        # Always framed by length so HTTP/1.1 keep-alive clients know where the response ends.
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)


class SimServer:
    """A running server; stop it with stop() or by leaving its `with` block."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._stopped = False
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name=f"sim-http-{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return self._server.base_url

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SimServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(handler: Handler, host: str = "127.0.0.1", port: int = 0) -> SimServer:
    """Start serving `handler` in a background thread; port 0 picks a free port."""
    return SimServer(_Server((host, port), handler))


# --- helpers shared by simulator handlers ---------------------------------------------------


class Reject(Exception):
    """An error answer raised from deep inside a handler and turned into a problem response."""

    def __init__(
        self, status: int, title: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.headers = status, title, detail, headers

    def response(self) -> httpx.Response:
        return problem(self.status, self.title, self.detail, self.headers)


def problem(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    """A JSON error in the ASP.NET ProblemDetails shape the vendors answer with."""
    body = {"title": title, "status": status, "detail": detail}
    return httpx.Response(status, json=body, headers=headers)


def int_param(request: httpx.Request, name: str, default: int) -> int:
    raw = request.url.params.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise Reject(400, "Bad Request", f"Query parameter '{name}' must be a non-negative int.")
    return int(raw)


def injected_fault(
    rng: random.Random, rate: float, statuses: tuple[int, ...], retry_after: int
) -> httpx.Response | None:
    """Roll for a transient fault; 429 and 503 carry Retry-After like real gateways do."""
    if not statuses or rng.random() >= rate:
        return None
    status = rng.choice(statuses)
    headers = {"Retry-After": str(retry_after)} if status in (429, 503) else None
    return problem(status, "Simulated fault", f"Injected {status}; nothing was done.", headers)


GATEWAY_ERRORS = {
    502: ("Bad Gateway", "The upstream server answered badly; the request may have been applied."),
    504: ("Gateway Timeout", "The upstream server did not answer in time."),
}


def gateway_error(status: int | str) -> httpx.Response:
    """What a gateway answers when the application behind it took the request but its
    answer was lost on the way back: the `lost_answer` knob of the simulators."""
    code = int(status)
    if code not in GATEWAY_ERRORS:
        raise ValueError(f"a lost answer is a 502 or a 504, not {status!r}")
    title, detail = GATEWAY_ERRORS[code]
    return problem(code, title, detail)


def config_json(config: Any) -> dict[str, Any]:
    """A config dataclass as JSON: sets become sorted lists, tuples lists."""

    def plain(value: Any) -> Any:
        if isinstance(value, set):
            return sorted(value)
        return list(value) if isinstance(value, tuple) else value

    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


class SimulatorBase:
    """What every vendor simulator shares: a lock, a seeded random source for fault
    injection, runtime configuration, and running maxima in its ledger."""

    config: Any
    _lock: threading.Lock
    _rng: random.Random
    _stats: Any  # a Counter of ledger figures

    def configure(self, **updates: Any) -> None:
        with self._lock:
            update_config(self.config, updates)
            if "seed" in updates:
                self._rng = random.Random(self.config.seed)

    def _bump_max(self, key: str, value: int) -> None:
        self._stats[key] = max(self._stats[key], value)


def update_config(config: Any, updates: dict[str, Any]) -> None:
    """Apply all updates to a config dataclass or none; JSON lists become sets/tuples as needed."""
    unknown = sorted(set(updates) - {f.name for f in dataclasses.fields(config)})
    if unknown:
        raise ValueError(f"Unknown config field(s): {', '.join(unknown)}")
    converted: dict[str, Any] = {}
    for name, value in updates.items():
        current = getattr(config, name)
        if isinstance(current, set):
            value = set(value)
        elif isinstance(current, tuple):
            value = tuple(value)
        converted[name] = value
    for name, value in converted.items():
        setattr(config, name, value)


class Controllable(Protocol):
    """What the /_sim admin routes need from a simulator."""

    @property
    def config(self) -> Any: ...

    def ledger(self) -> dict[str, Any]: ...

    def reset(self) -> None: ...

    def configure(self, **updates: Any) -> None: ...


def admin_response(sim: Controllable, request: httpx.Request) -> httpx.Response:
    """Answer GET /_sim/ledger, POST /_sim/reset, GET|POST /_sim/config; no auth on purpose."""
    route = (request.method, request.url.path.rstrip("/"))
    if route == ("GET", "/_sim/ledger"):
        return httpx.Response(200, json=sim.ledger())
    if route == ("POST", "/_sim/reset"):
        sim.reset()
        return httpx.Response(200, json={"reset": True})
    if route == ("GET", "/_sim/config"):
        return httpx.Response(200, json=config_json(sim.config))
    if route == ("POST", "/_sim/config"):
        try:
            updates = json.loads(request.content or b"{}")
            if not isinstance(updates, dict):
                raise ValueError("Body must be a JSON object of config fields.")
            sim.configure(**updates)
        except (ValueError, TypeError) as exc:
            return problem(400, "Invalid config", str(exc))
        return httpx.Response(200, json=config_json(sim.config))
    return problem(404, "Not Found", f"No admin route {request.method} {request.url.path}.")
