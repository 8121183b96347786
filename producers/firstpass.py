"""The first pass over a plain JSON Lines file, or a list: check every record and cut the
units a block at a time, keeping no record.

For a target whose plan is `batched` (`Sink.batches`: cut by count and bytes, records kept
as read), publish checks the whole file before it sends a unit, then stages each unit's
own lines (producers/rawlines.py). This pass reads about a MiB of whole lines at a time
and spends one call per record on each step (orjson's parse, the compiled schema check)
and, on the byte budgets, one encode per unit: no location string, tuple or generator
step per record. A block with anything unusual in it (a BOM, a blank or whitespace line,
a line orjson cannot read, a value that is not an object, a record the compiled check
refuses) is read again the careful way: line by line, with the words and line numbers
every other input gets.

A list of records (`publish_records`) is checked and cut the same way, a block of records
at a time; its second pass takes the same slices, checks them again (a list can change
while it is published) and encodes each once.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

from importq import jsoncodec
from importq.errors import InputError
from producers import readers, validate
from producers.rawlines import Span
from workers.targets.base import Batches, Cutter, Record

BLOCK_BYTES = 1 << 20
BLOCK_RECORDS = 4096
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class _Block:
    """Whole lines of the file: `data` starts at byte `start`, on line `lineno`."""

    start: int
    lineno: int
    data: bytes

    def lines(self) -> list[bytes]:
        lines = self.data.split(b"\n")
        if not lines[-1]:  # the LF that ends the block, not a line after it
            lines.pop()
        return lines


def spans(path: Path, target: str, batches: Batches) -> Iterator[Span]:
    """Each unit of `batches`'s plan as a span of the file, once its records are checked;
    InputError at the first record refused (the caller then enqueues nothing)."""
    cutting = _Cutting(str(path), target, batches)
    with open(path, "rb") as f:
        for block in _blocks(f):
            yield from cutting.block(block)
    yield from cutting.end()


class _Cutting:
    """The units closed so far, and where the unit still open began."""

    def __init__(self, name: str, target: str, batches: Batches) -> None:
        self.name, self.target, self.batches = name, target, batches
        self.cutter = Cutter(batches)
        self.ends = _Ends()
        self.seen = self.first = 0  # records read; the first of the unit still open

    def block(self, block: _Block) -> Iterator[Span]:
        lines = block.lines()
        records, at = _records(block, lines, self.target, self.name, self.batches)

        def line_of(index: int) -> int:
            return at[index] if at is not None else index

        def where(index: int) -> str:
            return f"{self.name}:{block.lineno + line_of(index)}"

        for cut in self.cutter.cuts(records, where):
            # A cut before the block's first record closes the unit where the last ended.
            end = self.ends.after(block, lines, line_of(cut - 1)) if cut else self.ends.last
            yield self._closed(end, self.seen + cut)
        if records:
            self.ends.last = self.ends.after(block, lines, line_of(len(records) - 1))
        self.ends.passed(block)
        self.seen += len(records)

    def end(self) -> Iterator[Span]:
        if not self.seen:
            raise validate.no_records(self.name)
        if self.seen > self.first:
            yield self._closed(self.ends.last, self.seen)

    def _closed(self, end: tuple[int, int], after: int) -> Span:
        """The unit that ends at `end` (offset, CRC) and before record number `after`."""
        offset, crc = end
        span = Span(self.ends.unit_start, offset, after - self.first, crc)
        self.ends.unit_start, self.first = offset, after
        return span


class _Ends:
    """Byte offsets in the file and the CRC-32 of the file up to them, moved forward."""

    def __init__(self) -> None:
        self.offset = self.crc = 0
        self.unit_start = 0
        self.last = (0, 0)
        """Where the last record read so far ends, and the CRC-32 up to there."""
        # The lines of the current block counted so far, and the offset past them: a block
        # is asked about its lines in order, so each line is counted once however small
        # the units (a sum from the block's start at every cut was quadratic).
        self._block = self._lines = self._past = -1

    def after(self, block: _Block, lines: list[bytes], line: int) -> tuple[int, int]:
        """The offset just past `line` of `block` (its LF included), and the CRC to there.
        Asked about lines in order within a block."""
        if self._block != block.start:
            self._block, self._lines, self._past = block.start, 0, block.start
        counted = lines[self._lines : line + 1]
        self._past += sum(map(len, counted)) + len(counted)
        self._lines = max(self._lines, line + 1)
        end = min(self._past, block.start + len(block.data))
        self._to(block, end)
        return end, self.crc

    def passed(self, block: _Block) -> None:
        self._to(block, block.start + len(block.data))

    def _to(self, block: _Block, offset: int) -> None:
        self.crc = zlib.crc32(block.data[self.offset - block.start : offset - block.start],
                              self.crc)  # fmt: skip
        self.offset = offset


def _blocks(f: BinaryIO) -> Iterator[_Block]:
    """The file in blocks of whole lines (a line longer than a block is one block; its
    pieces are joined once its end is found, not copied again at every read)."""
    start, lineno, pieces = 0, 1, []
    while chunk := f.read(BLOCK_BYTES):
        if b"\n" not in chunk:
            pieces.append(chunk)
            continue
        data = b"".join([*pieces, chunk]) if pieces else chunk
        cut = data.rfind(b"\n") + 1
        yield _Block(start, lineno, data[:cut])
        start, lineno = start + cut, lineno + data.count(b"\n", 0, cut)
        pieces = [data[cut:]] if cut < len(data) else []
    if pieces:
        yield _Block(start, lineno, b"".join(pieces))


def _records(
    block: _Block, lines: list[bytes], target: str, name: str, batches: Batches
) -> tuple[list[Record], list[int] | None]:
    """The block's records, checked, and the line (in the block) of each one: None when
    every line is a record, as in the usual block."""
    records = _usual(block, lines, target)
    if records is not None:
        return records, None
    careful = list(_careful(block, lines, target, name, batches))
    return [record for record, _ in careful], [line for _, line in careful]


def _usual(block: _Block, lines: list[bytes], target: str) -> list[Record] | None:
    """Every line parsed and checked in one call each, or None if any needs more care."""
    if block.lineno == 1 and block.data.startswith(_BOM):
        return None
    try:
        records = list(map(orjson.loads, lines))  # an empty line is a decode error too
    except orjson.JSONDecodeError:
        return None
    return records if validate.all_valid(target, records) else None


def _careful(
    block: _Block, lines: list[bytes], target: str, name: str, batches: Batches
) -> Iterator[tuple[Record, int]]:
    """Line by line, as `read_records` reads: each line checked (its JSON, its schema, its
    size against the byte budget) before the next is read, so the first refusal
    (InputError) is the one at the earliest line."""
    for line, text in enumerate(lines):
        lineno = block.lineno + line
        record = readers.careful_line(text, lineno, name)
        if record is not None:
            where = f"{name}:{lineno}"
            validate.check_record(target, record, where)
            batches.refuse_oversized(record, where)
            yield record, line


# -- a list --------------------------------------------------------------------------------


def counts(records: Sequence[Record], target: str, batches: Batches, source: str) -> Iterator[int]:
    """Each unit's record count, once its records are checked (`spans` for a list);
    InputError at the first record refused, placed as `locate` places it."""
    cutter, first = Cutter(batches), 0
    for start in range(0, len(records), BLOCK_RECORDS):
        block = list(records[start : start + BLOCK_RECORDS])
        where = _places(source, start)
        _check(target, block, where, batches)
        for cut in cutter.cuts(block, where):
            yield start + cut - first
            first = start + cut
    if not records:
        raise validate.no_records(None)
    if len(records) > first:
        yield len(records) - first


def units(
    records: Sequence[Record], counts: list[int], target: str, source: str, batches: Batches
) -> Iterator[tuple[int, bytes]]:
    """The units `counts` cut, each checked again (the list can change while it is sent)
    and encoded once: each one's record count and compact JSON array. InputError if the
    list changed: other records, a record refused, a unit now over the byte budget."""
    start = 0
    for count in counts:
        unit = list(records[start : start + count])
        if len(unit) != count:
            raise InputError(f"it now holds {len(records)} records, not the ones checked")
        _check(target, unit, _places(source, start), batches)
        array = jsoncodec.dumps(unit)
        if len(array) - 1 > batches.bytes:  # each record and its comma: the cut's measure
            budget = f"the {batches.bytes}-byte {batches.what} budget they were cut to"
            raise InputError(f"records {start + 1}-{start + count} grew past {budget}")
        yield count, array
        start += count
    if start != len(records):
        raise InputError(f"it now holds {len(records)} records, not the {start} checked")


def _places(source: str, start: int) -> Callable[[int], str]:
    return lambda index: f"{source} {start + index + 1}"


def _check(
    target: str, records: list[Record], where: Callable[[int], str], batches: Batches
) -> None:
    """InputError for the first record refused; record by record (with the byte budget,
    so an oversized record before a refused one is the one named) only if one is."""
    if not validate.all_valid(target, records):
        for index, record in enumerate(records):
            validate.check_record(target, record, where(index))
            batches.refuse_oversized(record, where(index))
