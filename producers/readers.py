"""Streaming readers that turn JSON Lines, JSON array and CSV input into (record, where) pairs."""

from __future__ import annotations

import csv
import difflib
import gzip
import json
import re
import sys
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import ijson

from importq import jsoncodec
from importq.errors import InputError
from producers import rawlines
from producers.problems import Problems, refuse
from workers.targets.base import CsvColumns

__all__ = [
    "FORMATS",
    "CsvColumns",
    "Located",
    "Record",
    "csv_columns_for",
    "detect_format",
    "json_type",
    "read_records",
]

Record = dict[str, Any]
# A record and where it came from: "file:line", or "file:item n" for JSON arrays.
Located = tuple[Record, str]

FORMATS = ("jsonl", "json", "csv")
_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}
_ALIASES = {"ndjson": "jsonl"}
_STDIN = "-"
_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_SUFFIX = ".gz"
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def csv_columns_for(target: str) -> CsvColumns:
    """The CSV column mapping of `target`; InputError if the target takes no CSV."""
    from workers import targets  # the mapping lives with each target package

    columns = targets.get(target).csv
    if columns is None:
        supported = ", ".join(sorted(n for n, t in targets.TARGETS.items() if t.csv))
        raise InputError(
            f"CSV input is not supported for target {target!r} (supported: {supported})"
        )
    return columns


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    """The input format: `fmt` if given, else from the file extension; InputError if unknown."""
    if fmt is not None:
        kind = _ALIASES.get(fmt.lower(), fmt.lower())
        if kind not in FORMATS:
            raise InputError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
        return kind
    if str(path) == _STDIN:
        raise InputError(f"reading from stdin needs a format ({', '.join(FORMATS)})")
    suffix = Path(path).suffix.lower()
    if suffix == _GZIP_SUFFIX:  # in.csv.gz: the format is the extension inside
        suffix = Path(path).with_suffix("").suffix.lower()
    try:
        return _EXTENSIONS[suffix]
    except KeyError:
        known = ", ".join(_EXTENSIONS)
        raise InputError(
            f"cannot tell the format from the extension {suffix or '(none)'!r}"
            f" (known: {known}); give the format explicitly",
            where=str(path),
        ) from None


def read_records(
    path: str | Path | BinaryIO,
    fmt: str | None = None,
    *,
    target: str | None = None,
    problems: Problems | None = None,
    name: str | None = None,
) -> Iterator[Located]:
    """Stream the records of `path` ("-" for stdin) as (record, where) pairs.

    `name` is how errors place a record (default: the path): `importq serve` reads a
    request body (an open binary stream, given with `fmt`) and names it "body".
    Format, file and CSV-mapping problems raise here, before iteration starts;
    problems inside the data raise while iterating, at the record concerned; with
    `problems` (a dry run), those of one record are noted there and the record skipped.
    """
    # A stream, like stdin, has no file name to tell its format by: it needs `fmt`.
    kind = detect_format(path if isinstance(path, str | Path) else _STDIN, fmt)
    name = name or ("<stdin>" if str(path) == _STDIN else str(path))
    if isinstance(path, str | Path) and str(path) != _STDIN:
        _check_file(Path(path))
    if kind == "jsonl":
        return _read_jsonl(path, name, problems)
    if kind == "json":
        return _read_json_array(path, name, problems)
    if target is None:
        raise InputError("CSV input needs a target (it decides how columns map to fields)")
    return _read_csv(path, name, csv_columns_for(target), problems)


class RecordFile:
    """The records of a file, read afresh each time it is iterated: publish reads a file
    twice (a check of every record, then staging), so workers start before it is done.

    Format and file problems raise here, as read_records does. A file that changed since
    (its size or modification time) is refused when it is read again.
    """

    def __init__(self, path: str | Path, fmt: str | None = None, *, target: str | None = None):
        self.path, self.fmt, self.target = Path(path), fmt, target
        read_records(path, fmt, target=target)  # refuses a missing file or unknown format now
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int]:
        stat = self.path.stat()
        return stat.st_size, stat.st_mtime_ns

    def __iter__(self) -> Iterator[Located]:
        self.unchanged()
        return read_records(self.path, self.fmt, target=self.target)

    def unchanged(self) -> None:
        """Raise InputError if the file changed since it was first opened."""
        if self._stat() != self._stamp:
            raise InputError("the file changed while it was published; publish it again "
                             "once it is complete", where=str(self.path))  # fmt: skip

    def plain_json_lines(self) -> bool:
        """Whether the file is JSON Lines read as it lies on disk (not gzip): the first
        pass can then read it in blocks and the second stage its own lines."""
        plain = detect_format(self.path, self.fmt) == "jsonl"
        return plain and rawlines.is_plain(self.path, _GZIP_MAGIC, _GZIP_SUFFIX)


def records_of(
    path: str | Path, fmt: str | None = None, *, target: str | None = None
) -> Iterable[Located]:
    """A file's records as a RecordFile (read twice by publish); stdin's read once."""
    if str(path) == _STDIN:
        return read_records(path, fmt, target=target)
    return RecordFile(path, fmt, target=target)


# -- files ------------------------------------------------------------------------------------


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError("no such file", where=str(path))
    if path.is_dir():
        raise InputError("is a directory, not a file", where=str(path))


def _os_reason(error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, IsADirectoryError):
        return "is a directory, not a file"
    if isinstance(error, PermissionError):
        return "permission denied"
    return error.strerror or str(error)


@contextmanager
def _open_binary(path: str | Path | BinaryIO, name: str) -> Iterator[BinaryIO]:
    """The input's bytes; gzip (by its .gz name or its magic bytes) decompressed as a stream."""
    if not isinstance(path, str | Path):  # a stream the caller opened (and closes)
        with _decompressed(path, name) as f:
            yield f
        return
    if str(path) == _STDIN:
        with _decompressed(sys.stdin.buffer, name) as f:  # stdin is not ours to close
            yield f
        return
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below, after the open error is translated
    except OSError as e:
        raise InputError(_os_reason(e), where=name) from None
    with raw, _decompressed(raw, name) as f:
        yield f


@contextmanager
def _decompressed(raw: BinaryIO, name: str) -> Iterator[BinaryIO]:
    stream: BinaryIO
    if hasattr(raw, "peek"):  # files and sys.stdin.buffer: look without consuming
        head = raw.peek(len(_GZIP_MAGIC))[: len(_GZIP_MAGIC)]
        stream = raw
    else:
        head = raw.read(len(_GZIP_MAGIC))
        stream = _Prefixed(head, raw)  # type: ignore[assignment]
    if head != _GZIP_MAGIC and not name.lower().endswith(_GZIP_SUFFIX):
        yield stream
        return
    try:
        with gzip.GzipFile(fileobj=stream, mode="rb") as unzipped:
            yield unzipped  # type: ignore[misc]
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise InputError(
            f"not a valid gzip stream ({e}); check the file is complete, or give it uncompressed",
            where=name,
        ) from None


def json_type(value: object) -> str:
    """The JSON type name of `value` ("object", "string"...), else its Python type name."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    names = {str: "string", dict: "object", list: "array", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# -- JSON Lines -------------------------------------------------------------------------------


def _parse_line(line: bytes, where: str) -> Record:
    try:
        value = jsoncodec.loads(line)
    except UnicodeDecodeError as e:
        raise InputError(f"not valid UTF-8: {e.reason} at byte {e.start + 1}", where) from None
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON: {e.msg} at column {e.colno}", where) from None
    except ValueError as e:
        raise InputError(f"not valid JSON: {e}", where) from None
    if not isinstance(value, dict):
        raise InputError(f"expected a JSON object, got {json_type(value)}", where)
    return value


def _read_jsonl(
    path: str | Path | BinaryIO, name: str, problems: Problems | None
) -> Iterator[Located]:
    fast_loads, fast_error = jsoncodec.fast_loads, jsoncodec.FastDecodeError
    with _open_binary(path, name) as f:
        for lineno, line in enumerate(f, 1):
            # The usual line, one JSON object, in one call; the rest (a BOM, blank lines,
            # big integers, errors) takes the careful way.
            try:
                fast = fast_loads(line)
            except fast_error:
                fast = None
            if type(fast) is dict:
                yield fast, f"{name}:{lineno}"
            elif (record := careful_line(line, lineno, name, problems)) is not None:
                yield record, f"{name}:{lineno}"


def careful_line(
    line: bytes, lineno: int, name: str, problems: Problems | None = None
) -> Record | None:
    """Line `lineno`'s record, read the careful way: None for a blank line; a line that is
    not one JSON object is refused (InputError, or noted in `problems` and None)."""
    if lineno == 1 and line.startswith(_BOM):
        line = line[len(_BOM) :]
    if not line or line.isspace():
        return None
    where = f"{name}:{lineno}"
    try:
        return _parse_line(line, where)
    except InputError as error:
        refuse(error, problems)
        return None


# -- JSON array -------------------------------------------------------------------------------


class _Prefixed:
    """A binary reader that returns `head` before the rest of `f` (stdin cannot seek back)."""

    def __init__(self, head: bytes, f: BinaryIO) -> None:
        self._head = head
        self._f = f

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""
        if not self._head:
            return self._f.read(size)
        head, self._head = self._head, b""
        return head

    def readline(self) -> bytes:
        head, self._head = self._head, b""
        if b"\n" in head:
            end = head.index(b"\n") + 1
            self._head = head[end:]
            return head[:end]
        return head + self._f.readline()

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


def _skip_leading_space(f: BinaryIO) -> tuple[bytes, int]:
    """Read past a BOM and whitespace: the bytes from the first other one on, and its line."""
    line = 1
    chunk = f.read(len(_BOM))
    if chunk == _BOM:
        chunk = b""
    while True:
        for i, byte in enumerate(chunk):
            if byte == 0x0A:
                line += 1
            elif byte not in b" \t\r":
                return chunk[i:], line
        chunk = f.read(4096)
        if not chunk:
            return b"", line


_FIRST_BYTE_TYPES = {ord("{"): "an object", ord('"'): "a string", ord("t"): "a boolean"}
_FIRST_BYTE_TYPES |= {ord("f"): "a boolean", ord("n"): "null"}
_FIRST_BYTE_TYPES |= {ord(c): "a number" for c in "-0123456789"}


def _ijson_reason(error: Exception) -> str:
    # yajl says "what\n  <excerpt>\n  (right here) ---^": keep what and the excerpt.
    lines = [line.strip() for line in str(error).splitlines()]
    what = lines[0] if lines else type(error).__name__
    excerpt = lines[1] if len(lines) > 1 else ""
    return f"{what} near {excerpt!r}" if excerpt else what


def _read_json_array(
    path: str | Path | BinaryIO, name: str, problems: Problems | None
) -> Iterator[Located]:
    with _open_binary(path, name) as f:
        head, line = _skip_leading_space(f)
        if not head:
            raise InputError("not valid JSON: the file is empty (expected an array)", f"{name}:1")
        if head[0] != ord("["):
            got = _FIRST_BYTE_TYPES.get(head[0], "something that is not JSON")
            raise InputError(f"expected a JSON array of objects, got {got}", f"{name}:{line}")
        n = 0
        try:
            # use_float: numbers as float, not Decimal, so records stay plain JSON values.
            for item in ijson.items(_Prefixed(head, f), "item", use_float=True):
                n += 1
                where = f"{name}:item {n}"
                if not isinstance(item, dict):
                    got = f"expected a JSON object, got {json_type(item)}"
                    refuse(InputError(got, where), problems)
                    continue
                yield item, where
        except ijson.JSONError as e:
            raise InputError(
                f"not valid JSON: {_ijson_reason(e)}", f"{name}:item {n + 1}"
            ) from None


# -- CSV --------------------------------------------------------------------------------------

# A plan step: (column as in the header, where the value goes, field name).
_FIELD = "field"
_BOOL = "bool"
# A free-form column: every row has it, empty or not (a row is the header's columns).
_CELL = "cell"
_Step = tuple[str, str, str]


def _unknown_column(column: str, columns: CsvColumns) -> str:
    allowed = columns.allowed()
    close = difflib.get_close_matches(column, allowed, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"unknown column {column!r} ({hint}allowed: {', '.join(allowed)})"


def _step_for(column: str, columns: CsvColumns) -> _Step | None:
    if column in columns.fields:
        return (column, _FIELD, column)
    if column in columns.booleans:
        return (column, _BOOL, column)
    prefix, dot, field = column.partition(".")
    if dot and field and prefix in columns.prefixes:
        return (column, prefix, field)
    if columns.other_columns == "":
        return (column, _CELL, column)
    if columns.other_columns:
        return (column, columns.other_columns, column)
    return None


def _csv_plan(header: Sequence[str] | None, columns: CsvColumns, name: str) -> list[_Step]:
    where = f"{name}:1"
    if not header or not any(h.strip() for h in header):
        raise InputError(f"no header row (expected columns: {', '.join(columns.allowed())})", where)
    seen: set[str] = set()
    plan: list[_Step] = []
    for column in header:
        if column in seen:
            raise InputError(f"duplicate column {column!r}", where)
        seen.add(column)
        step = _step_for(column, columns)
        if step is None:
            raise InputError(_unknown_column(column, columns), where)
        plan.append(step)
    missing = [c for c in columns.required if c not in seen]
    if missing:
        raise InputError(f"missing required column(s): {', '.join(missing)}", where)
    return plan


def _parse_bool(value: str, column: str, where: str) -> bool:
    try:
        return _BOOLEANS[value.strip().lower()]
    except KeyError:
        raise InputError(
            f"column {column}: expected true/false/1/0/yes/no, got {value!r}", where
        ) from None


def _csv_record(cells: list[str], plan: list[_Step], where: str) -> Record:
    record: Record = {}
    for (column, kind, field), value in zip(plan, cells, strict=False):
        if kind == _CELL:
            record[field] = value
            continue
        if not value:  # empty cell
            continue
        if kind == _FIELD:
            record[field] = value
        elif kind == _BOOL:
            record[field] = _parse_bool(value, column, where)
        else:
            record.setdefault(kind, {})[field] = value
    for _, kind, field in plan[len(cells) :]:  # a short row: its last cells are empty
        if kind == _CELL:
            record[field] = ""
    return record


# A lone CR ends a line too (files from old Mac tools); CRLF is one line end.
_LONE_CR = re.compile(r"(?<=\r)(?!\n)")


class _PhysicalLines:
    """The text lines of a CSV file as the csv module reads them, counted as they are read.

    Decoding line by line names the exact line of bad UTF-8, and a count of quotes per line
    says where a quoted cell that never closes was opened (a doubled quote counts twice).
    """

    def __init__(self, raw: BinaryIO, name: str) -> None:
        self._raw = raw
        self._name = name
        self.number = 0  # physical lines handed to the csv module so far
        self.quote_opened_at = 0  # the line where the quote still open was opened, else 0

    def __iter__(self) -> Iterator[str]:
        for line in self._raw:
            if self.number == 0 and line.startswith(_BOM):
                line = line[len(_BOM) :]
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as e:
                where = f"{self._name}:{self.number + 1}"
                reason = f"not valid UTF-8: {e.reason} at byte {e.start + 1}"
                raise InputError(reason, where) from None
            pieces = _LONE_CR.split(text) if "\r" in text else (text,)
            for piece in pieces:
                self.number += 1
                if piece.count('"') % 2:
                    self.quote_opened_at = 0 if self.quote_opened_at else self.number
                yield piece

    def record_ended(self) -> None:
        self.quote_opened_at = 0


def _unclosed_quote(lines: _PhysicalLines, start: int, name: str, error: csv.Error) -> InputError:
    opened = lines.quote_opened_at or start
    limit = csv.field_size_limit()
    how = f"within {limit} characters" if "field limit" in str(error) else "before the file ends"
    return InputError(
        f"a quoted cell opens on this line and is never closed {how}: a stray '\"'? "
        'Close the quote where the cell ends, or write a quote inside a cell as two ("")',
        f"{name}:{opened}",
    )


def _line_break_refusal(header: list[str], cells: list[str], end: int, where: str) -> InputError:
    index = next(i for i, cell in enumerate(cells) if "\n" in cell or "\r" in cell)
    column = header[index] if index < len(header) else f"cell {index + 1}"
    return InputError(
        f"column {column}: a quoted cell opens on this line and runs on to line {end}, but "
        "this target takes no line breaks in a cell: a stray '\"'? Close the quote where "
        'the cell ends, or write a quote inside a cell as two ("")',
        where,
    )


def _read_csv(
    path: str | Path | BinaryIO, name: str, columns: CsvColumns, problems: Problems | None
) -> Iterator[Located]:
    with _open_binary(path, name) as raw:
        lines = _PhysicalLines(raw, name)
        # strict: text after a closing quote, or a quote never closed, is an error rather than
        # a cell that quietly swallows the rows after it.
        reader = csv.reader(lines, strict=True)
        start = 1
        try:
            header = next(reader, None)
            plan = _csv_plan(header, columns, name)
            assert header is not None
            width = len(plan)
            while True:
                lines.record_ended()
                start = lines.number + 1
                cells = next(reader, None)
                if cells is None:
                    return
                if not cells:  # a blank line
                    continue
                where = f"{name}:{start}"
                try:
                    if len(cells) > width:
                        raise InputError(f"{len(cells)} cells but the header has {width}", where)
                    if lines.number > start and not columns.line_breaks:
                        raise _line_break_refusal(header, cells, lines.number, where)
                    record = _csv_record(cells, plan, where)
                except InputError as error:
                    refuse(error, problems)
                    continue
                yield record, where
        except csv.Error as e:
            if "expected after" in str(e):
                raise InputError(
                    f"not valid CSV: {e} (text follows a closing quote; quote the whole cell "
                    'and write a quote inside it as two ("")',
                    f"{name}:{lines.number}",
                ) from None
            raise _unclosed_quote(lines, start, name, e) from None
