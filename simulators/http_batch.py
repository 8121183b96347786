"""In-memory simulator of a generic HTTP batch receiver (a webhook or an internal API).

POST {BASE_PATH}[/<path>] with a JSON array (application/json) or JSON Lines
(application/x-ndjson) of records takes them and answers
{"accepted": n, "errors": [{"index": i, "message": why}, ...]}: a record holding a
value in `refuse_values` is refused on its own, the rest are taken; with
`refuse_whole` such a request is refused as a whole, 422 with the same list, and
nothing is taken. Where the list sits and what its items call the position and
the reason are knobs (`errors_path`, `index_field`, `message_field`).

The ledger keeps every request it took by its idempotency key: a key seen before
takes nothing and gets the first answer again (a replay), so a resend after a
lost answer shows up in `replays`, never in `duplicates`. The same key with
another body is refused with 422, as the IETF idempotency-key draft says.

Faults, like the other simulators': injected ones (`fail_next` of `fail_status`,
and 429 or 503 with Retry-After at `fault_rate`) are answered before anything is
taken; a lost answer (`lose_next`, `lose_answer_rate`) comes after: a gateway's
504 or 502 (`lost_answer`), or the answer held back `stall_seconds` ("stall").
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx

from simulators.http import Reject, SimulatorBase, admin_response, gateway_error, injected_fault
from simulators.scale import Committed, ScaleJob, ScalePlan

BASE_PATH = "/hooks/batch"
# The demo's receiver takes an API key in a header of its own: HTTP_BATCH_AUTH_HEADER at work.
AUTH_HEADER = "X-Api-Key"
FAKE_AUTH_SECRET = "fake-http-batch-key"
ERRORS_PATH = "errors"  # where the simulator lists refused records unless told otherwise
JSON_LINES_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/x-jsonl"})


@dataclass
class SimConfig:
    """Knobs of the simulator; mutable at runtime via configure() or POST /_sim/config."""

    auth_header: str = AUTH_HEADER
    auth_secret: str = FAKE_AUTH_SECRET
    secrets_without_permission: set[str] = field(default_factory=set)  # 403 instead of 401
    idempotency_header: str = "Idempotency-Key"
    errors_path: str = ERRORS_PATH
    index_field: str = "index"
    message_field: str = "message"
    index_base: int = 0
    refuse_values: set[str] = field(default_factory=set)  # a record holding one is refused
    refuse_whole: bool = False  # True: 422 for the whole request, nothing taken
    key_column: str = ""  # a record's ledger key: this field, or else the whole record
    max_body_bytes: int = 1024 * 1024  # nginx's default client_max_body_size: 413 above it
    latency_seconds: float = 0.0  # before every answer, outside the lock
    seed: int | None = None  # of the random faults and lost answers
    # Faults answered before anything is taken: the next N POSTs get fail_status, and
    # fault_rate of the others one of fault_statuses, with Retry-After on 429 and 503.
    fail_next: int = 0
    fail_status: int = 503
    retry_after_seconds: int = 1
    fault_rate: float = 0.0
    fault_statuses: tuple[int, ...] = (429, 503)
    # Answers lost after the request was taken: the next N, and lose_answer_rate of the
    # others; "504" or "502" is a gateway's answer, "stall" the answer stall_seconds late.
    lose_next: int = 0
    lost_answer: str = "504"
    stall_seconds: float = 5.0
    lose_answer_rate: float = 0.0


@dataclass(frozen=True)
class _Taken:
    """One request the receiver took, kept under its idempotency key."""

    digest: str
    path: str
    records: int
    refused: int
    answer: dict[str, Any]


class _RefusedWhole(Reject):
    """A request refused as a whole, its body listing the records that caused it."""

    def __init__(self, refused: int, records: int, listed: dict[str, Any]) -> None:
        super().__init__(422, "Unprocessable", f"{refused} of {records} records are not valid; "
                         "nothing was taken.")  # fmt: skip
        self.listed = listed

    def response(self) -> httpx.Response:
        body = {"title": self.title, "status": self.status, "detail": self.detail}
        return httpx.Response(self.status, json={**body, **self.listed})


def read_records(request: httpx.Request) -> tuple[str, list[Any]]:
    """The body's format and its items, or a Reject saying what is wrong with it."""
    media_type = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    try:
        text = request.content.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Reject(400, "Invalid body", f"The body is not UTF-8: {error.reason}.") from None
    if media_type == "application/json":
        return "json", _json_array(text)
    if media_type in JSON_LINES_TYPES:
        return "jsonl", _json_lines(text)
    detail = f"Send application/json or application/x-ndjson, not {media_type or 'no type'}."
    raise Reject(415, "Unsupported Media Type", detail)


def _json_array(text: str) -> list[Any]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        raise Reject(400, "Invalid JSON", f"The body is not JSON: {error.msg}.") from None
    if not isinstance(items, list):
        raise Reject(400, "Invalid JSON", "The body must be a JSON array of records.")
    return items


def _json_lines(text: str) -> list[Any]:
    items = []
    for number, line in enumerate(text.split("\n"), start=1):  # \n only: JSON may hold U+2028
        if line.strip():
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as error:
                detail = f"Line {number} is not JSON: {error.msg}."
                raise Reject(400, "Invalid JSON Lines", detail) from None
    return items


def nested(dotted: str, value: Any) -> dict[str, Any]:
    """{"a": {"b": value}} for "a.b": the answer with its list where `errors_path` says."""
    for key in reversed(dotted.split(".")):
        value = {key: value}
    return dict(value)


@dataclass
class _Ledger:
    """What the receiver took and saw since the last reset."""

    taken: dict[str, _Taken] = field(default_factory=dict)  # by idempotency key
    unkeyed: list[_Taken] = field(default_factory=list)  # taken without a key
    by_record: Counter[str] = field(default_factory=Counter)  # times each record was taken
    refusals: Counter[int] = field(default_factory=Counter)  # by HTTP status

    def summary(self) -> dict[str, Any]:
        everything = [*self.taken.values(), *self.unkeyed]
        return {
            "requests_taken": len(everything),
            "keys": sorted(self.taken),
            "unkeyed": len(self.unkeyed),
            "paths": dict(Counter(entry.path for entry in everything)),
            "records": sum(entry.records - entry.refused for entry in everything),
            "records_refused": sum(entry.refused for entry in everything),
            "records_by_key": dict(self.by_record),
            "duplicates": sum(1 for count in self.by_record.values() if count > 1),
            "refused": {str(status): n for status, n in sorted(self.refusals.items())},
        }


_STATS = ("requests", "faults", "lost_answers", "replays", "max_records_in_request",
          "max_body_bytes")  # fmt: skip


class HttpBatchSimulator(SimulatorBase):
    """An httpx handler for POST {BASE_PATH}[/path]; thread-safe, so it can serve real HTTP."""

    base_path = BASE_PATH

    def __init__(self, config: SimConfig | None = None) -> None:
        self._lock = threading.Lock()
        self.config = config or SimConfig()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._ledger = _Ledger()
            self._stats: Counter[str] = Counter()  # requests, faults, replays, maxima...
            self._rng = random.Random(self.config.seed)

    def ledger(self) -> dict[str, Any]:
        with self._lock:
            stats = self._stats
            return {
                **self._ledger.summary(),
                "formats": {name: stats[f"format_{name}"] for name in ("json", "jsonl")},
                **{name: stats[name] for name in _STATS},
            }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        route = request.url.path
        if route.startswith("/_sim/"):
            return admin_response(self, request)
        below = route[len(BASE_PATH) :] if route.startswith(BASE_PATH) else None
        if below is None or (below and not below.startswith("/")):
            return Reject(404, "Not Found", f"No receiver at {route}.").response()
        if request.method != "POST":
            return Reject(405, "Method Not Allowed", f"{request.method} is not allowed.").response()
        time.sleep(max(0.0, self.config.latency_seconds))  # before the lock: slow calls overlap
        with self._lock:
            try:
                response, late_by = self._receive(request, below.strip("/"))
            except Reject as reject:
                self._ledger.refusals[reject.status] += 1
                return reject.response()
        time.sleep(late_by)  # taken already; the client may give up waiting for this answer
        return response

    def _receive(self, request: httpx.Request, path: str) -> tuple[httpx.Response, float]:
        self._stats["requests"] += 1
        if (fault := self._injected()) is not None:
            return fault, 0.0
        self._check_credential(request)
        key = request.headers.get(self.config.idempotency_header, "")
        digest = hashlib.sha256(request.content).hexdigest()
        earlier = self._ledger.taken.get(key) if key else None
        if earlier is not None:
            return self._replay(earlier, digest)
        if len(request.content) > self.config.max_body_bytes:
            limit = self.config.max_body_bytes
            detail = f"The body is {len(request.content)} bytes; this receiver takes {limit}."
            raise Reject(413, "Payload Too Large", detail)
        body_format, items = read_records(request)
        self._stats[f"format_{body_format}"] += 1
        taken = self._take(path, digest, items)
        if key:
            self._ledger.taken[key] = taken
        else:
            self._ledger.unkeyed.append(taken)
        self._bump_max("max_records_in_request", len(items))
        self._bump_max("max_body_bytes", len(request.content))
        return self._maybe_lost(httpx.Response(200, json=taken.answer))

    def _injected(self) -> httpx.Response | None:
        """A fault answered before anything is taken (counted), or None."""
        cfg = self.config
        fault: httpx.Response | None
        if cfg.fail_next > 0:
            cfg.fail_next -= 1
            detail = f"Injected {cfg.fail_status}; nothing was taken."
            retry_after = {"Retry-After": str(cfg.retry_after_seconds)}
            fault = Reject(cfg.fail_status, "Simulated fault", detail, retry_after).response()
        else:
            rate, statuses = cfg.fault_rate, cfg.fault_statuses
            fault = injected_fault(self._rng, rate, statuses, cfg.retry_after_seconds)
        self._stats["faults"] += fault is not None
        return fault

    def _check_credential(self, request: httpx.Request) -> None:
        sent = request.headers.get(self.config.auth_header, "")
        if sent and sent in self.config.secrets_without_permission:
            raise Reject(403, "Forbidden", "This credential may not post batches here.")
        if sent != self.config.auth_secret:
            header = self.config.auth_header
            raise Reject(401, "Unauthorized", f"A valid credential is required in {header}.")

    def _replay(self, earlier: _Taken, digest: str) -> tuple[httpx.Response, float]:
        if digest != earlier.digest:
            detail = "This idempotency key was used with another body."
            raise Reject(422, "Idempotency key reused", detail)
        self._stats["replays"] += 1
        return self._maybe_lost(httpx.Response(200, json=earlier.answer))

    def _take(self, path: str, digest: str, items: list[Any]) -> _Taken:
        """Take the acceptable records of one request, or refuse it whole (refuse_whole)."""
        refusals = {n: why for n, item in enumerate(items) if (why := self._why_refused(item))}
        listed = self._listed(refusals)
        if refusals and self.config.refuse_whole:
            raise _RefusedWhole(len(refusals), len(items), listed)
        for position, item in enumerate(items):
            if position not in refusals:
                self._ledger.by_record[self._record_key(path, item)] += 1
        answer = {"accepted": len(items) - len(refusals), **listed}
        return _Taken(digest, path, len(items), len(refusals), answer)

    def _why_refused(self, item: Any) -> str:
        if not isinstance(item, dict):
            return "A record must be a JSON object."
        refuse = self.config.refuse_values
        bad = [f"{k}={v!r}" for k, v in item.items() if isinstance(v, str) and v in refuse]
        return f"Value {', '.join(bad)} is not accepted." if bad else ""

    def _listed(self, refusals: dict[int, str]) -> dict[str, Any]:
        """The answer's list of refused records, where `errors_path` puts it ("": nowhere)."""
        cfg = self.config
        if not cfg.errors_path:
            return {}
        errors = [{cfg.index_field: n + cfg.index_base, cfg.message_field: why}
                  for n, why in sorted(refusals.items())]  # fmt: skip
        return nested(cfg.errors_path, errors)

    def _maybe_lost(self, answer: httpx.Response) -> tuple[httpx.Response, float]:
        cfg = self.config
        roll = cfg.lose_answer_rate > 0 and self._rng.random() < cfg.lose_answer_rate
        if cfg.lose_next <= 0 and not roll:
            return answer, 0.0
        cfg.lose_next = max(0, cfg.lose_next - 1)
        self._stats["lost_answers"] += 1
        if cfg.lost_answer == "stall":
            return answer, cfg.stall_seconds
        return gateway_error(cfg.lost_answer), 0.0

    def _record_key(self, path: str, record: dict[str, Any]) -> str:
        column = self.config.key_column
        if column and column in record:
            return f"{path}/{record[column]}"
        return f"{path}/{json.dumps(record, sort_keys=True, separators=(',', ':'))}"


SIMULATOR = HttpBatchSimulator  # what `importq simulate` serves for this target
EVENT_TYPES = ("signup", "login", "purchase", "refund", "logout")


def client_env(server_url: str) -> dict[str, str]:
    """What a worker needs to post to this simulator, with its default fake credential and
    its answers' list of refused records."""
    url = server_url + BASE_PATH
    return dict(
        HTTP_BATCH_URL=url, HTTP_BATCH_AUTH_HEADER=AUTH_HEADER,
        HTTP_BATCH_AUTH_SECRET=FAKE_AUTH_SECRET, HTTP_BATCH_ERRORS_PATH=ERRORS_PATH,
    )  # fmt: skip


def demo_event(n: int) -> dict[str, Any]:
    """Event n of the demo: what a product sends to an internal analytics API."""
    kind = EVENT_TYPES[n % len(EVENT_TYPES)]
    amounts = {"purchase": 19.9 + n % 50, "refund": -(5.0 + n % 20)}
    at = f"2025-03-{n % 28 + 1:02d}T{n % 24:02d}:00:00Z"
    return {"eventId": f"ev-{n:06d}", "type": kind, "userId": f"u{n % 400:04d}", "at": at,
            "amount": amounts.get(kind)}  # fmt: skip


def demo_job(count: int) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """The demo's job: up to 3,000 events, as a JSON array per request (the default)."""
    return {}, map(demo_event, range(min(count, 3000)))


def summarize(ledger: dict[str, Any]) -> list[str]:
    taken, refused = ledger["records"], ledger["records_refused"]
    batches = f"{ledger['requests_taken']} batches (largest {ledger['max_records_in_request']})"
    resends = f"{ledger['replays']} resends answered from the idempotency ledger"
    return [
        f"{batches}: {taken} records taken, {refused} refused, {ledger['duplicates']} twice",
        f"{ledger['requests']} requests, {ledger['faults']} faults injected, "
        f"{ledger['lost_answers']} answers lost, {resends}",
    ]


def scale_plan(
    sim: HttpBatchSimulator, count: int, stack: ExitStack, *, largest: bool = False
) -> ScalePlan:
    """The scale run's share: one job of `count` events, 500 a request (the default), up to
    12 requests in flight (one per shared worker process of the run). The default is
    `largest` too: a generic receiver has no vendor cap."""
    sim.configure(key_column="eventId")

    def committed() -> Committed:
        ledger = sim.ledger()
        return Committed(len(ledger["records_by_key"]), ledger["duplicates"])

    env = {"HTTP_BATCH_REQUESTS_IN_FLIGHT": "12"}
    job = ScaleJob({}, map(demo_event, range(count)))
    return ScalePlan([job], committed, env, "1 job, requests of 500 records")
