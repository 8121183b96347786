"""In-memory simulator of the Workflow Import Queue API (a JSON Lines POST creates a queue batch).

Faults come in two kinds. Injected faults (429 with Retry-After, 502, 503,
504, or `fail_next` of `fail_status`) are answered before anything happens.
A lost answer (`lose_next`, `lose_answer_rate`) happens after the batch was
created: a gateway's 504 or 502 (`lost_answer`), or an answer held back for
`stall_seconds` so the client times out. The ledger counts every record per
(creationPath, record key), so a batch posted twice shows up as duplicates.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from simulators.http import (
    Reject,
    SimulatorBase,
    admin_response,
    gateway_error,
    injected_fault,
    problem,
)
from simulators.scale import Committed, ScaleJob, ScalePlan

BASE_PATH = "/api/WorkflowImportQueue"
FAKE_API_KEY = "fake-workflow-import-key"
DEMO_CREATION_PATH = "IMPORTQ_DEMO"
PERMISSION = "BeginWorkflowImportProcess"


@dataclass
class SimConfig:
    """Knobs of the simulator; mutable at runtime via configure() or POST /_sim/config."""

    api_key: str = FAKE_API_KEY
    keys_without_permission: set[str] = field(default_factory=set)
    max_body_bytes: int = 4 * 1024 * 1024  # ASP.NET's default request cap: 413 above it
    latency_seconds: float = 0.0
    fault_rate: float = 0.0
    # 502 and 504 are left out of random faults: a client cannot tell them from a lost
    # answer (a gateway answering after the batch was created), so it holds them for review.
    fault_statuses: tuple[int, ...] = (429, 503)
    retry_after_seconds: int = 1
    fail_next: int = 0  # the next N POSTs get fail_status, before any effect
    fail_status: int = 503
    lose_next: int = 0  # the next N batches are created and their answer lost
    lose_answer_rate: float = 0.0
    # "504" or "502": a gateway's answer after creating; "stall": answer after stall_seconds
    lost_answer: str = "504"
    stall_seconds: float = 5.0
    key_column: str = ""  # a record's ledger key: this column, or else the whole record
    poison_values: set[str] = field(default_factory=set)  # a cell holding one: 400 at its line
    seed: int | None = None


@dataclass(frozen=True)
class _Batch:
    queue_batch_id: str
    creation_path: str
    records: int
    params: dict[str, str]


def parse_json_lines(content: bytes) -> list[dict[str, Any]]:
    """The records of a JSON Lines body, or a 400 that says which line is wrong."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Reject(400, "Invalid body", f"The body is not UTF-8: {error.reason}.") from None
    if text.lstrip().startswith("["):
        detail = "The request body must be JSON Lines (one JSON object per line), not an array."
        raise Reject(400, "Body is not JSON Lines", detail)
    records = []
    for number, line in enumerate(text.split("\n"), start=1):  # \n only: JSON may hold U+2028
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            detail = f"Line {number} is not valid JSON: {error.msg}."
            raise Reject(400, "Invalid JSON Lines", detail) from None
        if not isinstance(record, dict):
            raise Reject(400, "Invalid JSON Lines", f"Line {number} is not a JSON object.")
        records.append(record)
    if not records:
        raise Reject(400, "Empty import", "The request body holds no records.")
    return records


class WorkflowImportSimulator(SimulatorBase):
    """An httpx handler for POST {BASE_PATH}; thread-safe, so it can serve real HTTP."""

    base_path = BASE_PATH

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._batches: list[_Batch] = []
            self._records: Counter[str] = Counter()
            self._refused: Counter[int] = Counter()
            self._stats: Counter[str] = Counter()
            self._rng = random.Random(self.config.seed)

    def ledger(self) -> dict[str, Any]:
        with self._lock:
            return {
                "batches": len(self._batches),
                "batch_list": [asdict(batch) for batch in self._batches],
                "records": sum(batch.records for batch in self._batches),
                "records_by_key": dict(self._records),
                "duplicates": sum(1 for count in self._records.values() if count > 1),
                "max_records_in_batch": self._stats["max_records_in_batch"],
                "max_body_bytes": self._stats["max_body_bytes"],
                "requests": self._stats["requests"],
                "faults": self._stats["faults"],
                "lost_answers": self._stats["lost_answers"],
                "refused": {str(status): n for status, n in sorted(self._refused.items())},
            }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/_sim/"):
            return admin_response(self, request)
        if path.rstrip("/").lower() != BASE_PATH.lower():
            return problem(404, "Not Found", f"No route for {request.method} {path}.")
        if request.method != "POST":
            return problem(405, "Method Not Allowed", f"{request.method} is not allowed here.")
        if self.config.latency_seconds > 0:
            time.sleep(self.config.latency_seconds)  # outside the lock: slow calls overlap
        with self._lock:
            try:
                response, stall = self._vendor(request)
            except Reject as reject:
                self._refused[reject.status] += 1
                return reject.response()
        if stall:
            time.sleep(stall)  # the batch exists; the client gives up waiting for this answer
        return response

    def _vendor(self, request: httpx.Request) -> tuple[httpx.Response, float]:
        self._stats["requests"] += 1
        fault = self._fault()
        if fault is not None:
            self._stats["faults"] += 1
            return fault, 0.0
        self._authorize(request)
        creation_path = request.url.params.get("creationPath", "")
        if not creation_path.strip():
            raise Reject(400, "Bad Request", "Query parameter 'creationPath' is required.")
        if len(request.content) > self.config.max_body_bytes:
            detail = (
                f"The body is {len(request.content)} bytes; at most {self.config.max_body_bytes}."
            )
            raise Reject(413, "Request Entity Too Large", detail)
        records = parse_json_lines(request.content)
        self._refuse_poison(records)
        batch = self._create(request, creation_path, records)
        return self._answer(request, batch)

    def _fault(self) -> httpx.Response | None:
        cfg = self.config
        if cfg.fail_next > 0:
            cfg.fail_next -= 1
            headers = {"Retry-After": str(cfg.retry_after_seconds)}
            detail = f"Injected {cfg.fail_status}; nothing was done."
            return problem(cfg.fail_status, "Simulated fault", detail, headers)
        return injected_fault(
            self._rng, cfg.fault_rate, cfg.fault_statuses, cfg.retry_after_seconds
        )

    def _authorize(self, request: httpx.Request) -> None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "apikey" or not key:
            raise Reject(
                401, "Unauthorized", "An API key is required: 'Authorization: apikey <key>'."
            )
        if key in self.config.keys_without_permission:
            raise Reject(403, "Forbidden", f"The API key lacks the {PERMISSION} permission.")
        if key != self.config.api_key:
            raise Reject(401, "Unauthorized", "The API key is not valid.")

    def _refuse_poison(self, records: list[dict[str, Any]]) -> None:
        poison = self.config.poison_values
        for number, record in enumerate(records, start=1):
            for column, value in record.items():
                if isinstance(value, str) and value in poison:
                    detail = f"Line {number}: value '{value}' of column '{column}' is not valid."
                    raise Reject(400, "Invalid record", detail)

    def _create(
        self, request: httpx.Request, creation_path: str, records: list[dict[str, Any]]
    ) -> _Batch:
        params = {k: v for k, v in request.url.params.items() if k != "creationPath"}
        batch = _Batch(str(uuid.uuid4()), creation_path, len(records), params)
        self._batches.append(batch)
        for record in records:
            self._records[f"{creation_path}/{self._key(record)}"] += 1
        self._bump_max("max_records_in_batch", len(records))
        self._bump_max("max_body_bytes", len(request.content))
        return batch

    def _answer(self, request: httpx.Request, batch: _Batch) -> tuple[httpx.Response, float]:
        origin = f"{request.url.scheme}://{request.url.netloc.decode()}"
        batch_id = batch.queue_batch_id
        body = {
            "queueBatchId": batch_id,
            "queueBatchDetails": f"{origin}/Admin/WorkflowImportQueue?batchId={batch_id}",
        }
        cfg = self.config
        lost = cfg.lose_next > 0 or (
            cfg.lose_answer_rate > 0 and self._rng.random() < cfg.lose_answer_rate
        )
        if not lost:
            return httpx.Response(200, json=body), 0.0
        cfg.lose_next = max(0, cfg.lose_next - 1)
        self._stats["lost_answers"] += 1
        if cfg.lost_answer == "stall":
            return httpx.Response(200, json=body), cfg.stall_seconds
        return gateway_error(cfg.lost_answer), 0.0

    def _key(self, record: dict[str, Any]) -> str:
        column = self.config.key_column
        if column and column in record:
            return str(record[column])
        return json.dumps(record, sort_keys=True, separators=(",", ":"))


SIMULATOR = WorkflowImportSimulator  # what `importq simulate` serves for this target


def client_env(server_url: str) -> dict[str, str]:
    """What a worker needs to talk to this simulator with its default fake API key."""
    return {
        "WORKFLOW_IMPORT_URL": f"{server_url}{BASE_PATH}",
        "WORKFLOW_IMPORT_API_KEY": FAKE_API_KEY,
        "WORKFLOW_IMPORT_CREATION_PATH": DEMO_CREATION_PATH,
    }


DEPARTMENTS = ("Finance", "Nursing", "Estates", "Research", "Library")


def demo_job(count: int) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """The demo's job: up to 3,000 people to onboard (the rows of an onboarding import)."""

    return {}, map(person, range(min(count, 3000)))


def person(n: int) -> dict[str, Any]:
    """Person n to onboard: one row of an onboarding import."""
    return {
        "EmployeeId": f"E{n:06d}",
        "FirstName": f"Person{n}",
        "LastName": "Example",
        "Email": f"person{n}@example.org",
        "Department": DEPARTMENTS[n % len(DEPARTMENTS)],
        "StartDate": f"2025-{n % 12 + 1:02d}-01",
        "FullTime": n % 3 != 0,
    }


def summarize(ledger: dict[str, Any]) -> list[str]:
    return [
        f"{ledger['batches']} queue batches holding {ledger['records']} records "
        f"(largest {ledger['max_records_in_batch']}), {ledger['duplicates']} records posted twice",
        f"{ledger['requests']} requests, {ledger['faults']} faults injected, "
        f"{ledger['lost_answers']} answers lost",
    ]


def scale_plan(
    sim: WorkflowImportSimulator, count: int, stack: ExitStack, *, largest: bool = False
) -> ScalePlan:
    """The scale run's share: one job of `count` people, in batches of the default 1,000
    records (8 batches in flight, the default). The vendor caps no batch, so `largest`
    keeps the default."""
    sim.configure(key_column="EmployeeId")

    def committed() -> Committed:
        ledger = sim.ledger()
        return Committed(len(ledger["records_by_key"]), ledger["duplicates"])

    job = ScaleJob({}, map(person, range(count)))
    return ScalePlan([job], committed, unit_note="1 job, batches of 1,000 records")
