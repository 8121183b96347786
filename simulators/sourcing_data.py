"""In-memory simulator of the ASOL DataService SourcingData v2 publish API, with fault injection."""

from __future__ import annotations

import json
import random
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from simulators.http import (
    Reject,
    SimulatorBase,
    admin_response,
    gateway_error,
    injected_fault,
    int_param,
    problem,
)
from simulators.scale import Committed, ScaleJob, ScalePlan

BASE_PATH = "/api/asol/ds"
FAKE_TOKEN = "fake-sourcing-token"
KINDS = ("list", "start", "append", "status", "cancel")
STATUSES = ("Pending", "Completed", "Success", "Failed", "Canceled")
OPEN_STATUSES = ("Pending", "Completed")
_METHODS = {"list": "GET", "start": "POST", "append": "POST", "status": "GET", "cancel": "DELETE"}
_ROUTE = re.compile(
    rf"^{BASE_PATH}/api/v2/SourcingData/EnqueueData"
    r"(?:/(?P<start>start)|/(?P<kind>append|status|cancel)/(?P<item>[^/]+))?/?$",
    re.IGNORECASE,  # ASP.NET routing is case-insensitive
)


@dataclass
class SimConfig:
    """Knobs of the simulator; mutable at runtime via configure() or POST /_sim/config."""

    token: str = FAKE_TOKEN
    forbidden_tokens: set[str] = field(default_factory=set)
    agents: set[str] = field(default_factory=lambda: {"demo-agent"})
    max_records_per_request: int = 500
    max_records_per_item: int = 4000
    max_item_bytes: int = 4_000_000
    sync_threshold: int = 500
    processing_seconds: float = 0.05
    latency_seconds: float = 0.0
    fault_rate: float = 0.0
    fault_statuses: tuple[int, ...] = (429, 502, 503, 504)
    retry_after_seconds: int = 1
    seed: int | None = None
    poison_record_ids: set[str] = field(default_factory=set)
    # Lost answers: the next N requests of a kind ("start", "append", "cancel"...) are
    # applied, then a gateway answers `lost_answer` ("502" or "504") instead of the vendor.
    lose_next: dict[str, int] = field(default_factory=dict)
    lost_answer: str = "504"


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _record_size(record: dict[str, Any]) -> int:
    return len(json.dumps(record, separators=(",", ":")))


@dataclass(eq=False)  # identity semantics: items are compared as objects, not by content
class _QueueItem:
    queue_item_id: str
    operation_id: str
    agent_id: str
    client_id: str | None
    created_on: datetime
    records: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0
    status: str = "Pending"
    completed_on: datetime | None = None
    finished_on: datetime | None = None
    due: float = 0.0  # monotonic time at which a Completed item gets processed
    error_message: str | None = None

    def body(self) -> dict[str, Any]:
        return {
            # The doc's v2 still returns sourceId; a stable per-agent GUID stands in for it.
            "sourceId": str(uuid.uuid5(uuid.NAMESPACE_URL, self.agent_id)),
            "queueItemId": self.queue_item_id,
            "operationId": self.operation_id,
            "createdOn": _iso(self.created_on),
            "completedOn": _iso(self.completed_on),
            "finishedOn": _iso(self.finished_on),
            "status": self.status,
            # The doc shows unset flags as null rather than false.
            "wasSuccess": True if self.status == "Success" else None,
            "wasFailure": True if self.status in ("Failed", "Canceled") else None,
            "errorMessage": self.error_message,
        }


def _parse_chunk(content: bytes) -> tuple[list[dict[str, Any]], bool]:
    try:
        payload = json.loads(content or b"null")
    except ValueError as exc:
        raise Reject(400, "Invalid JSON", f"Request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("items"), list):
        raise Reject(400, "Invalid body", "Body must be a JSON object with an 'items' array.")
    incomplete = payload.get("incompleteData") or False
    if not isinstance(incomplete, bool):
        raise Reject(400, "Invalid body", "'incompleteData' must be a boolean.")
    for index, record in enumerate(payload["items"]):
        _check_record(index, record)
    return payload["items"], incomplete


def _check_record(index: int, record: object) -> None:
    where = f"items[{index}]"
    if not isinstance(record, dict):
        raise Reject(400, "Invalid record", f"{where} must be a JSON object.")
    for name in ("entityId", "recordId"):
        if not isinstance(record.get(name), str) or not record[name]:
            raise Reject(400, "Invalid record", f"{where}.{name} is required and must be a string.")
    if record.get("data") is not None and record.get("fields") is not None:
        raise Reject(400, "Invalid record", f"{where}: only one of 'data' or 'fields' may be set.")


class SourcingDataSimulator(SimulatorBase):
    """An httpx handler (MockTransport or serve()) that behaves like the vendor's v2 endpoints."""

    base_path = BASE_PATH

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self._lock = threading.Lock()
        self._rng = random.Random(self.config.seed)
        self._items: dict[str, _QueueItem] = {}
        self._waiting: list[_QueueItem] = []  # Completed items in completion order
        self._open: Counter[str] = Counter()  # open items per operationId
        self._commits: Counter[str] = Counter()
        self._kinds: Counter[str] = Counter()
        self._stats: Counter[str] = Counter()
        self._recent: deque[float] = deque()  # request times within the last second
        self._span = (0.0, 0.0)  # first and last request (monotonic seconds)

    def reset(self) -> None:
        with self._lock:
            for state in (self._items, self._open, self._commits, self._kinds, self._stats):
                state.clear()
            self._waiting.clear()
            self._recent.clear()
            self._span = (0.0, 0.0)
            self._rng = random.Random(self.config.seed)

    def ledger(self) -> dict[str, Any]:
        with self._lock:
            self._advance()
            statuses = Counter(item.status for item in self._items.values())
            return {
                "commits": dict(self._commits),
                "committed_records": sum(self._commits.values()),
                "duplicates": sum(1 for count in self._commits.values() if count > 1),
                "requests": self._stats["requests"],
                "max_requests_per_second": self._stats["max_requests_per_second"],
                "requests_span_seconds": self._span[1] - self._span[0],
                "max_records_in_request": self._stats["max_records_in_request"],
                "max_records_in_item": self._stats["max_records_in_item"],
                "max_item_bytes": self._stats["max_item_bytes"],
                "faults": self._stats["faults"],
                "lost_answers": self._stats["lost_answers"],
                "items": {status: statuses[status] for status in STATUSES},
                "requests_by_kind": {kind: self._kinds[kind] for kind in KINDS},
                "max_open_items_per_operation": self._stats["max_open_items_per_operation"],
                "twice_items": self._twice_items(),
            }

    def _twice_items(self) -> list[dict[str, Any]]:
        """The committed items holding a record committed more than once: the evidence a
        double commit leaves (which items, when each was opened and completed)."""
        twice = {key for key, count in self._commits.items() if count > 1}
        if not twice:
            return []
        return [
            {**item.body(), "records": len(item.records),
             "first_record": item.records[0]["recordId"] if item.records else None}
            for item in self._items.values()
            if item.status == "Success"
            and any(f"{r['entityId']}/{r['recordId']}" in twice for r in item.records)
        ]  # fmt: skip

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/_sim/"):
            return admin_response(self, request)
        match = _ROUTE.match(path)
        if match is None:
            return problem(404, "Not Found", f"No route for {request.method} {path}.")
        kind = "start" if match["start"] else (match["kind"] or "list").lower()
        if request.method != _METHODS[kind]:
            return problem(405, "Method Not Allowed", f"{request.method} is not allowed here.")
        if self.config.latency_seconds > 0:
            # Outside the lock so concurrent slow calls overlap like against the real service.
            time.sleep(self.config.latency_seconds)
        with self._lock:
            try:
                response = self._vendor(kind, match["item"], request)
            except Reject as reject:
                return reject.response()
            return self._lose(kind, response)

    def _lose(self, kind: str, response: httpx.Response) -> httpx.Response:
        """The vendor's answer, or a gateway's error in its place once the request was applied."""
        left = self.config.lose_next.get(kind, 0)
        if left <= 0 or not response.is_success:
            return response
        self.config.lose_next = {**self.config.lose_next, kind: left - 1}
        self._stats["lost_answers"] += 1
        return gateway_error(self.config.lost_answer)

    def _count_rate(self, now: float) -> None:
        """The most requests seen in any one-second window (checks shared rate limits)."""
        self._span = (self._span[0] or now, now)
        self._recent.append(now)
        while now - self._recent[0] >= 1.0:
            self._recent.popleft()
        self._bump_max("max_requests_per_second", len(self._recent))

    def _vendor(self, kind: str, item_id: str | None, request: httpx.Request) -> httpx.Response:
        self._advance()
        self._stats["requests"] += 1
        self._kinds[kind] += 1
        self._count_rate(time.monotonic())
        cfg = self.config
        fault = injected_fault(
            self._rng, cfg.fault_rate, cfg.fault_statuses, cfg.retry_after_seconds
        )
        if fault is not None:
            self._stats["faults"] += 1
            return fault
        self._authorize(request)
        agent = self._agent(request.url.params.get("agentId"))
        client = request.url.params.get("clientId")
        if kind == "list":
            return self._list(request, agent, client)
        if agent is None:
            raise Reject(400, "Bad Request", "Query parameter 'agentId' is required.")
        if kind == "start":
            return self._start(request, agent, client)
        item = self._find(item_id or "", agent)
        if kind == "append":
            return self._append(request, item)
        if kind == "status":
            return httpx.Response(200, json=item.body())
        return self._cancel(item)

    def _authorize(self, request: httpx.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        challenge = {"WWW-Authenticate": "Bearer"}
        if scheme.lower() != "bearer" or not token:
            raise Reject(401, "Unauthorized", "A bearer token is required.", challenge)
        if token in self.config.forbidden_tokens:
            raise Reject(403, "Forbidden", "The token may not publish data.")
        if token != self.config.token:
            raise Reject(401, "Unauthorized", "The bearer token is not valid.", challenge)

    def _agent(self, agent_id: str | None) -> str | None:
        if not agent_id:
            return None
        if agent_id not in self.config.agents:
            raise Reject(404, "Agent not found", f"Integration agent '{agent_id}' was not found.")
        return agent_id

    def _find(self, item_id: str, agent: str) -> _QueueItem:
        item = self._items.get(item_id)
        if item is None or item.agent_id != agent:
            raise Reject(404, "Queue-item not found", f"Queue-item '{item_id}' was not found.")
        return item

    def _list(
        self, request: httpx.Request, agent: str | None, client: str | None
    ) -> httpx.Response:
        offset = int_param(request, "offset", 0)
        limit = int_param(request, "limit", 100)
        # Insertion order is creation order, so reversing gives latest first as the doc says.
        matching = [
            item.body()
            for item in reversed(self._items.values())
            if (agent is None or item.agent_id == agent)
            and (client is None or item.client_id == client)
        ]
        page = matching[offset : offset + limit]
        return httpx.Response(200, json={"totalCount": len(matching), "items": page})

    def _start(self, request: httpx.Request, agent: str, client: str | None) -> httpx.Response:
        records, incomplete = self._read_chunk(request)
        operation = request.url.params.get("operationId") or str(uuid.uuid4())
        item = _QueueItem(str(uuid.uuid4()), operation, agent, client, datetime.now(UTC))
        self._items[item.queue_item_id] = item
        self._open[operation] += 1
        self._bump_max("max_open_items_per_operation", self._open[operation])
        self._add_records(item, records)
        if incomplete:
            return httpx.Response(202, json=item.body())
        if len(item.records) < self.config.sync_threshold:
            item.completed_on = datetime.now(UTC)
            self._process(item)
            return httpx.Response(201, json=item.body())
        self._complete(item)
        return httpx.Response(202, json=item.body())

    def _append(self, request: httpx.Request, item: _QueueItem) -> httpx.Response:
        records, incomplete = self._read_chunk(request)
        if item.status != "Pending":
            detail = (
                f"Queue-item '{item.queue_item_id}' is {item.status}; only Pending accepts data."
            )
            raise Reject(400, "Queue-item is not pending", detail)
        self._add_records(item, records)
        if not incomplete:
            self._complete(item)
        return httpx.Response(202, json=item.body())

    def _cancel(self, item: _QueueItem) -> httpx.Response:
        if item.status not in OPEN_STATUSES:
            detail = f"Queue-item '{item.queue_item_id}' is already {item.status}."
            raise Reject(400, "Queue-item cannot be canceled", detail)
        self._finish(item, "Canceled", "Queue-item was canceled.")
        return httpx.Response(204)

    def _read_chunk(self, request: httpx.Request) -> tuple[list[dict[str, Any]], bool]:
        records, incomplete = _parse_chunk(request.content)
        self._bump_max("max_records_in_request", len(records))
        limit = self.config.max_records_per_request
        if len(records) > limit:
            detail = f"Request has {len(records)} records; at most {limit} are allowed."
            raise Reject(400, "Too many records", detail)
        return records, incomplete

    def _add_records(self, item: _QueueItem, records: list[dict[str, Any]]) -> None:
        item.records.extend(records)
        item.size += sum(map(_record_size, records))
        self._bump_max("max_records_in_item", len(item.records))
        self._bump_max("max_item_bytes", item.size)
        cfg = self.config
        reason = None
        if len(item.records) > cfg.max_records_per_item:
            reason = f"Queue-item exceeds the limit of {cfg.max_records_per_item} records."
        elif item.size > cfg.max_item_bytes:
            reason = f"Queue-item exceeds the limit of {cfg.max_item_bytes} bytes of data."
        if reason is not None:
            # The vendor fails the whole queue-item, so this 400 does change state.
            self._finish(item, "Failed", reason)
            raise Reject(400, "Queue-item too large", reason)

    def _complete(self, item: _QueueItem) -> None:
        item.status = "Completed"
        item.completed_on = datetime.now(UTC)
        item.due = time.monotonic() + self.config.processing_seconds
        self._waiting.append(item)

    def _advance(self) -> None:
        """Process Completed items whose time has come; lazy, so no background thread is needed."""
        now = time.monotonic()
        ready = [item for item in self._waiting if item.due <= now]
        self._waiting = [item for item in self._waiting if item.due > now]
        for item in sorted(ready, key=lambda queued: queued.due):
            if item.status == "Completed":  # a canceled item stays in the list until now
                self._process(item)

    def _process(self, item: _QueueItem) -> None:
        poisons = self.config.poison_record_ids
        poison = next((r["recordId"] for r in item.records if r["recordId"] in poisons), None)
        if poison is not None:
            message = f"Value '{poison}' doesn't fit to expected format. (Parameter 'value')"
            self._finish(item, "Failed", message)
            return
        # All-or-nothing: every record of the item is stored only when none of them failed.
        for record in item.records:
            self._commits[f"{record['entityId']}/{record['recordId']}"] += 1
        self._finish(item, "Success", None)

    def _finish(self, item: _QueueItem, status: str, error: str | None) -> None:
        item.status, item.error_message = status, error
        item.finished_on = datetime.now(UTC)
        self._open[item.operation_id] -= 1


SCALE_RECORDS_PER_ITEM = 1000
SIMULATOR = SourcingDataSimulator  # what `importq simulate` serves for this target


def client_env(server_url: str) -> dict[str, str]:
    """What a worker needs to talk to this simulator with its default fake token."""
    return {
        "SOURCING_DATA_URL": f"{server_url}{BASE_PATH}",
        "SOURCING_DATA_TOKEN": FAKE_TOKEN,
        "SOURCING_DATA_AGENT_ID": "demo-agent",
    }


def demo_job(count: int) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """The demo's job: `count` organisation units in one operation."""

    def records() -> Iterator[dict[str, Any]]:
        for n in range(count):
            yield {
                "entityId": "ORG_DEPT",
                "recordId": f"dept-{n:06d}",
                "data": {"Code": f"D{n:06d}", "Name": f"Department {n}", "Type": "Workroom"},
                "customData": {"CostCentre": f"CC{n % 97:02d}"},
            }

    return {"operation_id": "demo-operation"}, records()


def summarize(ledger: dict[str, Any]) -> list[str]:
    return [
        f"{ledger['committed_records']} records committed, {ledger['duplicates']} twice",
        f"{ledger['items'].get('Success', 0)} queue items "
        f"(largest {ledger['max_records_in_item']} records), {ledger['requests']} requests "
        f"(largest {ledger['max_records_in_request']} records), {ledger['faults']} faults injected",
    ]


def scale_plan(
    sim: SourcingDataSimulator, count: int, stack: ExitStack, *, largest: bool = False
) -> ScalePlan:
    """The scale run's share: one job of `count` records in 1,000-record queue items (a
    quarter of the vendor's 4,000, so the run has many units; `largest`: 4,000), 16 items
    open at once."""
    sim.configure(processing_seconds=0.01)
    per_item = sim.config.max_records_per_item if largest else SCALE_RECORDS_PER_ITEM
    params, records = demo_job(count)

    def committed() -> Committed:
        ledger = sim.ledger()
        return Committed(len(ledger["commits"]), ledger["duplicates"])

    env = {
        "SOURCING_DATA_RECORDS_PER_ITEM": str(per_item),
        "SOURCING_DATA_ITEMS_IN_FLIGHT": "16",
        "SOURCING_DATA_POLL_INTERVAL": "0.02",
    }
    note = f"1 job, queue items of {per_item:,} records"
    return ScalePlan([ScaleJob(params, records)], committed, env, note)
