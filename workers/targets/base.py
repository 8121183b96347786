"""The seam every target plugs into: a Target declaration and the Sink it names.

A target package describes its vendor and nothing else. The core (runner.py)
owns queues, leases, retries, bisection, in-flight slots and dead letters; the
sink owns batching within the vendor's limits and the calls of one unit. Each
package's __init__.py declares `TARGET = Target(name, limits, client, sink, ...)`,
and workers/targets/__init__.py registers it with one line. The sink is generic
in the target's limits and client (Sink[LimitsT, ClientT]), so `plan`, `slot`
and `run` see them typed; what a sink keeps in Redis goes through the core's
RunContext.target_state (workers/target_state.py), never a Redis client.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Generic, TypeVar

import orjson
import structlog

from importq import jsoncodec
from importq.errors import InputError
from importq.settings import Settings
from importq.settings_table import EnvSetting
from workers.target_state import TargetState

Record = dict[str, Any]
# The params key under which `plan` finds what the preflight learned (never stored in the job).
PREFLIGHT_FACTS = "_preflight"
Located = tuple[Record, str]  # a record and where it came from ("file:line")
LimitsT = TypeVar("LimitsT")  # a target's frozen dataclass of vendor limits
ClientT = TypeVar("ClientT")  # what talks to the vendor (one per target per process)


@dataclass(frozen=True)
class CsvColumns:
    """How the columns of a CSV file map onto one target's record."""

    fields: tuple[str, ...]
    """Columns copied as strings."""
    booleans: tuple[str, ...] = ()
    """Columns parsed from true/false/1/0/yes/no."""
    prefixes: tuple[str, ...] = ()
    """Object fields: column "data.Name" becomes record["data"]["Name"]."""
    required: tuple[str, ...] = ()
    """Columns the header must have."""
    other_columns: str | None = None
    """Where columns not listed above go: None refuses them; "" makes each a field of the
    same name (free-form records); "Vals" puts column C in record["Vals"]["C"]."""
    line_breaks: bool = True
    """False: a cell may not hold a line break, so a quoted cell running over lines (most
    often a stray quote swallowing the rows after it) is refused at the line it opens."""

    def allowed(self) -> list[str]:
        """Every accepted column name, prefixed ones shown as "prefix.<Name>"."""
        free = ["<any column>"] if self.other_columns is not None else []
        return [*self.fields, *self.booleans, *(f"{p}.<Name>" for p in self.prefixes), *free]


@dataclass(frozen=True)
class Param:
    """One `--param name=value` option a target takes."""

    name: str
    type: str
    """What the value is, in words: "text", "uuid", "list of names"..."""
    help: str

    def describe(self) -> str:
        return f"{self.name} ({self.type}): {self.help}"


@dataclass
class Delivered:
    """What one run of a unit achieved: records accepted, and those the vendor skipped."""

    count: int
    rejected: list[tuple[Record, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    remote: dict[str, str] = field(default_factory=dict)
    """Notes for the unit's remote.* fields, written with its finish rather than in a
    write of their own (ctx.remember): only what the vendor already committed, whose
    finish, if lost, the next attempt settles as it would a lost answer."""


@dataclass
class RunContext(Generic[LimitsT, ClientT]):
    """Everything a sink sees while it runs one unit."""

    unit_id: str
    attempt: int
    records: list[Record]
    params: dict[str, Any]
    remote: dict[str, str]
    client: ClientT
    limits: LimitsT
    settings: Settings
    log: structlog.typing.FilteringBoundLogger
    remember: Callable[[dict[str, str]], None]
    checkpoint: Callable[[], None]
    target_state: TargetState | None = None
    """The core's small store for a sink's own locks and registries (None: no Redis)."""
    # The previous attempt stopped cleanly at a checkpoint (worker shutdown), so what it
    # remembered is exact and the unit may continue from there instead of starting over.
    handed_back: bool = False


class Sink(ABC, Generic[LimitsT, ClientT]):
    """One vendor's unit of work: plan and run are required, the other hooks optional.

    What the target is called, its CSV mapping, params and flags live in its Target.
    """

    def check_params(self, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
        """Normalise job parameters before anything is staged (raise InputError)."""
        return params

    def check_job(self, params: dict[str, Any], settings: Settings, *, has_records: bool) -> None:
        """Refuse at publish a job the workers would refuse for certain (raise InputError)."""
        return None

    def preflight(self, client: ClientT, params: dict[str, Any]) -> dict[str, Any] | None:
        """A harmless call that fails fast on bad credentials or ids (raise FinalError).

        May return what the target said that `plan` can check records against (Blue's
        block columns): `plan` then finds it in its params under PREFLIGHT_FACTS.
        """
        return None  # targets without a cheap read-only call skip the check

    @abstractmethod
    def plan(
        self, records: Iterable[Located], limits: LimitsT, params: dict[str, Any]
    ) -> Iterator[list[Record]]:
        """Cut validated records into units that never exceed the limits (raise InputError)."""

    def batches(self, limits: LimitsT, params: dict[str, Any]) -> Batches | None:
        """The limits when `plan` is `batched` (records cut by count and bytes, kept as they
        were read), else None. Publish then plans a plain JSON Lines file keeping no record
        and stages each unit's raw lines (producers/rawlines.py)."""
        return None

    def slot(self, params: dict[str, Any], limits: LimitsT) -> tuple[str, int] | None:
        """A key and a cap on units in flight for that key, or None for no cap."""
        return None

    def slot_gap(self, params: dict[str, Any], limits: LimitsT) -> float:
        """Seconds the slot's key stays closed after a unit on it ends (Blue's spacing)."""
        return 0.0

    def order_key(self, params: dict[str, Any]) -> str | None:
        """Jobs with the same key run in publish order, one job after the other."""
        return None

    def holds_order_on_failure(self, params: dict[str, Any]) -> bool:
        """True: if this job fails, later jobs on its order key must not run on what it left
        (they wait until it is replayed or an operator releases them)."""
        return False

    @abstractmethod
    def run(self, ctx: RunContext[LimitsT, ClientT]) -> Delivered:
        """Deliver one unit; raise RetryableError or FinalError from importq.errors."""

    def abandon(self, ctx: RunContext[LimitsT, ClientT]) -> Delivered | None:
        """The unit ends without running again (out of attempts, poisoned, cancelled):
        settle what an earlier attempt left open with the vendor (cancel an open item or
        transaction). Return Delivered if the vendor shows the unit in fact committed; raise
        FinalError to say why its records may still have been applied."""
        return None


@dataclass(frozen=True)
class Target(Generic[LimitsT, ClientT]):
    """One target package's declaration: everything the core needs to know about it."""

    name: str
    """The target's name: its queue, its `importq publish` argument, its job field."""
    limits: Callable[[Settings], LimitsT]
    """The vendor's limits, tightened by settings."""
    client: Callable[[Settings], ClientT]
    """A client for the vendor, configured from settings (raises ConfigError)."""
    sink: Sink[LimitsT, ClientT]
    title: str = ""
    """The vendor's API in words, for people (the settings table, the deployment files)."""
    csv: CsvColumns | None = None
    """How CSV input maps onto a record; None: the target takes no CSV."""
    params: tuple[Param, ...] = ()
    """The --param options the target takes; any other is refused (refuse_unknown_params).
    Empty: the sink's check_params checks its own."""
    params_hint: str = ""
    """Said after the list of params when an unknown one is refused."""
    extra_params: Callable[[Settings], tuple[Param, ...]] | None = None
    """Params the settings declare on top of `params` (a vendor's undocumented options)."""
    records_optional: bool = False
    """True: a job may carry no records (e.g. a bare trigger)."""
    one_process: bool = False
    """True: the target's queue gets a worker of its own at concurrency 1 (Blue runs one
    import at a time; the slot enforces it across machines, this keeps pools from idling)."""
    splittable: bool = True
    """False: a unit is one whole (a replace, one file, one transaction); halves of it would
    not mean the same, so a record-level refusal fails it instead of bisecting it."""
    settings: tuple[EnvSetting, ...] = ()
    """The environment variables only this target reads (rows of the settings table)."""

    def declared_params(self, settings: Settings) -> tuple[Param, ...]:
        """`params`, plus any the settings declare."""
        extra = self.extra_params(settings) if self.extra_params else ()
        return self.params + extra


def registry(*targets: Target[Any, Any]) -> dict[str, Target[Any, Any]]:
    """Targets by name, in the order given (the first is Celery's default queue)."""
    known: dict[str, Target[Any, Any]] = {}
    for target in targets:
        if target.name in known:
            raise ValueError(f"two targets are named {target.name!r}: each needs its own name")
        known[target.name] = target
    return known


# Names that would put a credential into job state, Flower and the logs.
_CREDENTIAL_WORDS = ("apikey", "api_key", "authorization", "password", "secret", "token")


def refuse_unknown_params(
    target: Target[Any, Any], params: dict[str, Any], settings: Settings
) -> None:
    """InputError for a param `target` does not declare, suggesting the one probably meant.

    A typo (creationpath for creationPath) would otherwise be forwarded, or ignored, while
    the default is used. Targets that declare no params check their own (Blue).
    """
    declared = target.declared_params(settings)
    if not declared:
        return
    names = [param.name for param in declared]
    for name in params:
        if name in names:
            continue
        if name == "operation_id":
            raise InputError(f"--operation-id is a sourcing_data option; {target.name} has none")
        if any(word in name.lower() for word in _CREDENTIAL_WORDS):
            raise InputError(
                f"--param {name}: credentials do not travel in job parameters; set them in "
                "the workers' environment (see the README's configuration table)"
            )
        by_case = [known for known in names if known.lower() == name.lower()]
        close = by_case or difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        meant = f"did you mean {close[0]}? " if close else ""
        takes = "; ".join(param.describe() for param in declared)
        raise InputError(
            f"unknown {target.name} option {name!r}: {meant}{target.name} takes --param "
            f"{takes}{target.params_hint}"
        )


def record_size(record: Record) -> int:
    """Bytes of a record as compact JSON: what byte budgets count."""
    return len(jsoncodec.dumps(record))


@dataclass(frozen=True)
class Batches:
    """A plan by count and bytes: at most `records` records and `bytes` bytes a unit."""

    records: int
    bytes: int
    what: str = "unit"
    """What a unit is called in the refusal of a record over the budget."""

    def plan(self, records: Iterable[Located]) -> Iterator[list[Record]]:
        return batched(records, self.records, self.bytes, self.what)

    def refuse_oversized(self, record: Record, where: str) -> None:
        """InputError if `record` alone is over the byte budget, as `batched` refuses it."""
        record_bytes = record_size(record) + 1
        if record_bytes > self.bytes:
            raise _over_budget(record_bytes, self.bytes, self.what, where)


class Cutter:
    """`batched`'s cuts, worked out a list of records at a time, keeping no record: where
    each unit closes. Both are greedy on the same sizes (a record's compact JSON plus one
    byte, the comma), so the units are the same. A run of records that fits the unit's
    room by count and bytes is measured with one encode; only the run where the budget
    binds is measured record by record."""

    def __init__(self, batches: Batches) -> None:
        self.batches = batches
        self.count = 0
        """Records in the unit not yet closed."""
        self.size = 0

    def cuts(self, records: list[Record], where: Callable[[int], str]) -> Iterator[int]:
        """The indices in `records` where a unit closes (it holds the records before the
        index, with those carried from earlier lists); `where(i)` places record i in the
        refusal of a record over the byte budget."""
        limit, start = self.batches.records, 0
        while start < len(records):
            run = records[start : start + limit - self.count]
            size = _orjson_size(run)
            if size is not None and self.size + size - 1 <= self.batches.bytes:
                self.count, self.size = self.count + len(run), self.size + size - 1
            else:
                yield from self._by_record(run, start, where)
            start += len(run)
            if self.count == limit:
                yield start
                self.count = self.size = 0

    def _by_record(
        self, run: list[Record], start: int, where: Callable[[int], str]
    ) -> Iterator[int]:
        budget, what = self.batches.bytes, self.batches.what
        for offset, record in enumerate(run):
            record_bytes = record_size(record) + 1
            if record_bytes > budget:
                raise _over_budget(record_bytes, budget, what, where(start + offset))
            if self.count and self.size + record_bytes > budget:
                yield start + offset
                self.count = self.size = 0
            self.count += 1
            self.size += record_bytes


def batched(
    records: Iterable[Located], max_records: int, max_bytes: int, what: str = "unit"
) -> Iterator[list[Record]]:
    """Cut a stream into lists of at most max_records records and max_bytes bytes.

    Each record counts its compact JSON plus one byte (the comma between items), and a batch
    closes when the next record would not fit. orjson writes a list as its items joined by
    commas in brackets, so a batch fits when its JSON array, less one byte, does: one encode
    per batch answers the usual case, and only a batch over the byte budget (or one orjson
    cannot encode whole, which json would write otherwise) is measured record by record.
    """
    stream = iter(records)
    carried: list[Located] = []  # measured records left over from a batch cut by bytes
    while chunk := carried + list(islice(stream, max_records - len(carried))):
        whole = [record for record, _ in chunk]
        if (size := _orjson_size(whole)) is not None and size - 1 <= max_bytes:
            carried = []
            yield whole
            continue
        carried = yield from _cut_by_bytes(chunk, max_bytes, what)
        if len(carried) == len(chunk):  # record by record it fits
            carried = []
            yield whole


def _orjson_size(records: list[Record]) -> int | None:
    try:
        return len(orjson.dumps(records, option=orjson.OPT_NON_STR_KEYS))
    except TypeError:  # an integer past 64 bits: measured record by record
        return None


def _over_budget(record_bytes: int, max_bytes: int, what: str, where: str) -> InputError:
    return InputError(
        f"record is {record_bytes} bytes, over the {max_bytes}-byte {what} budget; "
        "shorten it or raise the budget setting",
        where,
    )


def _cut_by_bytes(
    chunk: list[Located], max_bytes: int, what: str
) -> Generator[list[Record], None, list[Located]]:
    """Yield the full batches of an over-budget chunk; return the records left over."""
    batch: list[Located] = []
    size = 0
    for record, where in chunk:
        record_bytes = record_size(record) + 1  # the comma between items
        if record_bytes > max_bytes:
            raise _over_budget(record_bytes, max_bytes, what, where)
        if batch and size + record_bytes > max_bytes:
            yield [r for r, _ in batch]
            batch, size = [], 0
        batch.append((record, where))
        size += record_bytes
    return batch
