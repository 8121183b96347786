"""A request body: in memory while small, in a temporary file past that, read the same."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from importq.serve.bodies import Body, BodyTooLarge, receive
from producers.readers import read_records

LINES = [b'{"eventId": "ev-%06d"}\n' % n for n in range(2000)]
WHOLE = b"".join(LINES)


async def _chunks() -> AsyncIterator[bytes]:
    for start in range(0, len(LINES), 100):
        yield b"".join(LINES[start : start + 100])


def _receive(tmp_path: Path, **options: int) -> Body:
    return asyncio.run(receive(_chunks(), 10**9, hashed=True, directory=str(tmp_path), **options))


@pytest.mark.parametrize("in_memory", [10**9, 10_000])
def test_a_body_reads_back_whole_from_memory_or_from_its_file(
    tmp_path: Path, in_memory: int
) -> None:
    body = _receive(tmp_path, in_memory=in_memory)
    assert (body.path is None) == (in_memory > len(WHOLE))
    assert body.size == len(WHOLE) and body.sha256 == hashlib.sha256(WHOLE).hexdigest()
    for _ in range(2):  # a refused body is read twice: the second pass lists its errors
        with body.open() as stream:
            records = [r for r, _ in read_records(stream, "jsonl", name="body")]
        assert len(records) == 2000 and records[-1] == {"eventId": "ev-001999"}
    body.remove()
    assert list(tmp_path.iterdir()) == []


def test_a_body_over_the_cap_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(BodyTooLarge):
        asyncio.run(receive(_chunks(), 20_000, hashed=False, in_memory=5_000,
                            directory=str(tmp_path)))  # fmt: skip
    assert list(tmp_path.iterdir()) == []
