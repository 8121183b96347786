"""Find a job's datasource and data block in Blue, and check its columns before importing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from importq.errors import FinalError, NotFoundError
from workers.targets.base import Record
from workers.targets.blue.answers import DataBlock, DataSource
from workers.targets.blue.client import BlueClient
from workers.targets.blue.refusals import TARGET


@dataclass(frozen=True)
class ImportTarget:
    """Where one import goes, and the column order of its rows (ColumnNamesList)."""

    source: DataSource
    block: str
    columns: list[str]
    id_column: str
    columns_reported: bool = True
    """False: Blue did not say the block's columns, so the first push is their check."""


def find_datasource(client: BlueClient, wanted: str) -> DataSource:
    """The datasource whose SourceID, else whose Caption, is `wanted` (GetDataSourceList)."""
    sources = client.datasources()
    for found in (
        [s for s in sources if s.source_id == wanted],
        [s for s in sources if s.caption == wanted],
        [s for s in sources if s.caption.casefold() == wanted.casefold()],
    ):
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            ids = ", ".join(s.source_id for s in found)
            raise FinalError(
                f"several datasources are called '{wanted}' ({ids}): give its SourceID",
                target=TARGET,
            )
    known = ", ".join(f"{s.source_id} '{s.caption}'" for s in sources[:20]) or "none"
    raise NotFoundError(
        f"datasource does not exist: '{wanted}' is no SourceID or Caption in Blue's "
        f"GetDataSourceList (it has: {known}); check the job's datasource option",
        target=TARGET,
    )


def find_block(client: BlueClient, source: DataSource, wanted: str | None) -> DataBlock:
    """The data block `wanted`, or the datasource's only block (GetDataBlockInformation)."""
    blocks = client.data_blocks(source.source_id)
    names = ", ".join(b.name for b in blocks) or "none"
    if wanted:
        for block in blocks:
            if block.name == wanted:
                return block
        raise NotFoundError(
            f"Could not find the data block '{wanted}' in datasource {source.source_id} "
            f"'{source.caption}' (it has: {names}); check the job's block option",
            target=TARGET,
        )
    if len(blocks) != 1:
        raise FinalError(
            f"datasource {source.source_id} '{source.caption}' has {len(blocks)} data blocks "
            f"({names}): choose one with the block option",
            target=TARGET,
        )
    return blocks[0]


def target_for(client: BlueClient, params: dict[str, Any], records: list[Record]) -> ImportTarget:
    """Resolve the job's datasource and block; refuse a column mismatch before any transaction."""
    source = find_datasource(client, params["datasource"])
    block = find_block(client, source, params.get("block"))
    given = list(records[0]) if records else list(block.columns or ())
    columns = check_columns(source, block, given)
    id_columns = params.get("id_columns") or columns[:1]
    return ImportTarget(source, block.name, columns, id_columns[0] if id_columns else "",
                        columns_reported=block.columns is not None)  # fmt: skip


def check_columns(source: DataSource, block: DataBlock, given: list[str]) -> list[str]:
    """The block's column order when Blue reports it, after checking the rows match it."""
    if block.columns is None:  # this Blue does not say: the first push is the check
        return given
    missing = [c for c in block.columns if c not in given]
    extra = [c for c in given if c not in block.columns]
    if missing or extra:
        blue_says = f"Blue would answer 'Missing value on {missing[0]} field'; " if missing else ""
        raise FinalError(
            f"the rows' columns do not match data block '{block.name}' of datasource "
            f"{source.source_id} '{source.caption}': missing {missing or 'none'}, not in the "
            f"block {extra or 'none'}. {blue_says}no transaction was opened. Fix the input's "
            "column names",
            target=TARGET,
        )
    return list(block.columns)
