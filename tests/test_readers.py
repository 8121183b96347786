"""Bad producer input is refused at the right file:line with a clear message; good input streams."""

from __future__ import annotations

import io
import json
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import schemas
from importq.errors import InputError
from producers.readers import csv_columns_for, read_records
from producers.validate import validate

TARGET = "sourcing_data"
GOOD = {"entityId": "ORG_DEPT", "recordId": "1"}


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def jsonl(*records: Any) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def load(path: Path | str, fmt: str | None = None) -> list[tuple[dict[str, Any], str]]:
    """Read and validate the whole input, as `importq publish` does before enqueueing."""
    return list(validate(TARGET, read_records(path, fmt, target=TARGET), source=str(path)))


def refused(path: Path | str, fmt: str | None = None) -> InputError:
    with pytest.raises(InputError) as caught:
        load(path, fmt)
    return caught.value


# -- JSON Lines -------------------------------------------------------------------------------


def test_jsonl_malformed_line_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", jsonl(GOOD, GOOD) + '{"entityId": "E", recordId: 1}\n')
    error = refused(path)
    assert error.where == f"{path}:3"
    assert "not valid JSON" in str(error)
    assert str(error).startswith(f"{path}:3: ")


def test_jsonl_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", jsonl(GOOD, [GOOD]))
    error = refused(path)
    assert error.where == f"{path}:2"
    assert "expected a JSON object, got array" in str(error)


def test_jsonl_blank_lines_are_skipped_and_lines_still_count(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", "\n" + json.dumps(GOOD) + "\n  \n\r\n" + json.dumps(GOOD))
    assert [where for _, where in load(path)] == [f"{path}:2", f"{path}:5"]


def test_jsonl_nan_is_not_json(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", '{"entityId": "E", "recordId": "1", "data": {"x": NaN}}\n')
    error = refused(path)
    assert error.where == f"{path}:1"
    assert "NaN" in str(error)


def test_jsonl_invalid_utf8_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", jsonl(GOOD).encode() + b'{"entityId": "\xff"}\n')
    error = refused(path)
    assert error.where == f"{path}:2"
    assert "not valid UTF-8" in str(error)


def test_empty_jsonl_has_no_records(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", "\n\n")
    error = refused(path)
    assert error.where == str(path)
    assert "no records in input" in str(error)


def test_jsonl_good_path_with_bom(tmp_path: Path) -> None:
    record = {**GOOD, "data": {"Name": "Montážní hala"}, "isDeleted": False}
    path = write(tmp_path, "in.ndjson", b"\xef\xbb\xbf" + jsonl(record, GOOD).encode())
    assert load(path) == [(record, f"{path}:1"), (GOOD, f"{path}:2")]


# -- JSON array -------------------------------------------------------------------------------


def test_json_array_malformed_names_the_item(tmp_path: Path) -> None:
    path = write(tmp_path, "in.json", '[{"entityId": "E", "recordId": "1"},\n {recordId: 2}]')
    error = refused(path)
    assert error.where == f"{path}:item 2"
    assert "not valid JSON" in str(error)


def test_json_truncated_array(tmp_path: Path) -> None:
    path = write(tmp_path, "in.json", "[" + json.dumps(GOOD) + ",")
    error = refused(path)
    assert error.where == f"{path}:item 2"
    assert "premature EOF" in str(error)


def test_json_top_level_object_instead_of_array(tmp_path: Path) -> None:
    path = write(tmp_path, "in.json", "\n\n" + json.dumps(GOOD))
    error = refused(path)
    assert error.where == f"{path}:3"
    assert "expected a JSON array of objects, got an object" in str(error)


def test_json_item_that_is_not_an_object(tmp_path: Path) -> None:
    path = write(tmp_path, "in.json", json.dumps([GOOD, "ORG_DEPT"]))
    error = refused(path)
    assert error.where == f"{path}:item 2"
    assert "expected a JSON object, got string" in str(error)


def test_json_empty_array_has_no_records(tmp_path: Path) -> None:
    path = write(tmp_path, "in.json", " [ ] ")
    error = refused(path)
    assert error.where == str(path)
    assert "no records in input" in str(error)


def test_json_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "in.json", "")
    error = refused(path)
    assert error.where == f"{path}:1"
    assert "the file is empty" in str(error)


def test_json_good_path_keeps_plain_numbers(tmp_path: Path) -> None:
    record = {**GOOD, "data": {"Size": 1.5, "Count": 3}, "mandantCode": None}
    path = write(tmp_path, "in.json", json.dumps([record, GOOD], indent=2))
    got = load(path)
    assert got == [(record, f"{path}:item 1"), (GOOD, f"{path}:item 2")]
    assert type(got[0][0]["data"]["Size"]) is float  # not Decimal: must stay JSON-serializable


# -- schema violations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "phrase"),
    [
        ({"entityId": "E"}, "recordId: required field is missing"),
        ({**GOOD, "isDeleted": "maybe"}, "isDeleted: expected boolean, got string 'maybe'"),
        ({"entityId": "E", "recordID": "1"}, "recordID: unknown field (did you mean recordId?"),
        ({**GOOD, "data": {}, "fields": []}, "data and fields: only one of them may be set"),
        ({**GOOD, "referenceId": "not-a-guid"}, "referenceId: not a valid uuid: string"),
        ({**GOOD, "incompleteData": True}, "incompleteData: unknown field"),
        ({"entityId": "", "recordId": "1"}, "entityId: must not be empty"),
        ({"entityId": "E" * 257, "recordId": "1"}, "entityId: too long: 257 characters"),
        ({**GOOD, "recordId": 1}, "recordId: expected string, got number 1"),
        ({**GOOD, "mandantCode": 7}, "mandantCode: expected string or null, got number 7"),
        ({**GOOD, "fields": [{"key": "a"}]}, "fields[0].value: required field is missing"),
        ({**GOOD, "data": []}, "data: expected object, got array"),
    ],
)
def test_schema_violation_names_line_and_field(
    tmp_path: Path, record: dict[str, Any], phrase: str
) -> None:
    path = write(tmp_path, "in.jsonl", jsonl(GOOD, record))
    error = refused(path)
    assert error.where == f"{path}:2"
    assert f"{path}:2: {phrase}" in str(error)


def test_unknown_field_lists_the_allowed_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", jsonl({**GOOD, "recordID": "1"}))
    assert "allowed: entityMappingId, entityId, recordId" in str(refused(path))


def test_fields_and_uuid_good(tmp_path: Path) -> None:
    record = {
        **GOOD,
        "referenceId": "4998966b-d957-4bab-97e0-33863b322d19",
        "fields": [{"key": "Code", "value": None}, {"key": "Size", "value": [1, 2]}],
    }
    path = write(tmp_path, "in.jsonl", jsonl(record))
    assert load(path) == [(record, f"{path}:1")]


CASES: list[Any] = [
    GOOD,
    {**GOOD, "referenceId": "4998966B-D957-4BAB-97E0-33863B322D19"},
    {**GOOD, "referenceId": "{4998966b-d957-4bab-97e0-33863b322d19}"},
    {**GOOD, "referenceId": "4998966bd9574bab97e033863b322d19"},
    {**GOOD, "referenceId": "12345678-1234-1234-1234-12345678-9abc"},
    {**GOOD, "referenceId": 5},
    {**GOOD, "mandantCode": None},
    {**GOOD, "isDeleted": 0},
    {**GOOD, "recordId": True},
    {**GOOD, "fields": [{"key": "k", "value": 1, "x": 2}]},
    {**GOOD, "fields": {}},
    {**GOOD, "customData": {"a": 1}, "data": {"b": 2}},
    {**GOOD, "entityMappingId": ""},
    {**GOOD, "recordId": "r" * 256},
    {"entityId": "E"},
    [],
    None,
    "record",
]


@pytest.mark.parametrize("record", CASES)
def test_fast_path_agrees_with_jsonschema(record: Any) -> None:
    expected = schemas.validator(TARGET).is_valid(record)
    try:
        list(validate(TARGET, [(record, "x:1")]))
    except InputError:
        accepted = False
    else:
        accepted = True
    assert accepted == expected


def test_unknown_target() -> None:
    with pytest.raises(InputError, match="no record schema for target 'nope'"):
        validate("nope", [])


# -- CSV --------------------------------------------------------------------------------------


def test_csv_good_path_maps_columns(tmp_path: Path) -> None:
    text = (
        "entityId,recordId,mandantCode,isDeleted,data.Name,data.Code,customData.CEO\n"
        "ORG_DEPT,1,64949541|CZ,No,Montážní hala,M1,Robert\n"
        'ORG_DEPT,2,,TRUE,"Hall, north",,\n'
        "ORG_DEPT,3,,,,,\n"
    )
    path = write(tmp_path, "in.csv", b"\xef\xbb\xbf" + text.encode())
    assert load(path) == [
        (
            {
                "entityId": "ORG_DEPT",
                "recordId": "1",
                "mandantCode": "64949541|CZ",
                "isDeleted": False,
                "data": {"Name": "Montážní hala", "Code": "M1"},
                "customData": {"CEO": "Robert"},
            },
            f"{path}:2",
        ),
        (
            {
                "entityId": "ORG_DEPT",
                "recordId": "2",
                "isDeleted": True,
                "data": {"Name": "Hall, north"},
            },
            f"{path}:3",
        ),
        ({"entityId": "ORG_DEPT", "recordId": "3"}, f"{path}:4"),
    ]


def test_csv_header_only_has_no_records(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "entityId,recordId\n")
    error = refused(path)
    assert error.where == str(path)
    assert "no records in input" in str(error)


def test_csv_empty_file_has_no_header(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "")
    error = refused(path)
    assert error.where == f"{path}:1"
    assert "no header row" in str(error)


def test_csv_unknown_column(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "entityId,recordId,Name\nE,1,x\n")
    error = refused(path)
    assert error.where == f"{path}:1"
    assert "unknown column 'Name'" in str(error)
    assert "allowed: entityId, recordId" in str(error)
    assert "data.<Name>, customData.<Name>" in str(error)


def test_csv_duplicate_column(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "entityId,recordId,data.A,data.A\nE,1,x,y\n")
    error = refused(path)
    assert error.where == f"{path}:1"
    assert "duplicate column 'data.A'" in str(error)


def test_csv_missing_record_id_column(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "entityId,data.A\nE,x\n")
    error = refused(path)
    assert error.where == f"{path}:1"
    assert "missing required column(s): recordId" in str(error)


def test_csv_bad_boolean_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "entityId,recordId,isDeleted\nE,1,yes\nE,2,maybe\n")
    error = refused(path)
    assert error.where == f"{path}:3"
    assert "column isDeleted: expected true/false/1/0/yes/no, got 'maybe'" in str(error)


def test_csv_row_with_too_many_cells(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "entityId,recordId\nE,1\nE,2,surplus\n")
    error = refused(path)
    assert error.where == f"{path}:3"
    assert "3 cells but the header has 2" in str(error)


def test_csv_line_numbers_count_quoted_newlines(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", 'entityId,recordId,data.Note\nE,1,"two\nlines"\nE,,x\n')
    error = refused(path)
    assert error.where == f"{path}:4"
    assert "recordId: required field is missing" in str(error)


def test_csv_needs_a_target_with_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "a,b\n")
    with pytest.raises(InputError, match="unknown target 'salesforce'"):
        read_records(path, target="salesforce")
    with pytest.raises(InputError, match="CSV input needs a target"):
        read_records(path)
    assert csv_columns_for(TARGET).required == ("entityId", "recordId")


# -- files and formats ------------------------------------------------------------------------


def test_unknown_extension(tmp_path: Path) -> None:
    path = write(tmp_path, "in.xml", "<a/>")
    with pytest.raises(InputError, match=r"cannot tell the format from the extension '\.xml'"):
        read_records(path)
    with pytest.raises(InputError, match="unknown format 'xml'"):
        read_records(path, "xml")


def test_explicit_format_overrides_extension(tmp_path: Path) -> None:
    path = write(tmp_path, "in.txt", jsonl(GOOD))
    assert load(path, "jsonl") == [(GOOD, f"{path}:1")]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    with pytest.raises(InputError) as caught:
        read_records(path)
    assert str(caught.value) == f"{path}: no such file"


def test_stdin_needs_a_format_and_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="reading from stdin needs a format"):
        read_records("-")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(jsonl(GOOD).encode())))
    assert load("-", "jsonl") == [(GOOD, "<stdin>:1")]


def test_stdin_csv_does_not_close_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"entityId,recordId\nE,1\n"))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert load("-", "csv") == [(GOOD | {"entityId": "E"}, "<stdin>:2")]
    assert not stdin.buffer.closed


# -- memory -----------------------------------------------------------------------------------


def big_lines(n: int) -> Iterator[str]:
    for i in range(n):
        record = {"entityId": "ORG", "recordId": str(i), "data": {"Name": f"name {i}" * 3}}
        yield json.dumps(record) + "\n"


def test_large_jsonl_streams_in_flat_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    with path.open("w", encoding="utf-8") as f:
        f.writelines(big_lines(200_000))
    tracemalloc.start()
    try:
        count = sum(1 for _ in load_lazily(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 200_000
    assert path.stat().st_size > 15_000_000  # holding the whole input would blow the bound
    assert peak < 5_000_000, f"peak {peak} bytes"


def load_lazily(path: Path) -> Iterator[tuple[dict[str, Any], str]]:
    return validate(TARGET, read_records(path, target=TARGET), source=str(path))


def test_free_form_csv_maps_every_column_to_a_field(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "EmployeeId,Name,Dept.Code\nE1,Ada,D7\nE2,,D8\n")
    found = list(read_records(path, target="workflow_import"))
    assert found == [
        ({"EmployeeId": "E1", "Name": "Ada", "Dept.Code": "D7"}, f"{path}:2"),
        ({"EmployeeId": "E2", "Name": "", "Dept.Code": "D8"}, f"{path}:3"),  # kept, empty
    ]


def test_datasource_csv_columns_are_the_headers(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "Code,Name\nAH,Air Hockey\n")
    found = list(read_records(path, target="datasource"))
    assert found == [({"Vals": {"Code": "AH", "Name": "Air Hockey"}}, f"{path}:2")]


def test_blue_csv_columns_are_the_blocks_columns(tmp_path: Path) -> None:
    from producers.validate import validate

    path = write(tmp_path, "users.csv", "USER_ID,FIRST_NAME,MIDDLE\nu1,Ada,\nu2,Bo,K\n")
    found = list(validate("blue", read_records(path, target="blue")))
    assert found == [  # every row has the block's columns, an empty cell included
        ({"USER_ID": "u1", "FIRST_NAME": "Ada", "MIDDLE": ""}, f"{path}:2"),
        ({"USER_ID": "u2", "FIRST_NAME": "Bo", "MIDDLE": "K"}, f"{path}:3"),
    ]
