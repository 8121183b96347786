"""Check records against their target's JSON Schema and refuse the first bad one in plain words."""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cache
from typing import Any

from jsonschema import FormatChecker
from jsonschema.exceptions import ValidationError, best_match, by_relevance

import schemas
from importq.errors import InputError
from producers.problems import Problems, refuse
from producers.readers import json_type

__all__ = ["describe", "record_targets", "validate"]

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
    is_valid = _fast_check(target)
    empty = True
    for record, where in records:
        empty = False
        if not is_valid(record):
            try:
                _refuse(target, record, where)
            except InputError as error:
                refuse(error, problems)
                continue
        yield record, where
    if empty and not (problems and problems.errors):
        raise InputError("no records in input (it is empty or holds no data rows)", source)


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


# -- fast path --------------------------------------------------------------------------------
#
# jsonschema spends about 100 us on one SourcingData record, so 1M records would take
# minutes. The schemas only use a handful of keywords, so they are compiled once into plain
# closures that give exactly jsonschema's verdict; jsonschema still explains a refusal. A
# schema using any other keyword is not compiled and jsonschema checks every record.

_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "default", "examples", "deprecated"}
)
_OBJECT_KEYWORDS = frozenset(
    {"properties", "additionalProperties", "required", "minProperties", "maxProperties"}
    | {"propertyNames"}
)
_KEYWORDS = _OBJECT_KEYWORDS | {"type", "enum", "const", "items", "not"} | {
    "minLength", "maxLength", "pattern", "format"
}  # fmt: skip


def _always(value: Any) -> bool:
    return True


def _never(value: Any) -> bool:
    return False


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_integer(v: Any) -> bool:
    if isinstance(v, float):
        return v.is_integer()
    return isinstance(v, int) and not isinstance(v, bool)


_TYPES: dict[str, Check] = {
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "number": _is_number,
    "integer": _is_integer,
}


def _all_of(checks: list[Check]) -> Check:
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:  # the common case (a type and a limit): one call fewer per value
        first, second = checks
        return lambda v: first(v) and second(v)

    def check(value: Any) -> bool:
        for c in checks:  # noqa: SIM110 - a loop, not all(), saves a generator per record
            if not c(value):
                return False
        return True

    return check


# Python types whose values certainly are of the JSON type; others (subclasses, 1.0 as an
# integer) ask the JSON type's own check.
_EXACT: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
    "object": (dict,),
    "array": (list,),
    "number": (int, float),
    "integer": (int,),
}


def _type_check(types: Any) -> Check | None:
    names = [types] if isinstance(types, str) else types
    if not isinstance(names, list) or not all(n in _TYPES for n in names):
        return None
    checks = [_TYPES[n] for n in names]
    if len(checks) == 1:
        return checks[0]
    exact = frozenset(t for n in names for t in _EXACT[n])

    def check(value: Any) -> bool:
        if type(value) in exact:
            return True
        for c in checks:  # noqa: SIM110 - hot path, as in _all_of
            if c(value):
                return True
        return False

    return check


def _strings_check(allowed: list[Any]) -> Check | None:
    # Only string choices: jsonschema's equality (1 == 1.0, True != 1) then equals Python's.
    if not all(isinstance(a, str) for a in allowed):
        return None
    choices = frozenset(allowed)
    return lambda v: isinstance(v, str) and v in choices


def _length_check(schema: Mapping[str, Any]) -> Check:
    low = schema.get("minLength", 0)
    high = schema.get("maxLength")
    if high is None:
        return lambda v: not isinstance(v, str) or len(v) >= low
    return lambda v: not isinstance(v, str) or low <= len(v) <= high


def _pattern_check(pattern: Any) -> Check | None:
    if not isinstance(pattern, str):
        return None
    search = re.compile(pattern).search  # jsonschema: re.search(pattern, value)
    return lambda v: not isinstance(v, str) or search(v) is not None


# Canonical spellings that the format's checker certainly accepts; anything else asks it.
_CANONICAL = {"uuid": re.compile("-".join(f"[0-9a-fA-F]{{{n}}}" for n in (8, 4, 4, 4, 12)))}


def _format_check(name: str, formats: FormatChecker) -> Check:
    if name not in formats.checkers:
        return _always  # jsonschema ignores formats it does not check
    conforms = formats.conforms
    canonical = _CANONICAL.get(name)
    if canonical is None:
        return lambda v: conforms(v, name)
    match = canonical.fullmatch
    return lambda v: (isinstance(v, str) and match(v) is not None) or conforms(v, name)


def _object_check(schema: Mapping[str, Any], formats: FormatChecker) -> Check | None:
    props: dict[str, Check] = {}
    for key, sub in schema.get("properties", {}).items():
        compiled = _compile(sub, formats)
        if compiled is None:
            return None
        props[key] = compiled
    others = _compile(schema.get("additionalProperties", True), formats)
    names = _compile(schema.get("propertyNames", True), formats)
    if others is None or names is None:
        return None
    required = tuple(schema.get("required", ()))
    low = schema.get("minProperties", 0)
    high = schema.get("maxProperties", math.inf)

    # Two loops, so that schemas without propertyNames or field counts pay nothing for them.
    def check(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        for key in required:
            if key not in value:
                return False
        get = props.get
        for key, item in value.items():  # noqa: SIM110 - hot path, as above
            if not get(key, others)(item):
                return False
        return True

    def check_names(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        for key in required:
            if key not in value:
                return False
        get = props.get
        for key, item in value.items():
            if not names(key) or not get(key, others)(item):
                return False
        return True

    fields = check if names is _always else check_names
    if low == 0 and high == math.inf:
        return fields

    def counted(value: Any) -> bool:
        return not isinstance(value, dict) or low <= len(value) <= high

    return _all_of([counted, fields])


def _items_check(sub: Any, formats: FormatChecker) -> Check | None:
    each = _compile(sub, formats)
    if each is None:
        return None
    return lambda v: not isinstance(v, list) or all(each(x) for x in v)


def _not_check(sub: Any, formats: FormatChecker) -> Check | None:
    inner = _compile(sub, formats)
    return None if inner is None else (lambda v: not inner(v))


def _keyword_checks(schema: Mapping[str, Any], formats: FormatChecker) -> list[Check | None]:
    checks: list[Check | None] = []
    if "type" in schema:
        checks.append(_type_check(schema["type"]))
    if "enum" in schema:
        checks.append(_strings_check(list(schema["enum"])))
    if "const" in schema:
        checks.append(_strings_check([schema["const"]]))
    if _OBJECT_KEYWORDS & schema.keys():
        checks.append(_object_check(schema, formats))
    if "items" in schema:
        checks.append(_items_check(schema["items"], formats))
    if {"minLength", "maxLength"} & schema.keys():
        checks.append(_length_check(schema))
    if "pattern" in schema:
        checks.append(_pattern_check(schema["pattern"]))
    if "format" in schema:
        checks.append(_format_check(schema["format"], formats))
    if "not" in schema:
        checks.append(_not_check(schema["not"], formats))
    return checks


def _compile(schema: Any, formats: FormatChecker) -> Check | None:
    """An exact validity check for `schema`, or None if it uses a keyword not handled here."""
    if isinstance(schema, bool):
        return _always if schema else _never
    if not isinstance(schema, Mapping) or not schema.keys() <= _KEYWORDS | _ANNOTATIONS:
        return None
    checks = _keyword_checks(schema, formats)
    if any(c is None for c in checks):
        return None
    return _all_of([c for c in checks if c is not None])


@cache
def _fast_check(target: str) -> Check:
    validator = schemas.validator(target)
    formats: FormatChecker | None = getattr(validator, "format_checker", None)
    compiled = _compile(schemas.load(target), formats) if formats is not None else None
    return compiled if compiled is not None else validator.is_valid
