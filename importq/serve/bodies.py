"""A request body as it streams in: kept in memory while small, else written to a
temporary file, so memory stays flat for any size.

While it streams the body is counted (over the cap: 413 at once, the rest unread) and,
when an Idempotency-Key asks for it, hashed (the key's digest); the format comes from
Content-Type and gzip from Content-Encoding (the readers also know gzip by its magic
bytes). The publish then reads it like `importq publish` reads a file.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAX_BODY_SETTING = "IMPORTQ_SERVE_MAX_BODY_BYTES"
DEFAULT_MAX_BODY = 2 * 1024**3
# Bodies up to this size are read from memory: a temporary file would cost a write, a read
# and two system calls for each; above it memory would grow with the body.
IN_MEMORY_BYTES = 8 * 1024 * 1024
_FORMATS = {
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
    "application/json": "json",
    "text/csv": "csv",
}
MEDIA_TYPES = tuple(_FORMATS)
ENCODINGS = ("", "identity", "gzip")


class BodyTooLarge(Exception):
    """Over IMPORTQ_SERVE_MAX_BODY_BYTES: 413."""


class UnsupportedBody(Exception):
    """A Content-Type or Content-Encoding importq does not read: 415."""


@dataclass
class Body:
    """The received body: `data` while it fits IN_MEMORY_BYTES, else the file at `path`."""

    size: int
    sha256: str  # "" unless it was asked for
    data: bytes = b""
    path: Path | None = None

    def open(self) -> BinaryIO:
        """A fresh binary stream of the body, from its start (the readers can peek in it)."""
        if self.path is not None:
            return self.path.open("rb")
        return io.BufferedReader(io.BytesIO(self.data))

    def remove(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def body_format(content_type: str | None, content_encoding: str | None) -> str:
    """The reader's format for this Content-Type; UnsupportedBody names what is read."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in _FORMATS:
        raise UnsupportedBody(
            f"Content-Type {media or '(none)'!r} is not read; send one of {', '.join(MEDIA_TYPES)}"
        )
    encoding = (content_encoding or "").strip().lower()
    if encoding not in ENCODINGS:
        raise UnsupportedBody(f"Content-Encoding {encoding!r} is not read; send gzip or none")
    return _FORMATS[media]


async def receive(
    chunks: AsyncIterator[bytes],
    limit: int,
    *,
    hashed: bool,
    in_memory: int = IN_MEMORY_BYTES,
    directory: str | None = None,
) -> Body:
    """The body, in memory up to IN_MEMORY_BYTES and in a temporary file past that;
    BodyTooLarge as soon as it passes `limit` bytes."""
    digest = hashlib.sha256() if hashed else None
    parts: list[bytes] = []
    size, spooled, out = 0, None, None
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"the body is over {limit} bytes ({MAX_BODY_SETTING}); "
                                   "split it into several jobs")  # fmt: skip
            if digest:
                digest.update(chunk)
            if out is None and size > in_memory:  # big: on to disk, memory stays flat
                handle, name = tempfile.mkstemp(prefix="importq-body-", dir=directory)
                spooled, out = Path(name), os.fdopen(handle, "wb")
                out.writelines(parts)
                parts.clear()
            if out is None:
                parts.append(chunk)
            else:
                out.write(chunk)
    except BaseException:
        if out is not None and spooled is not None:
            out.close()
            spooled.unlink(missing_ok=True)
        raise
    if out is not None:
        out.close()
    return Body(size, digest.hexdigest() if digest else "", b"".join(parts), spooled)
