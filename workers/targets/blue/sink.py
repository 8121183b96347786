"""Explorance Blue: one unit is one whole datasource import, one at a time per instance.

Blue commits a datasource in one transaction, so a job's rows form one unit
(never bisected: two halves would be two imports). The core's slot keyed by
the instance keeps a single import open per Blue across every worker; the
dedicated `blue` queue at concurrency 1 keeps workers from queuing on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from importq.errors import InputError
from importq.settings import Settings
from workers.targets.base import (
    PREFLIGHT_FACTS,
    Delivered,
    Located,
    Record,
    RunContext,
    Sink,
)
from workers.targets.blue.blocks import find_block, find_datasource
from workers.targets.blue.client import BlueClient
from workers.targets.blue.importing import BlueImport
from workers.targets.blue.limits import BlueLimits

BOOLEANS = {
    "abort_on_empty": True,
    "replace_blue_role": False,
    "replace_datasource_access_key": False,
    "replace_language_preferences": False,
}
OPTIONS = ("datasource", "block", "id_columns", *BOOLEANS)
_TRUTH = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
# The vendor doc's invalid ID characters: Blue skips such rows, so they are refused up front.
INVALID_ID_PARTS = (("||||||", "'||||||'"), ("'", "an apostrophe"), (",", "a comma"))


class BlueSink(Sink[BlueLimits, BlueClient]):
    def check_params(self, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
        unknown = sorted(set(params) - set(OPTIONS))
        if unknown:
            raise InputError(
                f"unknown blue option(s): {', '.join(unknown)} (known: {', '.join(OPTIONS)})"
            )
        datasource = str(params.get("datasource") or "").strip()
        if not datasource:
            raise InputError(
                "blue needs the datasource option (its SourceID, e.g. Data12, "
                "or its Caption): --param datasource=..."
            )
        checked: dict[str, Any] = {"datasource": datasource}
        if params.get("block"):
            checked["block"] = str(params["block"])
        id_columns = params.get("id_columns")
        if id_columns:
            names = id_columns.split(",") if isinstance(id_columns, str) else list(id_columns)
            checked["id_columns"] = [str(n).strip() for n in names if str(n).strip()]
        for option, default in BOOLEANS.items():
            checked[option] = _boolean(option, params.get(option, default))
        return checked

    def preflight(self, client: BlueClient, params: dict[str, Any]) -> dict[str, Any] | None:
        # Refuses a bad key, a denied IP or an unknown datasource or block before staging;
        # the block's columns, when Blue reports them, are checked against the first row.
        if not params.get("datasource"):  # `importq doctor`: the key and the address only
            client.datasources()
            return None
        source = find_datasource(client, params["datasource"])
        block = find_block(client, source, params.get("block"))
        if block.columns is None:
            return None
        return {"columns": list(block.columns), "block": block.name, "source": source.caption}

    def plan(
        self, records: Iterable[Located], limits: BlueLimits, params: dict[str, Any]
    ) -> Iterator[list[Record]]:
        unit: list[Record] = []
        columns: list[str] = []
        ids: list[str] = []
        for record, where in records:
            if not unit:
                columns = list(record)
                ids = params.get("id_columns") or columns[:1]
                _check_first(columns, ids, where)
                _check_block(columns, params.get(PREFLIGHT_FACTS), where)
            elif len(record) != len(columns) or set(record) != set(columns):
                raise InputError(_column_change(columns, list(record)), where)
            for column in ids:
                _check_id(column, record.get(column), where)
            unit.append(record)
        if unit:  # one import: Blue commits a datasource in one transaction
            yield unit

    def slot(self, params: dict[str, Any], limits: BlueLimits) -> tuple[str, int] | None:
        return f"instance:{limits.instance}", 1

    def slot_gap(self, params: dict[str, Any], limits: BlueLimits) -> float:
        return limits.import_gap_seconds

    def run(self, ctx: RunContext[BlueLimits, BlueClient]) -> Delivered:
        return BlueImport(ctx).run()

    def abandon(self, ctx: RunContext[BlueLimits, BlueClient]) -> Delivered | None:
        return BlueImport(ctx).abandon()


def _boolean(option: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    found = _TRUTH.get(str(value).strip().lower())
    if found is None:
        raise InputError(f"blue option {option}={value!r}: expected true or false")
    return found


def _check_first(columns: list[str], ids: list[str], where: str) -> None:
    if not columns:
        raise InputError("a Blue row needs at least one column", where)
    missing = [c for c in ids if c not in columns]
    if missing:
        raise InputError(
            f"ID column(s) {', '.join(missing)} not in the row (its columns: {', '.join(columns)})",
            where,
        )


def _check_block(columns: list[str], block: dict[str, Any] | None, where: str) -> None:
    """Refuse at publish rows whose columns Blue's data block would refuse at the worker."""
    if not block:
        return
    missing = [c for c in block["columns"] if c not in columns]
    extra = [c for c in columns if c not in block["columns"]]
    if missing or extra:
        raise InputError(
            f"the columns do not match data block '{block['block']}' of datasource "
            f"'{block['source']}': missing {', '.join(missing) or 'none'}; not in the block "
            f"{', '.join(extra) or 'none'} (the block has {', '.join(block['columns'])})",
            where,
        )


def _check_id(column: str, value: Any, where: str) -> None:
    text = "" if value is None else str(value)
    if not text.strip():
        raise InputError(f"{column}: the ID is empty; Blue skips rows without an ID", where)
    for part, name in INVALID_ID_PARTS:
        if part in text:
            raise InputError(
                f"{column}: ID {text!r} contains {name}, which Blue refuses in ID fields "
                "(it would skip the row); fix the ID",
                where,
            )


def _column_change(columns: list[str], found: list[str]) -> str:
    missing = [c for c in columns if c not in found]
    extra = [c for c in found if c not in columns]
    return (
        f"the row's columns differ from the first row's (missing {missing or 'none'}, "
        f"extra {extra or 'none'}); every row of a Blue import has the same columns"
    )
