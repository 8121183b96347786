"""The staged payload (the claim check): zstd now, and zlib payloads an earlier release
staged still read (workers of a rolling upgrade meet both)."""

from __future__ import annotations

import zlib

import orjson
import pytest

from workers.jobs import compress_payload, decode_records, encode_records

RECORDS = [{"recordId": f"r{n}", "data": {"Name": "Département " * 3, "n": n}} for n in range(50)]


def test_a_payload_round_trips() -> None:
    assert decode_records(encode_records(RECORDS)) == RECORDS


def test_a_payload_is_a_zstd_frame_smaller_than_level_1_zlib() -> None:
    array = orjson.dumps(RECORDS)
    payload = compress_payload(array)
    assert payload[:4] == b"\x28\xb5\x2f\xfd"  # the zstd frame's magic number
    assert len(payload) < len(zlib.compress(array, 1))


def test_a_zlib_payload_staged_by_an_earlier_release_still_reads() -> None:
    assert decode_records(zlib.compress(orjson.dumps(RECORDS), 1)) == RECORDS


def test_a_corrupt_payload_is_refused_not_read_as_empty() -> None:
    with pytest.raises(ValueError, match="staged payload"):
        decode_records(b"\x28\xb5\x2f\xfd" + b"\x00" * 20)
    with pytest.raises(ValueError, match="staged payload"):
        decode_records(b"not a payload")
