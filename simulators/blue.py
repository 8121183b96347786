"""A simulator of Explorance Blue's import web service (SOAP 1.1 and 1.2), with a ledger.

One import at a time per instance: a second RegisterImport while one is open is
refused, as Blue does, and recorded in the ledger as an overlap (the ledger
judges the client, so an attempt counts even though Blue prevents it). A slow
configurable prepare, the vendor doc's row warnings and error messages, fault
injection, and a ledger of transactions: most open at once (an attempt to open
one more counting as open), overlaps, rows committed per datasource, rows
committed twice. The SOAP side (WCF's
envelopes, faults, the WSDL) is in simulators/blue_soap.py.

Its answers follow what the real service sends (shared/targets/blue-facts.md),
not what the client's bundled WSDL says: RegisterImport answers ProgressStatus
with the TransactionID, FinalizeImport a Message in the body (or a header,
`finalize_message_in`), each data block its columns as ColumnNamesList (or
ColumnNames, `columns_element`); `extra_answer_elements` adds an element no
WSDL declares, ahead of the declared ones.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx

from simulators import blue_soap
from simulators.blue_soap import Refusal
from simulators.http import admin_response, update_config
from simulators.scale import Committed, ScaleJob, ScalePlan, job_sizes

BASE_PATH = "/BlueWebService.svc"
FAKE_API_KEY = "fake-blue-api-key"  # the simulator's own key; not a real credential
BUSY = "Import registration failed. The datasource is currently being imported by another process."
LOST = "Transaction cannot be found."
Row = list[str | None]
TIMELINE = ("id", "datasource", "state", "registered_at", "ended_at")
STATUS = {"registered": -4, "pushing": 0, "prepared": 99, "finalizing": 99, "finalized": 100,
          "cancelled": -3, "failed": -2}  # fmt: skip


def default_datasources() -> dict[str, Any]:
    """Users and courses, and the relationship between them that must be imported last."""
    return {
        "Data1": {"caption": "Users", "blocks": {"Users": {
            "columns": ["USER_ID", "FIRST_NAME", "LAST_NAME", "EMAIL"], "ids": ["USER_ID"]}}},
        "Data2": {"caption": "Courses", "blocks": {"Courses": {
            "columns": ["COURSE_ID", "TITLE", "TERM"], "ids": ["COURSE_ID"]}}},
        "Data3": {"caption": "CourseStudents", "blocks": {"CourseStudents": {
            "columns": ["COURSE_ID", "USER_ID", "ROLE"], "ids": ["COURSE_ID", "USER_ID"],
            "references": {"COURSE_ID": "Data2", "USER_ID": "Data1"}}}},
    }  # fmt: skip


@dataclass
class SimConfig:
    """Knobs of the simulator; mutable at runtime via configure() or POST /_sim/config."""

    api_key: str = FAKE_API_KEY
    ip_denied: bool = False
    datasources: dict[str, Any] = field(default_factory=default_datasources)
    report_columns: bool = True  # GetDataBlockInformation tells each block's columns
    columns_element: str = "ColumnNamesList"  # in DataBlockInfo: or "ColumnNames"
    finalize_message_in: str = "body"  # FinalizeImportResponse's Message; or "header"
    extra_answer_elements: bool = False  # answers carry an element no WSDL declares
    prepare_operation: str = "PrepareDataToFinzalizeImportV2"  # the service's own typo
    prepare_seconds: float = 0.05
    finalize_seconds: float = 0.0
    latency_seconds: float = 0.0
    max_id_length: int = 50
    max_field_length: int = 255
    invalid_values: set[str] = field(default_factory=lambda: {"#INVALID#"})
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = ("database", "http503")  # or "http500"
    retry_after_seconds: int = 1
    seed: int | None = None
    hostile_xml: bool = False  # answer with an entity-expansion document


@dataclass(eq=False)
class Transaction:
    id: int
    datasource: str
    abort_on_empty: bool
    by_hand: bool = False
    state: str = "registered"
    rows: list[str] = field(default_factory=list)  # the ID of each accepted row
    registered_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    busy_since: float = 0.0

    @property
    def open(self) -> bool:
        return self.state not in ("finalized", "cancelled", "failed")

    def status(self, prepare_seconds: float) -> int:
        if self.state == "preparing":  # Blue's progress climbs while it prepares
            share = (time.monotonic() - self.busy_since) / max(prepare_seconds, 1e-6)
            return min(98, 1 + int(share * 97))
        return STATUS[self.state]


class BlueSimulator:
    """An httpx handler (MockTransport or serve()) that behaves like BlueWebService.svc."""

    base_path = BASE_PATH

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.rng = random.Random(self.config.seed)
            self._transactions: dict[int, Transaction] = {}
            self._next_id = 6_821_714_594_214_839_000
            self._commits: Counter[str] = Counter()
            self._committed: Counter[str] = Counter()
            self._order: list[str] = []
            self._known: dict[str, set[str]] = {}  # committed IDs per datasource
            self.stats: Counter[str] = Counter()
            self._foreign_cancelled: list[int] = []

    def configure(self, **updates: Any) -> None:
        with self.lock:
            update_config(self.config, updates)
            if "seed" in updates:
                self.rng = random.Random(self.config.seed)

    def ledger(self) -> dict[str, Any]:
        with self.lock:
            mine = [t for t in self._transactions.values() if not t.by_hand]
            return {
                "transactions": dict(Counter(t.state for t in self._transactions.values())),
                # Imports open at once, counting a RegisterImport refused because one was
                # open: 2 means a client tried to run two imports at once on the instance.
                "max_open": self.stats["max_open"],
                "overlaps": self.stats["overlaps"],  # RegisterImport while one was open
                "busy_refusals": self.stats["busy_refusals"],
                "committed": dict(self._committed),
                "committed_rows": sum(self._committed.values()),
                "committed_ids": len(self._commits),  # distinct datasource/ID pairs
                "duplicates": sum(1 for n in self._commits.values() if n > 1),
                "commit_order": list(self._order),
                "foreign_cancelled": list(self._foreign_cancelled),
                "faults": self.stats["faults"],
                "requests": {k[4:]: v for k, v in self.stats.items() if k.startswith("req:")},
                "timeline": [{k: getattr(t, k) for k in TIMELINE} for t in mine],
            }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/_sim"):
            return admin_response(self, request)
        if self.config.latency_seconds > 0 and request.method == "POST":
            time.sleep(self.config.latency_seconds)
        return blue_soap.handle(self, request, BASE_PATH)

    # -- an import someone started by hand in Blue's UI ------------------------------------

    def open_foreign(self, datasource: str = "Data1") -> int:
        with self.lock:
            return self._open(datasource, abort_on_empty=True, by_hand=True).id

    def end_foreign(self, transaction_id: int) -> None:
        with self.lock:
            self._end(self._transactions[transaction_id], "finalized")

    # -- the operations, as Blue behaves ---------------------------------------------------

    def datasources(self) -> list[tuple[str, str]]:
        return [(ds, spec["caption"]) for ds, spec in self.config.datasources.items()]

    def blocks(self, datasource: str) -> list[tuple[str, list[str] | None]]:
        spec = self._datasource(datasource, "Failed to initialize the datasource.")
        report = self.config.report_columns
        return [(name, b["columns"] if report else None) for name, b in spec["blocks"].items()]

    def register(self, datasource: str, abort_on_empty: bool) -> int:
        with self.lock:
            self._datasource(datasource, "datasource does not exist")
            opened = sum(1 for t in self._transactions.values() if t.open)
            if opened:
                # Blue refuses it; the ledger still records that a second import was tried.
                self.stats["busy_refusals"] += 1
                self.stats["overlaps"] += 1
                self.stats["max_open"] = max(self.stats["max_open"], opened + 1)
                raise Refusal(BUSY)
            return self._open(datasource, abort_on_empty=abort_on_empty).id

    def push(
        self, transaction_id: str | None, block: str, columns: list[str], rows: list[Row]
    ) -> list[str]:
        with self.lock:
            found = self._transaction(transaction_id, ("registered", "pushing"))
            spec = self.config.datasources[found.datasource]["blocks"].get(block)
            if spec is None:
                raise Refusal(f"Could not find the data block '{block}'")
            _check_columns(spec, block, columns, rows)
            warnings: list[str] = []
            for number, row in enumerate(rows):
                cells = dict(zip(columns, row, strict=True))
                problem = self._row_problem(spec, cells, number, warnings)
                if problem is None:
                    found.rows.append("|".join(str(cells[c]) for c in spec["ids"]))
                else:
                    warnings.append(problem)
            found.state = "pushing"
            return warnings

    def prepare(self, transaction_id: str | None) -> None:
        with self.lock:
            found = self._transaction(transaction_id, ("registered", "pushing"))
            failure = self._prepare_failure(found)
            if failure:
                self._end(found, "failed")
                raise Refusal(failure)
            found.state, found.busy_since = "preparing", time.monotonic()
        # Outside the lock: Blue stays answerable. As long as prepare_seconds says *now*, so
        # a test that shortens it ends a long prepare it no longer needs to wait out.
        while (left := found.busy_since + self.config.prepare_seconds - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))
        with self.lock:
            if found.state != "preparing":  # cancelled meanwhile
                raise Refusal(LOST)
            found.state = "prepared"

    def finalize(self, transaction_id: str | None) -> None:
        with self.lock:
            found = self._transaction(transaction_id, ("prepared",))
            found.state = "finalizing"
        time.sleep(self.config.finalize_seconds)
        with self.lock:
            self._commit(found)

    def cancel(self, transaction_id: str | None) -> None:
        with self.lock:
            found = self._transaction(
                transaction_id, ("registered", "pushing", "preparing", "prepared")
            )
            if found.by_hand:
                self._foreign_cancelled.append(found.id)
            self._end(found, "cancelled")

    def current(self) -> tuple[int, int]:
        """The open transaction, else the latest one: (TransactionID, ProgressStatus)."""
        with self.lock:
            ordered = sorted(self._transactions.values(), key=lambda t: t.registered_at)
            candidates = [t for t in ordered if t.open] or ordered
            if not candidates:
                return 0, -1
            return candidates[-1].id, candidates[-1].status(self.config.prepare_seconds)

    def progress(self, datasource: str) -> int:
        with self.lock:
            latest = [t for t in self._transactions.values() if t.datasource == datasource]
            return latest[-1].status(self.config.prepare_seconds) if latest else -1

    # -- inside the lock -----------------------------------------------------------------

    def _datasource(self, datasource: str, missing: str) -> dict[str, Any]:
        spec: dict[str, Any] | None = self.config.datasources.get(datasource)
        if spec is None:
            raise Refusal(missing)
        return spec

    def _transaction(self, raw: str | None, states: tuple[str, ...]) -> Transaction:
        """The named transaction if it is in one of `states` (a wrong header spelling: None)."""
        found = self._transactions.get(int(raw)) if raw and raw.strip().isdigit() else None
        if found is None or found.state not in states:
            raise Refusal(LOST)
        return found

    def _open(self, datasource: str, *, abort_on_empty: bool, by_hand: bool = False) -> Transaction:
        self._next_id += self.rng.randint(1, 97)
        created = Transaction(self._next_id, datasource, abort_on_empty, by_hand)
        self._transactions[created.id] = created
        opened = sum(1 for t in self._transactions.values() if t.open)
        self.stats["max_open"] = max(self.stats["max_open"], opened)
        return created

    def _end(self, transaction: Transaction, state: str) -> None:
        transaction.state, transaction.ended_at = state, time.time()

    def _commit(self, transaction: Transaction) -> None:
        known = self._known.setdefault(transaction.datasource, set())
        for key in transaction.rows:
            self._commits[f"{transaction.datasource}/{key}"] += 1
            known.add(key)
        self._committed[transaction.datasource] += len(transaction.rows)
        self._order.append(transaction.datasource)
        self._end(transaction, "finalized")

    def _prepare_failure(self, found: Transaction) -> str | None:
        if not found.rows and found.abort_on_empty:
            return "Operation is aborted because the imported data table is empty."
        if len(set(found.rows)) != len(found.rows):
            return f"Some IDs are not unique in table PrimaryUserTable_{found.datasource}_tmp."
        return None

    def _row_problem(
        self, spec: dict[str, Any], cells: dict[str, str | None], n: int, warnings: list[str]
    ) -> str | None:
        """Why Blue skips row `n` (the vendor doc's warnings), or None; truncations noted."""
        cfg = self.config
        for column in spec["ids"]:
            value = cells.get(column) or ""
            if not value:
                return f"Row {n}: Missing ID on {column} field."
            for part, what in (("'", "apostrophe(s)"), (",", "comma(s)"), ("||||||", "'||||||'")):
                if part in value:
                    return f"Row {n}: ID field contains {what}."
            if len(value) > cfg.max_id_length:
                return (f"Row {n}: '{column}' contains data that exceeds the maximum allowable "
                        f"length of field: Row {n} was not imported.")  # fmt: skip
        for column, datasource in spec.get("references", {}).items():
            if cells.get(column) not in self.known_ids(datasource):
                return f"Row {n}: '{column}' field contains invalid data, THIS ROW SKIPPED."
        for column, cell in cells.items():
            if cell in cfg.invalid_values:
                return f"Row {n}: '{column}' field contains invalid data, THIS ROW SKIPPED."
            if cell and len(cell) > cfg.max_field_length and column not in spec["ids"]:
                warnings.append(
                    f"Row {n}: '{column}' contains data that exceeds maximum allowable length "
                    "of field: Blue automatically truncated the data."
                )
        return None

    def known_ids(self, datasource: str) -> set[str]:
        return self._known.get(datasource, set())


def _check_columns(spec: dict[str, Any], block: str, columns: list[str], rows: list[Row]) -> None:
    missing = [c for c in spec["columns"] if c not in columns]
    if missing:
        first = rows[0][0] if rows and rows[0] else ""
        raise Refusal(f"Row 0 ({first}): Missing value on {missing[0]} field.")
    extra = [c for c in columns if c not in spec["columns"]]
    if extra:
        raise Refusal(f"Unknown error during batch import: Column '{extra[0]}' does not "
                      f"belong to table {block}.")  # fmt: skip
    if any(len(row) != len(columns) for row in rows):
        raise Refusal("Unknown error during batch import: Input array is longer than the "
                      "number of columns in this table.")  # fmt: skip


SIMULATOR = BlueSimulator  # what `importq simulate` serves for this target


def client_env(server_url: str) -> dict[str, str]:
    """What a worker needs to use this simulator: the .svc address and the fake key."""
    return {"BLUE_ENDPOINT_URL": f"{server_url}{BASE_PATH}", "BLUE_API_KEY": FAKE_API_KEY}


def demo_job(count: int) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """The demo's job: `count` users imported into the Users datasource."""

    return {"datasource": "Users"}, map(user, range(count))


def user(n: int) -> dict[str, Any]:
    return {"USER_ID": f"u{n:06d}", "FIRST_NAME": f"First{n}", "LAST_NAME": f"Last{n}",
            "EMAIL": f"u{n:06d}@example.org"}  # fmt: skip


def summarize(ledger: dict[str, Any]) -> list[str]:
    states = ledger["transactions"]
    return [
        f"{ledger['committed_rows']} rows committed in {states.get('finalized', 0)} imports, "
        f"{ledger['duplicates']} rows twice; {states.get('cancelled', 0)} imports cancelled",
        f"at most {ledger['max_open']} import open at once (attempts included); "
        f"{ledger['overlaps']} registrations while one was open (refused as busy), "
        f"{ledger['faults']} faults injected",
    ]


SCALE_ROWS_PER_JOB = 20_000  # one import a job; imports run one at a time per instance


def scale_plan(
    sim: BlueSimulator, count: int, stack: ExitStack, *, largest: bool = False
) -> ScalePlan:
    """The scale run's share: imports of 20,000 users each into the Users datasource (pushes
    of 1,000 rows), one after the other as Blue allows. Blue caps only a push, not an
    import, so `largest` changes nothing."""
    jobs, first = [], 0
    for size in job_sizes(count, SCALE_ROWS_PER_JOB):
        jobs.append(ScaleJob({"datasource": "Users"}, map(user, range(first, first + size))))
        first += size

    def committed() -> Committed:
        ledger = sim.ledger()
        return Committed(ledger["committed_ids"], ledger["duplicates"])

    note = f"imports of {SCALE_ROWS_PER_JOB:,} rows, one unit each"
    return ScalePlan(jobs, committed, unit_note=note)
