"""Check records against their target's JSON Schema and refuse the first bad one in plain words."""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cache
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match, by_relevance

import schemas
from importq.errors import InputError
from producers.problems import Problems, refuse
from producers.readers import json_type

__all__ = ["all_valid", "check_record", "describe", "no_records", "record_targets", "validate"]

Check = Callable[[Any], bool]

# Schemas that describe messages and jobs, not records.
_NOT_RECORDS = frozenset({"envelope", "job"})


def record_targets() -> list[str]:
    """Targets that have a record schema."""
    return [name for name in schemas.names() if name not in _NOT_RECORDS]


def validate(
    target: str,
    records: Iterable[tuple[dict[str, Any], str]],
    *,
    source: str | None = None,
    problems: Problems | None = None,
) -> Iterator[tuple[dict[str, Any], str]]:
    """Pass `records` through, raising InputError at the first one `target`'s schema refuses.

    Lazy: records before the bad one have already been yielded when it raises.
    `source` names the input in the "no records" error. With `problems` (a dry run), a
    refused record is noted there and skipped instead.
    """
    if target not in record_targets():
        known = ", ".join(record_targets())
        raise InputError(f"no record schema for target {target!r} (known: {known})")
    return _validate(target, records, source, problems)


def _validate(
    target: str,
    records: Iterable[tuple[dict[str, Any], str]],
    source: str | None,
    problems: Problems | None,
) -> Iterator[tuple[dict[str, Any], str]]:
    fast, is_valid = _target_checks(target)
    empty = True
    for located in records:
        empty = False
        try:  # the compiled check inline: a wrapper would cost as much as the check
            valid = fast(located[0])
        except (ValueError, TypeError, OverflowError):  # not JSON (an int key): ask jsonschema
            valid = is_valid(located[0])
        if not valid:
            try:
                _refuse(target, *located)
            except InputError as error:
                refuse(error, problems)
                continue
        yield located  # the same pair: no new tuple per record
    if empty and not (problems and problems.errors):
        raise no_records(source)


def no_records(source: str | None) -> InputError:
    return InputError("no records in input (it is empty or holds no data rows)", source)


def all_valid(target: str, records: list[Any]) -> bool:
    """Whether `target`'s compiled check passes every one of `records` (one call each,
    no loop in Python). False also when one is not JSON to it: ask `check_record` then."""
    fast, _ = _target_checks(target)
    try:
        return _objects_only(target) and all(map(fast, records))
    except (ValueError, TypeError, OverflowError):
        return False


def check_record(target: str, record: Any, where: str) -> None:
    """InputError in plain words if `target`'s schema refuses `record`."""
    fast, is_valid = _target_checks(target)
    try:
        valid = fast(record)
    except (ValueError, TypeError, OverflowError):  # not JSON (an int key): ask jsonschema
        valid = is_valid(record)
    if not valid:
        _refuse(target, record, where)


# A typo ("recordID") is reported as the unknown field, not as the field it then lacks.
_RELEVANCE = by_relevance(strong=frozenset({"additionalProperties"}))


def _refuse(target: str, record: Any, where: str) -> None:
    # Slow path, once per run: ask jsonschema what is wrong.
    errors = schemas.validator(target).iter_errors(record)
    error = best_match(errors, key=_RELEVANCE)
    # None means the fast path was stricter than jsonschema: jsonschema is the contract.
    if error is not None:
        raise InputError(describe(error), where)


# -- error messages ---------------------------------------------------------------------------


def _value(error: ValidationError) -> Any:
    # The stubs allow "unset"; every error built by a keyword carries the keyword's value.
    return error.validator_value


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _path(error: ValidationError) -> str:
    path = ""
    for key in error.absolute_path:
        path = _join(path, key)
    return path


def _shown(value: Any) -> str:
    """A JSON type and, for scalars, the value, short: "string 'maybe'", "number 3", "object"."""
    kind = json_type(value)
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"{kind} {text!r}"
    if kind in ("number", "boolean", "null"):
        return f"{kind} {json.dumps(value)}"
    return kind


def _expected(types: str | Sequence[str]) -> str:
    return types if isinstance(types, str) else " or ".join(types)


def _required(error: ValidationError, path: str) -> str:
    instance: Any = error.instance
    wanted: list[str] = list(_value(error))
    missing = [k for k in wanted if k not in instance]
    return f"{_join(path, missing[0] if missing else '?')}: required field is missing"


def _additional(error: ValidationError, path: str) -> str:
    allowed = list(error.schema.get("properties", {})) if isinstance(error.schema, dict) else []
    instance: Any = error.instance
    extra = [k for k in instance if k not in allowed]
    field = extra[0] if extra else "?"
    close = difflib.get_close_matches(str(field), allowed, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"{_join(path, field)}: unknown field ({hint}allowed: {', '.join(allowed)})"


def _not(error: ValidationError, path: str) -> str:
    negated = error.validator_value
    if isinstance(negated, Mapping) and set(negated) == {"required"}:
        fields = " and ".join(_join(path, k) for k in negated["required"])
        return f"{fields}: only one of them may be set"
    return f"{path or 'record'}: must not match {json.dumps(negated)}"


def _length(error: ValidationError, path: str) -> str:
    limit: Any = error.validator_value
    value: Any = error.instance
    if error.validator == "minLength":
        what = "must not be empty" if limit == 1 else f"too short, at least {limit} characters"
    else:
        what = f"too long: {len(value)} characters, at most {limit}"
    return f"{path}: {what}"


def _counted(error: ValidationError, where: str) -> str:
    limit: Any = error.validator_value
    count = len(error.instance) if isinstance(error.instance, Mapping) else "?"
    if error.validator == "minProperties":
        if limit == 1:
            return f"{where}: should be non-empty"
        return f"{where}: too few fields: {count}, at least {limit}"
    return f"{where}: too many fields: {count}, at most {limit}"


# Keywords whose value maps names to sub-schemas or lists sub-schemas: in a schema path, the
# step after them is a name or an index, not a keyword.
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "dependentSchemas", "$defs"})
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})


def _about_a_name(error: ValidationError) -> bool:
    """Whether `error` is about a field's name (under propertyNames), not a value."""
    steps = iter(error.absolute_schema_path)
    for step in steps:
        if step == "propertyNames":
            return True
        if step in _SCHEMA_MAPS or step in _SCHEMA_LISTS:
            next(steps, None)  # a property called "propertyNames" is not the keyword
    return False


def _field_name(path: str, name: Any) -> str:
    if isinstance(name, str) and len(name) > 40:
        name = name[:37] + "..."
    label = f"field name {name!r}"
    return f"{path}: {label}" if path else label


def describe(error: ValidationError) -> str:
    """`error` as "<field path>: <what is wrong>", in plain words."""
    path = _path(error)
    if _about_a_name(error):
        # propertyNames checks the name itself; the path is the object that holds it.
        path = _field_name(path, error.instance)
    kind = error.validator
    if kind == "required":
        return _required(error, path)
    if kind == "additionalProperties":
        return _additional(error, path)
    if kind == "not":
        return _not(error, path)
    if kind in ("minLength", "maxLength"):
        return _length(error, path)
    where = path or "record"
    if kind in ("minProperties", "maxProperties"):
        return _counted(error, where)
    if kind == "type":
        return f"{where}: expected {_expected(_value(error))}, got {_shown(error.instance)}"
    if kind == "format":
        return f"{where}: not a valid {error.validator_value}: {_shown(error.instance)}"
    if kind == "enum":
        choices = ", ".join(json.dumps(v) for v in _value(error))
        return f"{where}: must be one of {choices}, got {_shown(error.instance)}"
    if kind == "const":
        return f"{where}: must be {json.dumps(error.validator_value)}, got {_shown(error.instance)}"
    return f"{where}: {error.message}"


# -- the yes/no check ---------------------------------------------------------------------------
#
# jsonschema spends about 100 us on one SourcingData record, so 1M records would take
# minutes. jsonschema-rs (compiled) answers yes/no in about a microsecond; jsonschema stays
# the contract: it is asked about every record the compiled check refuses, explains it, and
# its verdict stands (ECMA's `$` is stricter than Python's before a trailing newline). The
# compiled check never passes a record jsonschema refuses (tests/test_validate_fast_path.py).


def _format_names(schema: Any) -> set[str]:
    """Every `format` named anywhere in `schema`."""
    if isinstance(schema, list):
        return set().union(*map(_format_names, schema)) if schema else set()
    if not isinstance(schema, Mapping):
        return set()
    found = {schema["format"]} if isinstance(schema.get("format"), str) else set()
    return found.union(*map(_format_names, schema.values()))


def compiled_check(schema: Mapping[str, Any], formats: FormatChecker) -> Check:
    """jsonschema-rs's verdict on `schema`, checking only the formats `formats` checks (as
    jsonschema does: it ignores the others); values it cannot take ask jsonschema."""
    fast, slow = _checks(schema, formats)

    def check(value: Any) -> bool:
        try:
            return fast(value)
        except (ValueError, TypeError, OverflowError):  # not JSON (an int key): jsonschema's
            return slow(value)

    return check


def _checks(schema: Mapping[str, Any], formats: FormatChecker) -> tuple[Check, Check]:
    """jsonschema-rs's is_valid (raises ValueError, TypeError or OverflowError for a value
    that is not JSON) and jsonschema's, both checking only the formats `formats` checks."""
    ignored = {name: _always for name in _format_names(schema) if name not in formats.checkers}
    fast = jsonschema_rs.validator_for(dict(schema), validate_formats=True, formats=ignored)
    slow = Draft202012Validator(schema, format_checker=formats)
    return fast.is_valid, slow.is_valid


def _always(value: Any) -> bool:
    return True


@cache
def _fast_check(target: str) -> Check:
    """`target`'s yes/no check as one call (the validation loop inlines `_target_checks`)."""
    return compiled_check(schemas.load(target), _formats(target))


@cache
def _objects_only(target: str) -> bool:
    """Whether `target`'s schema refuses anything but an object (each one's does), so its
    check alone tells a record from another JSON value."""
    return schemas.load(target).get("type") == "object"


@cache
def _target_checks(target: str) -> tuple[Check, Check]:
    return _checks(schemas.load(target), _formats(target))


def _formats(target: str) -> FormatChecker:
    validator = schemas.validator(target)
    return getattr(validator, "format_checker", None) or FormatChecker(())
