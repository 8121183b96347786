"""The compiled check of producers.validate (jsonschema-rs) gives exactly jsonschema's verdicts.

Records are generated from each schema itself (random.Random with fixed seeds), near the
schema's limits, so about as many are refused as accepted; every verdict is compared with
jsonschema's. Refusals of field names (propertyNames) are described with the name.
"""

from __future__ import annotations

import random
import string
import zlib
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match

import schemas
from importq.errors import InputError
from producers.validate import (
    _RELEVANCE,
    Check,
    _fast_check,
    compiled_check,
    describe,
    record_targets,
    validate,
)

RECORDS_PER_SEED = 300
SEEDS = (0, 1, 2)

# Names that sit next to the usual ones: typos, case, empty, unicode, lengths around limits.
_NAME_POOL = ["recordID", "entityid", "Vals", "vals", "", "a", "Name", "é", "x y", "_", "a-b"]
_ALPHABET = string.ascii_letters + string.digits + "_- é€😀"
_UUIDS = [
    "4998966b-d957-4bab-97e0-33863b322d19",
    "4998966B-D957-4BAB-97E0-33863B322D19",
    "{4998966b-d957-4bab-97e0-33863b322d19}",
    "4998966bd9574bab97e033863b322d19",
    "urn:uuid:4998966b-d957-4bab-97e0-33863b322d19",
    "12345678-1234-1234-1234-12345678-9abc",
    "4998966b-d957-4bab-97e0-33863b322d1",
    "not-a-guid",
    "",
]
_PATTERN_PROBES = ["abc", "a1_", "blue", "1abc", "A", "", "a-b", "sourcing_data", "a\n", "_a"]


class _Gen:
    """Values for a schema: of the right shape, or with a chance `wild` just past its limits."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.wild = 0.0

    def off(self) -> bool:
        return self.rng.random() < self.wild

    def any(self, depth: int = 0) -> Any:
        rng = self.rng
        kinds = ["str", "int", "float", "bool", "null"] + (["list", "dict"] if depth < 2 else [])
        kind = rng.choice(kinds)
        if kind == "str":
            return self.text(0, 6)
        if kind == "int":
            return rng.choice([0, 1, -1, 7, 2**40])
        if kind == "float":
            return rng.choice([0.0, 1.0, 1.5, -2.25, 1e20])
        if kind == "bool":
            return rng.choice([True, False])
        if kind == "null":
            return None
        if kind == "list":
            return [self.any(depth + 1) for _ in range(rng.randint(0, 3))]
        return {self.text(0, 4): self.any(depth + 1) for _ in range(rng.randint(0, 3))}

    def text(self, low: int, high: int) -> str:
        size = self.rng.randint(low, high)
        return "".join(self.rng.choice(_ALPHABET) for _ in range(size))

    def sized(self, schema: dict[str, Any]) -> str:
        low = schema.get("minLength", 0)
        high = schema.get("maxLength")
        sizes = [low, low + 1, low + 3] if high is None else [low, high, min(low + 3, high)]
        if self.off():
            sizes = [max(low - 1, 0)] if high is None else [max(low - 1, 0), high + 1]
        size: int = self.rng.choice(sizes)
        if size > 20:  # long strings: cheap and still exactly at the limit
            return self.rng.choice("xé😀") * size
        return self.text(size, size)

    def string(self, schema: dict[str, Any]) -> str:
        if "format" in schema:
            return self.rng.choice(_UUIDS if self.off() else _UUIDS[:3])
        if "pattern" in schema:
            return self.rng.choice(_PATTERN_PROBES)
        return self.sized(schema)

    def value(self, schema: Any, depth: int = 0) -> Any:
        rng = self.rng
        if isinstance(schema, bool) or depth > 3 or self.off():
            return self.any(depth)
        if "const" in schema and not self.off():
            return schema["const"]
        if "enum" in schema and not self.off():
            return rng.choice(schema["enum"])
        types = schema.get("type", ["string", "object", "array", "number", "integer", "boolean"])
        kind = rng.choice([types] if isinstance(types, str) else types)
        if kind == "string":
            return self.string(schema)
        if kind == "object":
            return self.object(schema, depth)
        if kind == "array":
            items = schema.get("items", True)
            return [self.value(items, depth + 1) for _ in range(rng.randint(0, 3))]
        if kind == "integer":
            return rng.choice([0, 3, -5, 2.0, 2.5] if self.off() else [0, 3, -5, 2.0])
        if kind == "number":
            return rng.choice([0, 3, -1.5, 1e-3, 2**53])
        if kind == "boolean":
            return rng.choice([True, False, 0, 1] if self.off() else [True, False])
        return None

    def name(self, schema: dict[str, Any]) -> str:
        names = schema.get("propertyNames")
        if isinstance(names, dict) and self.rng.random() < 0.5:
            return self.string(names)
        if self.rng.random() < 0.3:
            return self.text(1, 12)
        return self.rng.choice(_NAME_POOL)

    def object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        rng = self.rng
        props: dict[str, Any] = schema.get("properties", {})
        others = schema.get("additionalProperties", True)
        record: dict[str, Any] = {}
        for key in schema.get("required", ()):
            if not self.off():
                record[key] = self.value(props.get(key, others), depth + 1)
        for key, sub in props.items():
            if key not in record and rng.random() < 0.4:
                record[key] = self.value(sub, depth + 1)
        low = schema.get("minProperties", 0)
        high = schema.get("maxProperties", low + 4)
        wanted = rng.randint(low, high)
        if self.off():
            wanted = rng.choice([max(low - 1, 0), high + 1])
        if others is False and not self.off():
            wanted = 0
        for _ in range(4 * wanted):  # names may repeat
            if len(record) >= wanted:
                break
            record[self.name(schema)] = self.value(others, depth + 1)
        return record


def _records(schema: dict[str, Any], seed: int) -> list[Any]:
    gen = _Gen(random.Random(seed))
    out: list[Any] = []
    for _ in range(RECORDS_PER_SEED):
        gen.wild = gen.rng.choice([0.0, 0.0, 0.1, 0.25, 0.5])
        out.append(gen.value(schema))
    return [*out, None, [], "record", 0, {}]


def _laxer(check: Check, validator: Any, records: list[Any]) -> list[Any]:
    """Records the compiled check passes and jsonschema refuses: never allowed.

    The other way round is allowed: jsonschema is asked about every record the compiled
    check refuses, and its verdict stands. That happens only where ECMA regexes (which
    jsonschema-rs uses, as the JSON Schema spec says) are stricter than Python's: `$`
    before a trailing newline.
    """
    return [r for r in records if check(r) and not validator.is_valid(r)]


def _seed(name: str, seed: int) -> int:
    return zlib.crc32(name.encode()) + seed


# -- every packaged schema ---------------------------------------------------------------------


@pytest.mark.parametrize("name", record_targets())
def test_record_schemas_use_the_compiled_check(name: str) -> None:
    # Not the schema's own jsonschema validator (a bound method of it): that takes ~100 us.
    assert getattr(_fast_check(name), "__self__", None) is not schemas.validator(name)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", schemas.names())
def test_fast_path_agrees_with_jsonschema(name: str, seed: int) -> None:
    schema = schemas.load(name)
    validator = schemas.validator(name)
    check = _fast_check(name)
    records = _records(schema, _seed(name, seed))
    verdicts = [validator.is_valid(r) for r in records]
    assert _laxer(check, validator, records) == []
    good = sum(verdicts)
    # Both kinds in numbers, so the comparison means something.
    assert good >= len(records) // 6, f"only {good} good records"
    assert len(records) - good >= len(records) // 6, f"only {len(records) - good} bad records"


_LEAVES = frozenset(
    {"type", "enum", "const", "required", "minLength", "maxLength", "pattern", "format", "not"}
    | {"minProperties", "maxProperties"}
)


def _failing_keywords(schema: Any) -> set[str]:
    """The keywords of `schema` that can refuse a value themselves."""
    if not isinstance(schema, dict):
        return set()
    found = {k for k in schema if k in _LEAVES}
    if schema.get("additionalProperties") is False:
        found.add("additionalProperties")
    subs = [*schema.get("properties", {}).values(), schema.get("additionalProperties")]
    subs += [schema.get("items"), schema.get("propertyNames")]
    for sub in subs:
        found |= _failing_keywords(sub)
    return found


@pytest.mark.parametrize("name", schemas.names())
def test_generated_records_break_every_keyword(name: str) -> None:
    validator = schemas.validator(name)
    records = [r for seed in SEEDS for r in _records(schemas.load(name), _seed(name, seed))]
    broken = {str(e.validator) for r in records for e in validator.iter_errors(r)}
    assert _failing_keywords(schemas.load(name)) <= broken


# -- keywords the packaged schemas do not use (yet) -----------------------------------------

SYNTHETIC: list[dict[str, Any]] = [
    {
        "type": "object",
        "minProperties": 2,
        "maxProperties": 3,
        "propertyNames": {"type": "string", "pattern": "^[a-z]", "maxLength": 5},
        "additionalProperties": {"type": ["integer", "null"]},
    },
    {"type": "object", "maxProperties": 0},
    {"type": ["object", "array"], "propertyNames": False, "items": {"minProperties": 1}},
    {
        "type": "object",
        "properties": {"data": {"type": "object", "propertyNames": {"enum": ["a", "b", "é"]}}},
        "required": ["data"],
    },
    {"propertyNames": {"not": {"const": "Vals"}}, "minProperties": 1},
    {"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "minLength": 2},
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("schema", SYNTHETIC, ids=lambda s: str(zlib.crc32(repr(s).encode())))
def test_fast_path_agrees_on_other_schemas(schema: dict[str, Any], seed: int) -> None:
    formats = FormatChecker(("uuid",))
    validator = Draft202012Validator(schema, format_checker=formats)
    check = compiled_check(schema, formats)
    records = _records(schema, seed)
    assert _laxer(check, validator, records) == []
    assert 0 < sum(map(validator.is_valid, records)) < len(records)


WORKFLOW_EDGES: list[Any] = [
    {},
    {"a": None},
    {"": "x"},
    {"n" * 128: 1},
    {"n" * 129: 1},
    {"😀" * 128: True},
    {"😀" * 129: True},
    {"a": "x" * 32767},
    {"a": "x" * 32768},
    {"a": 1.5, "b": False, "c": None, "d": "", "e": 2**70},
    {"a": [1]},
    {"a": {}},
    {1: "x"},  # not JSON, but jsonschema has a verdict: property names that are not strings pass
    [],
]


@pytest.mark.parametrize("record", WORKFLOW_EDGES, ids=range(len(WORKFLOW_EDGES)))
def test_workflow_import_edges(record: Any) -> None:
    assert _fast_check("workflow_import")(record) == schemas.validator("workflow_import").is_valid(
        record
    )  # no pattern in this schema: the verdicts are the same both ways


# -- describing a refused field name -------------------------------------------------------


def _refusal(target: str, record: dict[str, Any]) -> str:
    with pytest.raises(InputError) as caught:
        list(validate(target, [({"ok": 1}, "in.jsonl:1"), (record, "in.jsonl:2")]))
    assert caught.value.where == "in.jsonl:2"
    return str(caught.value)


def test_overlong_field_name_is_named() -> None:
    name = "Column" + "x" * 194
    message = _refusal("workflow_import", {"ok": 1, name: "v"})
    shown = name[:37] + "..."
    assert message == f"in.jsonl:2: field name {shown!r}: too long: 200 characters, at most 128"


def test_empty_field_name_is_named() -> None:
    assert _refusal("workflow_import", {"": "v"}) == "in.jsonl:2: field name '': must not be empty"


def test_empty_record() -> None:
    assert _refusal("workflow_import", {}) == "in.jsonl:2: record: should be non-empty"


def _described(schema: dict[str, Any], record: Any) -> str:
    error = best_match(Draft202012Validator(schema).iter_errors(record), key=_RELEVANCE)
    assert error is not None
    return describe(error)


def test_nested_field_name_names_its_object() -> None:
    schema = {"properties": {"data": {"propertyNames": {"maxLength": 3}}}}
    assert _described(schema, {"data": {"abcd": 1}}) == (
        "data: field name 'abcd': too long: 4 characters, at most 3"
    )


def test_a_property_called_propertyNames_is_a_field() -> None:
    schema = {"properties": {"propertyNames": {"maxLength": 1}}}
    assert _described(schema, {"propertyNames": "xy"}) == (
        "propertyNames: too long: 2 characters, at most 1"
    )


def test_field_name_against_a_pattern() -> None:
    schema = {"propertyNames": {"pattern": "^[a-z]+$"}}
    assert _described(schema, {"ok": 1, "Bad": 2}).startswith("field name 'Bad': ")


def test_field_counts() -> None:
    assert _described({"maxProperties": 2}, {"a": 1, "b": 2, "c": 3}) == (
        "record: too many fields: 3, at most 2"
    )
    assert _described({"minProperties": 2}, {"a": 1}) == "record: too few fields: 1, at least 2"
