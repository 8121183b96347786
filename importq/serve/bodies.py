"""A request body written to a temporary file as it streams in, so memory stays flat.

While it streams the body is counted (over the cap: 413 at once, the rest unread) and
hashed (the Idempotency-Key's digest); the format comes from Content-Type and gzip from
Content-Encoding (the readers also know gzip by its magic bytes). The publish then
reads the file like `importq publish` reads one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

MAX_BODY_SETTING = "IMPORTQ_SERVE_MAX_BODY_BYTES"
DEFAULT_MAX_BODY = 2 * 1024**3
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
class Spooled:
    path: Path
    size: int
    sha256: str

    def remove(self) -> None:
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


async def spool(chunks: AsyncIterator[bytes], limit: int, directory: str | None = None) -> Spooled:
    """Write the body to a temporary file; BodyTooLarge as soon as it passes `limit` bytes."""
    handle, name = tempfile.mkstemp(prefix="importq-body-", dir=directory)
    path, size, hashed = Path(name), 0, hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(
                        f"the body is over {limit} bytes ({MAX_BODY_SETTING}); "
                        "split it into several jobs"
                    )
                hashed.update(chunk)
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Spooled(path, size, hashed.hexdigest())
