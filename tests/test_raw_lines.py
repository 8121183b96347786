"""A plain JSON Lines file is parsed once: its units are staged as the file's own lines.

The first pass checks and plans every record and notes where each unit's lines end; the
second stages each unit as `[line,line,...]` (producers/rawlines.py). These tests hold it
to the same units, byte budgets and records as the path that parses twice.
"""

from __future__ import annotations

import gzip
import itertools
import json
import random
import string
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from importq import jsoncodec
from importq import settings as importq_settings
from importq.errors import InputError
from producers import firstpass, rawlines
from producers.publish import locate, publish
from producers.readers import read_records, records_of
from tests.helpers import nothing_enqueued, sample_records
from workers import keys
from workers.jobs import JobStore, decompress_payload
from workers.targets.base import Batches, Cutter, batched, record_size

TARGET = "sourcing_data"
AGENT = {"SOURCING_DATA_AGENT_ID": "agent-for-tests"}


def _publish(store: JobStore, path: Path, target: str = TARGET, **env: str) -> str:
    settings = importq_settings.load({**AGENT, **env})
    params = {"operation_id": "op-1"} if target == TARGET else {}
    return publish(target, records_of(path), params, settings=settings, store=store,
                   publish_unit=lambda unit_id, target, countdown: None)  # fmt: skip


def _staged(store: JobStore, job_id: str) -> list[bytes]:
    """Each unit's staged JSON array, decompressed, in unit order."""
    payloads = [store.redis.get(keys.payload(u)) for u in store.unit_ids(job_id)]
    return [decompress_payload(p) for p in payloads if isinstance(p, bytes)]


def _units(store: JobStore, job_id: str) -> list[list[dict[str, Any]]]:
    return [jsoncodec.loads(payload) for payload in _staged(store, job_id)]


def _records(rng: random.Random, count: int) -> Iterator[dict[str, Any]]:
    for number in range(count):
        width = rng.choice((0, 5, 40, 300, 1200))
        text = "".join(rng.choices(string.ascii_letters + 'éü€"\\/', k=rng.randint(0, width)))
        yield {"entityId": "E", "recordId": f"r-{number}", "data": {"Name": text, "n": 1e2}}


@pytest.fixture(params=[1 << 20, 700, 29], ids=["MiB blocks", "small blocks", "tiny blocks"])
def block_bytes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The first pass's block size: small ones put unit ends, line ends and refusals at
    every place in a block, and lines longer than a block."""
    monkeypatch.setattr(firstpass, "BLOCK_BYTES", request.param)
    return int(request.param)


@pytest.mark.parametrize("seed", range(6))
def test_units_are_the_ones_the_planner_cuts_and_keep_the_byte_budget(
    seed: int, block_bytes: int, tmp_path: Path, redis_client: redis.Redis
) -> None:
    rng = random.Random(seed)
    path = tmp_path / "records.jsonl"
    # Spaced JSON and \u escapes: the raw lines are longer than compact JSON, and "1e2"
    # (3 bytes) is 100.0 (5) once parsed: the budget counts the parsed record, as always.
    path.write_text("".join(json.dumps(r) + "\n" for r in _records(rng, rng.randint(1, 300))))
    per_item, budget = rng.randint(1, 40), rng.randint(3_000, 12_000)
    env = {"SOURCING_DATA_RECORDS_PER_ITEM": str(per_item),
           "SOURCING_DATA_BYTES_PER_ITEM": str(budget)}  # fmt: skip

    store = JobStore(redis_client)
    units = _units(store, _publish(store, path, **env))

    expected = list(batched(read_records(path), per_item, budget, "queue item"))
    assert units == expected
    for unit in units:
        assert sum(record_size(r) + 1 for r in unit) <= budget
    lines = path.read_bytes().splitlines()
    assert b"".join(_staged(store, store.recent()[0].id)) == b"".join(
        b"[" + b",".join(lines[i : i + len(u)]) + b"]"
        for i, u in zip(_starts(units), units, strict=True)
    )  # the file's own bytes, not an encoding of the records


@pytest.mark.parametrize("seed", range(6))
def test_a_list_is_cut_where_batched_cuts(
    seed: int, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    monkeypatch.setattr(firstpass, "BLOCK_RECORDS", rng.choice([1, 7, 4096]))
    records = list(_records(rng, rng.randint(1, 300)))
    per_item, budget = rng.randint(1, 40), rng.randint(3_000, 12_000)
    settings = importq_settings.load({**AGENT, "SOURCING_DATA_RECORDS_PER_ITEM": str(per_item),
                                      "SOURCING_DATA_BYTES_PER_ITEM": str(budget)})  # fmt: skip
    store = JobStore(redis_client)
    job_id = publish(TARGET, locate(records), {"operation_id": "op-1"}, settings=settings,
                     store=store, publish_unit=lambda unit_id, target, countdown: None)  # fmt: skip
    assert _units(store, job_id) == list(batched(locate(records), per_item, budget))


def _starts(units: list[list[dict[str, Any]]]) -> Iterator[int]:
    start = 0
    for unit in units:
        yield start
        start += len(unit)


@pytest.mark.parametrize("seed", range(30))
def test_the_cutter_closes_units_where_batched_does(seed: int) -> None:
    rng = random.Random(seed)
    records = list(_records(rng, rng.randint(0, 200)))
    widest = max((record_size(r) + 1 for r in records), default=1)
    batches = Batches(rng.randint(1, 50), rng.randint(widest, widest * 10))
    expected = [len(unit) for unit in batches.plan((r, "f") for r in records)]
    cutter, closed, start = Cutter(batches), [0], 0
    while start < len(records):  # the records come in lists of any length, as blocks do
        given = records[start : start + rng.randint(1, 60)]
        closed += [start + cut for cut in cutter.cuts(given, lambda i: f"f:{i}")]
        start += len(given)
    if cutter.count:
        closed.append(len(records))
    assert [b - a for a, b in itertools.pairwise(closed)] == expected


def test_blank_lines_crlf_a_bom_and_trailing_spaces_stage_the_same_records(
    block_bytes: int, tmp_path: Path, redis_client: redis.Redis
) -> None:
    records = list(sample_records(7))
    lines = [json.dumps(r).encode() for r in records]
    path = tmp_path / "messy.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf" + lines[0] + b"\r\n"  # a BOM, and Windows line ends
        + b"\n   \n\t\r\n"  # blank lines, one of spaces, one of a tab and a CR
        + lines[1] + b"   \n"  # trailing spaces
        + lines[2] + b"\r\n" + lines[3] + b"\n\n" + lines[4] + b"\n"
        + b"  " + lines[5] + b"\n"  # leading spaces
        + lines[6]  # no line end at the end of the file
    )  # fmt: skip
    store = JobStore(redis_client)
    job_id = _publish(store, path, SOURCING_DATA_RECORDS_PER_ITEM="3")
    assert _units(store, job_id) == [records[0:3], records[3:6], records[6:7]]
    assert store.unit(store.unit_ids(job_id)[0])["records"] == "3"


def test_a_bad_record_on_the_last_line_enqueues_nothing(
    block_bytes: int, tmp_path: Path, redis_client: redis.Redis
) -> None:
    path = tmp_path / "records.jsonl"
    good = "".join(json.dumps(r) + "\n" for r in sample_records(9))
    path.write_text(good + json.dumps({"entityId": "ORG_DEPT"}))  # no recordId
    store = JobStore(redis_client)
    with pytest.raises(InputError) as refused:
        _publish(store, path, SOURCING_DATA_RECORDS_PER_ITEM="2")
    assert refused.value.where == f"{path}:10"
    nothing_enqueued(redis_client, TARGET)


def test_a_record_over_the_byte_budget_is_refused_at_its_line(
    block_bytes: int, tmp_path: Path, redis_client: redis.Redis
) -> None:
    path = tmp_path / "records.jsonl"
    wide = {"entityId": "E", "recordId": "w", "data": {"Blob": "x" * 500}}
    path.write_text("".join(json.dumps(r) + "\n" for r in [*sample_records(3), wide]))
    with pytest.raises(InputError, match="over the 300-byte queue item budget") as refused:
        _publish(JobStore(redis_client), path, SOURCING_DATA_BYTES_PER_ITEM="300")
    assert refused.value.where == f"{path}:4"
    nothing_enqueued(redis_client, TARGET)


def test_an_integer_past_64_bits_reaches_the_worker_as_it_was_written(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    big = {"entityId": "E", "recordId": "1", "data": {"Count": 2**70, "Ratio": 0.5}}
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(big) + "\n" + json.dumps(next(sample_records(1))) + "\n")
    store = JobStore(redis_client)
    assert _units(store, _publish(store, path)) == [[big, next(sample_records(1))]]


def test_gzip_and_rebuilt_records_take_the_path_that_parses_again(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    store = JobStore(redis_client)
    spaced = "".join(json.dumps(r) + "\n" for r in sample_records(4))
    zipped = tmp_path / "records.jsonl.gz"
    zipped.write_bytes(gzip.compress(spaced.encode()))
    job_id = _publish(store, zipped)
    assert _staged(store, job_id) == [jsoncodec.dumps(list(sample_records(4)))]

    rows = tmp_path / "rows.jsonl"  # the Data Source's plan rebuilds each record
    rows.write_text("".join(json.dumps({"Vals": [f"K{n}", f"Name {n}"]}) + "\n" for n in range(3)))
    settings = importq_settings.load({"DATASOURCE_COMPANY_ID": "c-for-tests"})
    params = {"mode": "replace", "external_id": "SPORTS-001", "name": "Sports",
              "headers": "Code,Name"}  # fmt: skip
    job_id = publish("datasource", records_of(rows), params, settings=settings, store=store,
                     publish_unit=lambda unit_id, target, countdown: None)  # fmt: skip
    (payload,) = _staged(store, job_id)
    assert json.loads(payload) == [{"Vals": [f"K{n}", f"Name {n}"]} for n in range(3)]


@pytest.mark.parametrize(
    ("first", "then", "where"),
    [
        ('{"entityId": "E"}', "not json", 5),  # refused by the schema, then a bad line
        ("not json", '{"entityId": "E"}', 5),
        ("[1, 2]", "", 5),  # a JSON value that is not an object
        ("", '{"entityId": "E", "recordId": "x", "data": {}, "extra": 1}', 6),
        # over the byte budget, then refused by the schema: the oversized one is named
        (
            json.dumps({"entityId": "E", "recordId": "w", "data": {"Blob": "x" * 2000}}),
            '{"entityId": "E"}',
            5,
        ),
    ],
)
def test_the_first_refusal_is_the_one_at_the_earliest_line(
    first: str, then: str, where: int, block_bytes: int, tmp_path: Path, redis_client: redis.Redis
) -> None:
    path = tmp_path / "records.jsonl"
    good = [json.dumps(r) for r in sample_records(8)]
    path.write_text("\n".join([*good[:4], first, then, *good[4:]]) + "\n")
    with pytest.raises(InputError) as refused:
        _publish(JobStore(redis_client), path, SOURCING_DATA_RECORDS_PER_ITEM="3",
                 SOURCING_DATA_BYTES_PER_ITEM="1500")  # fmt: skip
    assert refused.value.where == f"{path}:{where}"
    nothing_enqueued(redis_client, TARGET)


@pytest.mark.parametrize("given", ["a list", "a file"])
def test_an_oversized_record_before_a_refused_one_is_the_one_named(
    given: str, tmp_path: Path, redis_client: redis.Redis
) -> None:
    wide = {"entityId": "E", "recordId": "w", "data": {"Blob": "x" * 2000}}
    records = [*sample_records(3), wide, *sample_records(2), {"entityId": "E"}]
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    settings = importq_settings.load({**AGENT, "SOURCING_DATA_BYTES_PER_ITEM": "1500"})
    source = locate(records) if given == "a list" else records_of(path)
    with pytest.raises(InputError, match="over the 1500-byte queue item budget") as refused:
        publish(TARGET, source, {"operation_id": "op-1"}, settings=settings,
                store=JobStore(redis_client), publish_unit=lambda *_: None)  # fmt: skip
    assert refused.value.where == ("record 4" if given == "a list" else f"{path}:4")
    nothing_enqueued(redis_client, TARGET)


def test_units_of_one_record_each_are_cut_without_going_back_over_the_block(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    path = tmp_path / "records.jsonl"
    records = list(sample_records(3000))
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    spans = list(firstpass.spans(path, TARGET, Batches(1, 10_000)))
    data = path.read_bytes()
    assert [s.count for s in spans] == [1] * 3000
    ends = [s.end for s in spans]
    assert ends == [i + 1 for i, byte in enumerate(data) if byte == ord("\n")]
    assert all(s.crc == zlib.crc32(data[: s.end]) for s in spans[::250])


def test_a_file_of_blank_lines_holds_no_records(
    block_bytes: int, tmp_path: Path, redis_client: redis.Redis
) -> None:
    path = tmp_path / "blank.jsonl"
    path.write_text("\n \n\t\n" * 50)
    with pytest.raises(InputError, match="no records in input"):
        _publish(JobStore(redis_client), path)
    nothing_enqueued(redis_client, TARGET)


@pytest.mark.parametrize("rewrite", ["blank lines", "same length"])
def test_a_unit_whose_lines_changed_is_refused(tmp_path: Path, rewrite: str) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in sample_records(4)))
    spans = list(firstpass.spans(path, TARGET, Batches(2, 10_000)))
    assert [span.count for span in spans] == [2, 2]
    if rewrite == "blank lines":
        path.write_text("".join(json.dumps(r) + "\n\n" for r in sample_records(4)))
    else:  # a record changed in place: the same size, the same lines
        path.write_bytes(path.read_bytes().replace(b"Department 1", b"Department X"))
    with pytest.raises(InputError, match="unit 1's lines are not the ones checked"):
        list(rawlines.payloads(path, spans, lambda: None))
