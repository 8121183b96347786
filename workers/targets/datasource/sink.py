"""One publish per unit: a replace (Rows, then NewRows), an upsert (NewRows) or a delete.

The whole publish is one unit, so a replace interrupted between its Rows and
its NewRows requests runs again from its Rows request, and the data source ends
with exactly the published rows. Each request is idempotent on its own (replace
all, add-or-update by key, delete by key), so a rerun is safe as long as no
other publish touches the data source meanwhile: a slot of one per data source
and publish order per data source see to that.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from importq.errors import FinalError, InputError
from importq.settings import Settings
from workers.retry import resend
from workers.targets.base import Delivered, Located, Record, RunContext, Sink
from workers.targets.datasource.client import (
    DISPLAY_AT,
    DataSourceClient,
    DataSourceRef,
    Header,
)
from workers.targets.datasource.limits import DATA_SOURCE_SLOTS, VENDOR_MIN_VALS, DataSourceLimits

MODES = ("replace", "upsert", "delete")
PARAMS = ("mode", "external_id", "id", "name", "headers")
# XML 1.0 cannot carry these (nor can UTF-8 carry lone surrogates): refused in either format,
# so switching DATASOURCE_FORMAT never strands a job that was accepted.
_UNSENDABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class Publish:
    """A job's parameters: what to do to which data source, with which Headers."""

    mode: str
    name: str
    external_id: str | None
    id: str | None
    headers: tuple[Header, ...]

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Publish:
        unknown = sorted(set(params) - set(PARAMS))
        if unknown:
            raise InputError(
                f"unknown datasource option(s) {', '.join(unknown)}; known: {', '.join(PARAMS)}"
            )
        mode = _text(params, "mode").strip().lower()
        if mode not in MODES:
            raise InputError(
                f"mode must be replace (the full data set), upsert (new or changed rows) or "
                f"delete (keys), got {mode!r}",
                "param mode",
            )
        external_id, data_source_id = _text(params, "external_id"), _text(params, "id")
        if not (external_id or data_source_id):
            raise InputError(
                "give the data source's ExternalId (or its GUID as id)", "param external_id"
            )
        if data_source_id:
            data_source_id = _guid(data_source_id)
        name = _text(params, "name")
        if not name.strip():
            raise InputError(
                "required: the vendor overwrites the data source's Name with it", "param name"
            )
        headers = parse_headers(_text(params, "headers"), required=mode != "delete")
        return cls(mode, name, external_id or None, data_source_id, headers)

    def params(self) -> dict[str, str]:
        values = {
            "mode": self.mode,
            "external_id": self.external_id,
            "id": self.id,
            "name": self.name,
            "headers": render_headers(self.headers),
        }
        return {key: value for key, value in values.items() if value}

    def data_source(self) -> DataSourceRef:
        # A DeletedRows row has one Val, so Headers sent with it would not match its rows.
        headers = () if self.mode == "delete" else self.headers
        return DataSourceRef(self.name, self.external_id, self.id, headers)


def _text(params: dict[str, Any], key: str) -> str:
    value = params.get(key) or ""
    if not isinstance(value, str):
        raise InputError(f"expected a string, got {type(value).__name__}", f"param {key}")
    return value


def _guid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InputError(
            f"not a GUID: {value!r} (or give external_id instead)", "param id"
        ) from None


def parse_headers(text: str, *, required: bool) -> tuple[Header, ...]:
    """Headers from "Code:Title,Name:SubLeft,Info": column order, each :DisplayAt optional."""
    if not text.strip():
        if required:
            raise InputError(
                "required for replace and upsert: the column names in order, "
                "e.g. Code:Title,Name:SubLeft,Info",
                "param headers",
            )
        return ()
    display_at = {option.lower(): option for option in DISPLAY_AT}
    headers: list[Header] = []
    for item in (part.strip() for part in text.split(",")):
        name, colon, display = item.rpartition(":") if ":" in item else (item, "", "")
        if colon and display.lower() not in display_at:
            raise InputError(
                f"{item!r}: DisplayAt must be one of {', '.join(DISPLAY_AT)}", "param headers"
            )
        if not name or name in (h.name for h in headers):
            what = "an empty header name" if not name else f"header {name!r} twice"
            raise InputError(f"{what} in {text!r}", "param headers")
        headers.append(Header(name, display_at[display.lower()] if colon else None))
    if len(headers) < VENDOR_MIN_VALS:
        raise InputError(
            f"{len(headers)} header(s): every row needs at least {VENDOR_MIN_VALS} "
            "Vals (its key, then its label)",
            "param headers",
        )
    return tuple(headers)


def render_headers(headers: tuple[Header, ...]) -> str:
    return ",".join(f"{h.name}:{h.display_at}" if h.display_at else h.name for h in headers)


def row_vals(record: Record, where: str, publish: Publish) -> list[str]:
    """The record's Vals in header order, checked against the vendor's rules for its mode."""
    vals = record["Vals"]
    if isinstance(vals, dict):
        vals = _keyed_vals(vals, where, publish)
    names = [header.name for header in publish.headers]
    if publish.mode == "delete" and len(vals) != 1:
        raise InputError(
            f"a delete names a row by its key alone: give 1 Val (the row's first), not {len(vals)}",
            where,
        )
    if publish.mode != "delete" and len(vals) != len(names):
        raise InputError(
            f"{len(vals)} Val(s) but {len(names)} headers ({', '.join(names)}): every row needs "
            f"one Val per header, at least {VENDOR_MIN_VALS}",
            where,
        )
    if not vals[0]:
        raise InputError(
            "Val 1 is empty: the first Val is the row's key (what deletes match)", where
        )
    bad = next((n for n, val in enumerate(vals, 1) if _UNSENDABLE.search(val)), None)
    if bad is not None:
        raise InputError(f"Val {bad} holds a control character the API cannot carry", where)
    return list(vals)


def _keyed_vals(vals: dict[str, str], where: str, publish: Publish) -> list[str]:
    names = [header.name for header in publish.headers]
    if not names:
        raise InputError(
            "Vals is keyed by header name, but the job gives no headers param; "
            "give headers, or Vals as a list",
            where,
        )
    unknown = [key for key in vals if key not in names]
    if unknown:
        raise InputError(f"Vals.{unknown[0]}: not a header (headers: {', '.join(names)})", where)
    if publish.mode == "delete":
        extra = [key for key in vals if key != names[0]]
        if extra:
            raise InputError(
                f"a delete names a row by its key alone: give Vals.{names[0]} only, "
                f"not Vals.{extra[0]}",
                where,
            )
        return [vals.get(names[0], "")]
    return [vals.get(name, "") for name in names]  # a missing (or empty CSV) cell is an empty Val


def requests_for(
    mode: str, rows: list[list[str]], limits: DataSourceLimits
) -> Iterator[tuple[str, list[list[str]]]]:
    """The requests of one publish, in order, each within its kind's limit."""
    kind, size = ("DeletedRows", limits.deleted_rows_per_request)
    if mode != "delete":
        kind, size = ("NewRows", limits.new_rows_per_request)
    start = 0
    if mode == "replace":  # Rows replaces everything; what does not fit follows as NewRows
        start = limits.rows_per_request
        yield "Rows", rows[:start]
    for offset in range(start, len(rows), size):
        yield kind, rows[offset : offset + size]


Context = RunContext[DataSourceLimits, DataSourceClient]


class DataSourceSink(Sink[DataSourceLimits, DataSourceClient]):
    def check_params(self, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
        return Publish.from_params(params).params()

    # No preflight: the API's only call is the PUT, which overwrites the Name at least.

    def plan(
        self, records: Iterable[Located], limits: DataSourceLimits, params: dict[str, Any]
    ) -> Iterator[list[Record]]:
        publish = Publish.from_params(params)
        rows: list[Record] = []
        seen: dict[str, str] = {}
        for record, where in records:
            if len(rows) >= limits.rows_per_data_source:
                raise InputError(
                    f"more than {limits.rows_per_data_source} rows: a data source "
                    "holds no more; nothing was sent",
                    where,
                )
            vals = row_vals(record, where, publish)
            if vals[0] in seen:
                raise InputError(
                    f"key {vals[0]!r} (Val 1) repeats the row at {seen[vals[0]]}", where
                )
            seen[vals[0]] = where
            rows.append({"Vals": vals})
        if rows:
            yield rows  # the whole publish is the unit: a rerun starts over from its first request

    def slot(self, params: dict[str, Any], limits: DataSourceLimits) -> tuple[str, int] | None:
        return f"ds:{self.order_key(params)}", DATA_SOURCE_SLOTS

    def order_key(self, params: dict[str, Any]) -> str | None:
        return str(params.get("external_id") or params.get("id") or "") or None

    def holds_order_on_failure(self, params: dict[str, Any]) -> bool:
        # A failed replace may have applied its Rows (the data source truncated to them)
        # without its NewRows: upserts after it would run on a partial data set.
        return str(params.get("mode", "")).lower() == "replace"

    def run(self, ctx: Context) -> Delivered:
        client = ctx.client
        limits = ctx.limits
        publish = Publish.from_params(ctx.params)
        data_source = publish.data_source()
        rows = [record["Vals"] for record in ctx.records]
        requests = list(requests_for(publish.mode, rows, limits))
        for number, (kind, chunk) in enumerate(requests, start=1):
            ctx.checkpoint()
            try:
                resend(
                    partial(client.put, data_source, kind, chunk), attempts=limits.resend_attempts
                )
            except FinalError as error:
                raise _with_progress(error, number, len(requests)) from None
            ctx.log.info(
                "data source updated",
                data_source=data_source.key,
                kind=kind,
                rows=len(chunk),
                request=number,
                requests=len(requests),
            )
        return Delivered(len(rows))


def _with_progress(error: FinalError, number: int, total: int) -> FinalError:
    if number == 1:
        return error
    done = f"request {number} of {total}; the {number - 1} before it were applied"
    return type(error)(
        f"{error.message} ({done})",
        target=error.target,
        answer=error.answer,
    )
