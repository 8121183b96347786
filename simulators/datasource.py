"""In-memory simulator of the mobile-forms Data Source API (one PUT, JSON or XML), with faults."""

from __future__ import annotations

import io
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
from xml.etree.ElementTree import ParseError
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeElementTree
import httpx
from defusedxml import DefusedXmlException

from simulators.http import (
    Reject,
    SimulatorBase,
    admin_response,
    injected_fault,
    problem,
)
from simulators.scale import Committed, ScaleJob, ScalePlan, job_sizes

BASE_PATH = "/api/v2/datasource"
FAKE_COMPANY_ID = 1
FAKE_KEY = "fake-datasource-integration-key"
DEMO_DATA_SOURCE = "demo-datasource"
KINDS = ("Rows", "NewRows", "DeletedRows")
XSI = "http://www.w3.org/2001/XMLSchema-instance"
_XML = {"Content-Type": "application/xml"}
_MOST_PER_SOURCE = "max_in_flight_per_data_source"
_BAD_BODY = "SerializationException"  # the vendor ErrorCode of an unreadable body
# An entity-expansion ("billion laughs") answer: 10**9 "lol"s if a client expanded it.
_LAUGHS = "".join(f'<!ENTITY l{n} "{f"&l{n - 1};" * 10}">' for n in range(1, 10))
BILLION_LAUGHS = (
    f'<?xml version="1.0"?><!DOCTYPE DataSourceResponse [<!ENTITY l0 "lol">{_LAUGHS}]>'
    "<DataSourceResponse><ResponseStatus><ErrorCode>&l9;</ErrorCode><Message>&l9;</Message>"
    "</ResponseStatus></DataSourceResponse>"
).encode()
DEMO_PARAMS = {"mode": "replace", "external_id": DEMO_DATA_SOURCE, "name": "Demo sports",
               "headers": "Code,Name:Title,Info:SubLeft"}  # fmt: skip


@dataclass
class SimConfig:
    """Knobs of the simulator; mutable at runtime via configure() or POST /_sim/config."""

    company_id: int = FAKE_COMPANY_ID
    integration_key: str = FAKE_KEY
    forbidden_keys: set[str] = field(default_factory=set)
    data_sources: set[str] = field(default_factory=lambda: {DEMO_DATA_SOURCE})  # ExternalIds
    max_rows: int = 10_000
    max_new_rows: int = 1_500
    max_deleted_rows: int = 500
    max_rows_per_data_source: int = 50_000
    min_vals: int = 2
    latency_seconds: float = 0.0
    fault_rate: float = 0.0
    fault_statuses: tuple[int, ...] = (429, 502, 503, 504)
    retry_after_seconds: int = 1
    seed: int | None = None
    hostile_xml: bool = False  # XML error answers declare an entity-expansion bomb


def _argument(message: str) -> Reject:
    """The vendor's usual 400: a DataSourceResponse with ErrorCode ArgumentException."""
    return Reject(400, "ArgumentException", message)


def data_source_id(external_id: str) -> str:
    """The GUID (Id) the simulator gives the data source with this ExternalId."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"datasource:{external_id}"))


@dataclass
class _DataSource:
    id: str
    external_id: str
    name: str = ""
    headers: list[dict[str, str]] = field(default_factory=list)
    rows: dict[str, list[str]] = field(default_factory=dict)  # Val 1 -> Vals, in display order


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse_xml(content: bytes) -> dict[str, Any]:
    namespaces: dict[str, str] = {}
    root: Any = None
    events = SafeElementTree.iterparse(io.BytesIO(content), ("start-ns", "end"), forbid_dtd=True)
    for event, item in events:
        if event == "start-ns":
            namespaces[item[0]] = item[1]
        else:
            root = item
    if root is None or _local(root.tag) != "DataSource" or namespaces.get("i") != XSI:
        raise Reject(400, _BAD_BODY, f'The DataSource element must declare xmlns:i="{XSI}".')
    body: dict[str, Any] = {}
    for child in root:
        name = _local(child.tag)
        if name == "Headers":
            body[name] = [{_local(f.tag): f.text or "" for f in header} for header in child]
        elif name in KINDS:
            body[name] = [[val.text or "" for val in row] for row in child]
        else:
            body[name] = (child.text or "").strip()
    return body


def _parse_json(content: bytes) -> dict[str, Any]:
    body = json.loads(content)
    if not isinstance(body, dict):
        raise ValueError("the body is not a JSON object")
    for kind in KINDS:
        if body.get(kind) is not None:
            body[kind] = [["" if v is None else str(v) for v in row["Vals"]] for row in body[kind]]
    return body


def _parse(request: httpx.Request) -> dict[str, Any]:
    # The doc: "If no ContentType is specified, XML format is assumed."
    as_json = "json" in request.headers.get("Content-Type", "").lower()
    try:
        body = _parse_json(request.content) if as_json else _parse_xml(request.content)
    except (ValueError, TypeError, KeyError, ParseError, DefusedXmlException) as e:
        raise Reject(400, _BAD_BODY, f"Could not read the request: {e}") from e
    body["_format"] = "json" if as_json else "xml"
    return body


class DataSourceSimulator(SimulatorBase):
    """An httpx handler: PUT /api/v2/datasource?format=json|xml, plus the /_sim admin routes."""

    base_path = BASE_PATH

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._sources: dict[str, _DataSource] = {}
            self._operations: list[dict[str, Any]] = []
            # requests, faults, refused, kind:<kind>, max:<kind>, format:<fmt>, max_in_flight...
            self._counts: Counter[str] = Counter()
            self._in_flight: Counter[str] = Counter()
            self._rng = random.Random(self.config.seed)

    def load(self, external_id: str, rows: list[list[str]]) -> None:
        """Give an existing data source some rows, as if published long ago."""
        with self._lock:
            self.config.data_sources.add(external_id)
            self._source(external_id).rows = {vals[0]: list(vals) for vals in rows}

    def ledger(self) -> dict[str, Any]:
        with self._lock:
            counts = self._counts
            sources = {ext: asdict(source) for ext, source in self._sources.items()}
            for view in sources.values():
                view["rows"] = list(view["rows"].values())
            return {
                "data_sources": sources,
                "operations": [dict(op) for op in self._operations],
                "requests_by_kind": {kind: counts[f"kind:{kind}"] for kind in KINDS},
                "requests_by_format": {fmt: counts[f"format:{fmt}"] for fmt in ("json", "xml")},
                "max_rows_by_kind": {kind: counts[f"max:{kind}"] for kind in KINDS},
                **{name: counts[name] for name in ("requests", "faults", "refused")},
                **{name: counts[name] for name in ("max_in_flight", _MOST_PER_SOURCE)},
            }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/_sim/"):
            return admin_response(self, request)
        if path.rstrip("/").lower() != BASE_PATH:  # the doc spells it /api/v2/DataSource too
            return problem(404, "Not Found", f"No route for {request.method} {path}.")
        if request.method != "PUT":
            return problem(405, "Method Not Allowed", f"{request.method} is not allowed here.")
        answer_format = (request.url.params.get("format") or "xml").lower()
        try:
            body = _parse(request)
        except Reject as refusal:
            return self._answer(refusal, answer_format)
        key = str(body.get("ExternalId") or body.get("Id") or "")
        with self._lock:
            self._in_flight[key] += 1
            self._at_least("max_in_flight", sum(self._in_flight.values()))
            self._at_least(_MOST_PER_SOURCE, self._in_flight[key])
        try:
            # Outside the lock so concurrent slow calls overlap like against the real service.
            time.sleep(self.config.latency_seconds)
            with self._lock:
                return self._vendor(body, answer_format)
        finally:
            with self._lock:
                self._in_flight[key] -= 1

    def _at_least(self, name: str, value: int) -> None:
        self._counts[name] = max(self._counts[name], value)

    def _vendor(self, body: dict[str, Any], answer_format: str) -> httpx.Response:
        self._counts.update(("requests", f"format:{body['_format']}"))
        # "If you specify Rows, then any values in NewRows and DeletedRows will be ignored."
        kinds = ["Rows"] if "Rows" in body else [k for k in KINDS[1:] if k in body]
        for kind in kinds:  # counted before any check, so an oversized request shows here
            self._counts[f"kind:{kind}"] += 1
            self._at_least(f"max:{kind}", len(body[kind]))
        cfg = self.config
        fault = injected_fault(
            self._rng, cfg.fault_rate, cfg.fault_statuses, cfg.retry_after_seconds
        )
        if fault is not None:
            self._counts["faults"] += 1
            return fault
        try:
            self._authorize(body)
            self._apply(self._find(body), body, kinds)
        except Reject as refusal:
            self._counts["refused"] += 1
            return self._answer(refusal, answer_format)
        return httpx.Response(200)  # the doc: "returned with an empty response"

    def _authorize(self, body: dict[str, Any]) -> None:
        company, key = str(body.get("CompanyId") or "").strip(), body.get("IntegrationKey")
        if not company or not key:
            raise _argument("Missing parameters")
        if key in self.config.forbidden_keys:
            raise Reject(403, "Forbidden", "This company may not use the Data Source API.")
        if company != str(self.config.company_id) or key != self.config.integration_key:
            raise Reject(401, "Unauthorized", "Invalid CompanyId or IntegrationKey.")

    def _source(self, external_id: str) -> _DataSource:
        if external_id not in self._sources:
            self._sources[external_id] = _DataSource(data_source_id(external_id), external_id)
        return self._sources[external_id]

    def _find(self, body: dict[str, Any]) -> _DataSource:
        """The data source by Id, else by ExternalId; it must exist (the API creates none)."""
        if not body.get("Name"):
            raise _argument("Missing parameters: Name")
        known = set(self._sources) | self.config.data_sources
        wanted = body.get("Id")
        if wanted:
            match = next((ext for ext in known if data_source_id(ext) == wanted), None)
        else:
            match = body.get("ExternalId")
        if not match or match not in known:
            raise _argument(f"No Data Source with Id/ExternalId '{wanted or match or ''}'.")
        return self._source(match)

    def _apply(self, source: _DataSource, body: dict[str, Any], kinds: list[str]) -> None:
        """Check the whole request, then apply it: a refused request changes nothing."""
        headers = body.get("Headers")
        width = len(headers) if headers is not None else len(source.headers)
        rows = dict(source.rows)
        if "Rows" in body:
            rows = {vals[0]: vals for vals in self._checked(body, "Rows", width)}
        for vals in self._checked(body, "DeletedRows", width):
            rows.pop(vals[0], None)
        rows.update((vals[0], vals) for vals in self._checked(body, "NewRows", width))
        limit = self.config.max_rows_per_data_source
        if len(rows) > limit:
            raise _argument(f"Data Sources have a maximum limit of {limit} rows.")
        source.rows, source.name = rows, str(body["Name"])
        if headers is not None:
            source.headers = headers
        for kind in kinds:
            operation = {"data_source": source.external_id, "kind": kind, "rows": len(body[kind])}
            self._operations.append({**operation, "format": body["_format"]})

    def _checked(self, body: dict[str, Any], kind: str, width: int) -> list[list[str]]:
        if kind != "Rows" and "Rows" in body:
            return []  # ignored next to Rows
        rows: list[list[str]] = body.get(kind) or []
        cfg = self.config
        limit = {"Rows": cfg.max_rows, "NewRows": cfg.max_new_rows}.get(kind, cfg.max_deleted_rows)
        if len(rows) > limit:
            raise _argument(f"A limit of {limit} {kind} applies per request; got {len(rows)}.")
        for number, vals in enumerate(rows, start=1):
            if kind == "DeletedRows" and len(vals) != 1:
                raise _argument(f"DeletedRows row {number}: each holds a single Val (the key).")
            wrong_width = bool(width) and len(vals) != width
            if kind != "DeletedRows" and (len(vals) < cfg.min_vals or wrong_width):
                raise _argument(
                    f"{kind} row {number} has {len(vals)} Vals; every Row needs one "
                    f"per Header ({width}), at least {cfg.min_vals}."
                )
        return rows

    def _answer(self, refusal: Reject, answer_format: str) -> httpx.Response:
        if answer_format == "json":
            status = {"ErrorCode": refusal.title, "Message": refusal.detail, "Errors": []}
            return httpx.Response(refusal.status, json={"ResponseStatus": status})
        content = (
            '<?xml version="1.0" encoding="utf-8"?><DataSourceResponse><ResponseStatus>'
            f"<ErrorCode>{escape(refusal.title)}</ErrorCode><Errors />"
            f"<Message>{escape(refusal.detail)}</Message></ResponseStatus></DataSourceResponse>"
        ).encode()
        content = BILLION_LAUGHS if self.config.hostile_xml else content
        return httpx.Response(refusal.status, content=content, headers=_XML)


SIMULATOR = DataSourceSimulator  # what `importq simulate` serves for this target


def client_env(server_url: str) -> dict[str, str]:
    """What a worker needs to talk to this simulator with its default fake credentials."""
    return {
        "DATASOURCE_URL": f"{server_url}{BASE_PATH}",
        "DATASOURCE_COMPANY_ID": str(FAKE_COMPANY_ID),
        "DATASOURCE_INTEGRATION_KEY": FAKE_KEY,
    }


def demo_job(count: int) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """The demo's job: a replace of up to 12,000 sports, so it needs Rows and then NewRows."""

    return dict(DEMO_PARAMS), map(sport, range(min(count, 12_000)))


def sport(n: int) -> dict[str, Any]:
    return {"Vals": [f"S{n:05d}", f"Sport {n}", f"About sport {n}"]}


def summarize(ledger: dict[str, Any]) -> list[str]:
    counts, largest = ledger["requests_by_kind"], ledger["max_rows_by_kind"]
    sizes = ", ".join(f"{counts[kind]} {kind} (largest {largest[kind]})" for kind in KINDS)
    rows = ", ".join(f"{ext}: {len(s['rows'])} rows" for ext, s in ledger["data_sources"].items())
    return [
        rows or "no data source updated",
        f"requests: {sizes}; at most {ledger['max_in_flight_per_data_source']} in flight per "
        f"data source; {ledger['faults']} faults injected",
    ]


SCALE_ROWS_PER_JOB = 10_000  # one Rows request a job: the vendor's 50,000 would be 28 requests


def scale_plan(
    sim: DataSourceSimulator, count: int, stack: ExitStack, *, largest: bool = False
) -> ScalePlan:
    """The scale run's share: replaces of 10,000 rows (`largest`: the vendor's 50,000), each
    on a data source of its own (one data source takes one publish at a time; different
    ones run in parallel)."""
    per_job = sim.config.max_rows_per_data_source if largest else SCALE_ROWS_PER_JOB
    sizes = job_sizes(count, per_job)
    names = [f"scale-{number:04d}" for number in range(len(sizes))]
    sim.configure(data_sources=sim.config.data_sources | set(names))
    jobs, first = [], 0
    for name, size in zip(names, sizes, strict=True):
        params = {**DEMO_PARAMS, "external_id": name, "name": f"Scale {name}"}
        jobs.append(ScaleJob(params, map(sport, range(first, first + size))))
        first += size

    def committed() -> Committed:
        # A replace leaves exactly its rows (keyed by the first Val): a row sent twice by a
        # rerun is still one row, so "committed once" is "every published row is there".
        sources = sim.ledger()["data_sources"]
        return Committed(sum(len(sources[name]["rows"]) for name in names if name in sources), 0)

    note = f"replaces of {per_job:,} rows, one data source each"
    return ScalePlan(jobs, committed, unit_note=note)
