"""The second pass over a JSON Lines file without parsing it again.

For a target whose plan is `batched` (its sink's `batches` says so: the records are cut by
count and bytes and kept as they were read), the first pass (producers/firstpass.py) cuts
the units keeping no record and notes where each unit's lines end in the file. Each
unit's staged payload is then its raw lines made into one JSON array, `[line,line,...]`:
no second parse, no encode. The worker parses that array into the
records the first pass checked (the same parser reads the same text). The units are the
ones `batched` cuts, by the same sizes (each parsed record's compact JSON), so the byte
budgets hold as before; only the staged bytes may keep the file's spacing.

Gzip, stdin, JSON arrays, CSV, Python iterables and the other targets' plans (a Data
Source's rows are rebuilt records) take the ordinary second pass instead.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from importq.errors import InputError
from workers.jobs import compress_payload

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Span:
    """One unit's lines: bytes [start, end) of the file, holding `count` records (and maybe
    blank lines between them); `crc` is the CRC-32 of the file's bytes up to `end`."""

    start: int
    end: int
    count: int
    crc: int


def payloads(
    path: Path, spans: list[Span], unchanged: Callable[[], None]
) -> Iterator[tuple[int, bytes]]:
    """Each unit's record count and staged payload, read from the file's bytes.

    `unchanged` raises InputError if the file's size or time changed since the first pass;
    it is asked before each unit is read. Bytes that differ from those the first pass
    checked (a file rewritten in place) raise InputError too, before their unit is staged.
    """
    crc = 0
    with open(path, "rb") as f:
        for number, span in enumerate(spans):
            unchanged()
            f.seek(span.start)
            chunk = f.read(span.end - span.start)
            crc = zlib.crc32(chunk, crc)
            array = _array(chunk, span.count, at_start=span.start == 0)
            if crc != span.crc or array is None:
                raise InputError(f"unit {number + 1}'s lines are not the ones checked",
                                 where=str(path))  # fmt: skip
            yield span.count, compress_payload(array)


def _array(chunk: bytes, count: int, at_start: bool) -> bytes | None:
    """The `count` records on the lines of `chunk` as one JSON array, or None if it holds
    another number. Split as the reader splits (on LF only: a CR or trailing spaces stay
    on their line, where JSON allows them as whitespace)."""
    if at_start and chunk.startswith(_BOM):
        chunk = chunk[len(_BOM) :]
    if chunk.endswith(b"\n"):
        chunk = chunk[:-1]
    if chunk.count(b"\n") + 1 == count:  # the usual unit: every line holds a record
        return b"[" + chunk.replace(b"\n", b",") + b"]"
    lines = [line for line in chunk.split(b"\n") if line and not line.isspace()]
    return b"[" + b",".join(lines) + b"]" if len(lines) == count else None


def is_plain(path: Path, gzip_magic: bytes, gzip_suffix: str) -> bool:
    """Whether `path` is read as it lies on disk (not gzip by name or by its first bytes)."""
    if path.name.lower().endswith(gzip_suffix):
        return False
    with open(path, "rb") as f:
        return f.read(len(gzip_magic)) != gzip_magic


__all__ = ["Span", "is_plain", "payloads"]
