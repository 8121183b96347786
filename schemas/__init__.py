"""The producer/worker contract as JSON Schema files, loaded from the package and compiled once."""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.protocols import Validator

__all__ = ["load", "names", "validator"]

# Only formats whose checkers need no optional dependency; uuid is what the schemas use.
_FORMATS = ("uuid",)


@cache
def _names() -> tuple[str, ...]:
    files = resources.files(__name__)
    return tuple(
        sorted(f.name.removesuffix(".json") for f in files.iterdir() if f.name.endswith(".json"))
    )


def names() -> list[str]:
    """Names of the packaged schemas (file names without ".json"), sorted."""
    return list(_names())


@cache
def _load(name: str) -> dict[str, Any]:
    if name not in _names():
        raise ValueError(f"unknown schema {name!r} (known: {', '.join(names())})")
    text = resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def load(name: str) -> dict[str, Any]:
    """The schema `name` (e.g. "sourcing_data") as a dict; a copy, so callers may change it."""
    return copy.deepcopy(_load(name))


@cache
def validator(name: str) -> Validator:
    """A compiled draft 2020-12 validator for schema `name`, with uuid format checking on."""
    schema = _load(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker(_FORMATS))
