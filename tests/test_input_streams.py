"""CSV quotes that would swallow rows are refused at the physical line where they open; CSV
errors name physical lines; gzip input is read as a stream."""

from __future__ import annotations

import gzip
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from importq.errors import InputError
from producers.readers import read_records
from producers.validate import validate
from tests.helpers import nothing_enqueued, publish_file

STRAY_QUOTE = 'EmployeeId,Name\nE1,Ann\nE2,"Bob\nE3,Cid\nE4,Dee\n'


def records(path: Path | str, target: str, fmt: str | None = None) -> list[tuple[Any, str]]:
    return list(validate(target, read_records(path, fmt, target=target)))


def refused(path: Path, target: str) -> InputError:
    with pytest.raises(InputError) as caught:
        records(path, target)
    return caught.value


def test_a_stray_quote_is_refused_at_its_line_not_read_as_fewer_rows(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    result = publish_file(tmp_path, "workflow_import", "q.csv", STRAY_QUOTE)
    assert result.exit_code == 1, result.output
    assert "q.csv:3" in result.output
    assert "never closed" in result.output
    nothing_enqueued(redis_client, "workflow_import")


def test_a_closed_quote_that_swallows_lines_is_refused_where_the_target_takes_no_line_breaks(
    tmp_path: Path,
) -> None:
    path = tmp_path / "q.csv"
    path.write_text('EmployeeId,Name\nE1,Ann\nE2,"Bob\nE3,Cid"\nE4,Dee\n')
    error = refused(path, "workflow_import")
    assert error.where == f"{path}:3"
    assert "column Name" in str(error) and "line break" in str(error)


def test_blueshift_attributes_take_no_line_breaks_either(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('email,first_name\na@example.com,"Ann\nb@example.com,Bob"\n')
    with pytest.raises(InputError, match="line break") as caught:
        list(read_records(path, target="blueshift"))
    assert caught.value.where == f"{path}:2"


def test_data_source_vals_take_any_string(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('Code,Info\nA,"two\nlines"\nB,x\n')
    found = list(read_records(path, target="datasource"))
    assert [where for _, where in found] == [f"{path}:2", f"{path}:4"]


def test_sourcing_data_cells_may_hold_line_breaks(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('entityId,recordId,data.Note\nE,1,"two\nlines"\nE,2,x\n')
    found = records(path, "sourcing_data")
    assert [where for _, where in found] == [f"{path}:2", f"{path}:4"]
    assert found[0][0]["data"]["Note"] == "two\nlines"


def test_an_error_in_a_multi_line_record_names_the_line_where_it_starts(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('entityId,recordId,data.Note\nE,1,x\nE,,"two\nlines"\n')
    assert refused(path, "sourcing_data").where == f"{path}:3"


def test_blank_lines_count_as_physical_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("entityId,recordId\n\nE,1\n\n\nE,\n")
    assert refused(path, "sourcing_data").where == f"{path}:6"


def test_an_unclosed_quote_in_a_long_file_names_where_it_opened(tmp_path: Path) -> None:
    rows = [f"E{n},Name {n}" for n in range(20_000)]
    rows[5] = 'E5,"Bob'
    path = tmp_path / "q.csv"
    path.write_text("EmployeeId,Name\n" + "\n".join(rows) + "\n")
    error = refused(path, "workflow_import")
    assert error.where == f"{path}:7", error
    assert "never closed" in str(error)


def test_a_quote_inside_an_unquoted_cell_is_text(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('EmployeeId,Name\nE1,6" pipe\nE2,Ann\n')
    found = records(path, "workflow_import")
    assert [r["Name"] for r, _ in found] == ['6" pipe', "Ann"]


def test_text_after_a_closing_quote_is_refused_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('EmployeeId,Name\nE1,Ann\nE2,"Bob" Smith\n')
    error = refused(path, "workflow_import")
    assert error.where == f"{path}:3"


def test_invalid_utf8_in_csv_names_its_physical_line(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_bytes(b"EmployeeId,Name\n" + b"E1,Ann\n" * 3000 + b"E9,\xff\n")
    error = refused(path, "workflow_import")
    assert error.where == f"{path}:3002"
    assert "UTF-8" in str(error)


# -- gzip -------------------------------------------------------------------------------------


def test_gzipped_files_are_read_by_their_inner_extension(tmp_path: Path) -> None:
    jsonl_gz = tmp_path / "in.jsonl.gz"
    jsonl_gz.write_bytes(gzip.compress(b'{"entityId": "E", "recordId": "1"}\n' * 3))
    csv_gz = tmp_path / "in.csv.gz"
    csv_gz.write_bytes(gzip.compress(b"entityId,recordId\nE,1\nE,2\n"))
    assert len(records(jsonl_gz, "sourcing_data")) == 3
    assert [where for _, where in records(csv_gz, "sourcing_data")] == [
        f"{csv_gz}:2",
        f"{csv_gz}:3",
    ]


def test_gzip_is_recognised_by_its_magic_bytes(tmp_path: Path) -> None:
    path = tmp_path / "in.json"  # compressed, though the name does not say so
    path.write_bytes(gzip.compress(json.dumps([{"entityId": "E", "recordId": "1"}]).encode()))
    assert len(records(path, "sourcing_data")) == 1


def test_gzip_on_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    data = gzip.compress(b"entityId,recordId\nE,1\nE,2\n")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert len(records("-", "sourcing_data", fmt="csv")) == 2


def test_a_broken_gzip_stream_is_refused_with_its_file(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"entityId": "E", "recordId": "1"}\n' * 1000)[:100])
    with pytest.raises(InputError, match="gzip") as caught:
        records(path, "sourcing_data")
    assert str(path) in str(caught.value)


def test_gzip_streams_in_flat_memory(tmp_path: Path) -> None:
    import tracemalloc

    path = tmp_path / "big.jsonl.gz"
    line = b'{"entityId": "E", "recordId": "%d", "data": {"Name": "' + b"x" * 200 + b'"}}\n'
    with gzip.open(path, "wb") as f:
        for n in range(60_000):
            f.write(line.replace(b"%d", str(n).encode()))
    tracemalloc.start()
    count = sum(1 for _ in validate("sourcing_data", read_records(path)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 60_000
    assert peak < 8_000_000, peak  # the file is ~16 MB uncompressed
