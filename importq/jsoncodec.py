"""JSON on the hot paths (reading input lines, staging payloads, sizing records): orjson.

orjson parses and encodes several times faster than the standard library. Where the two
differ, the standard library's answer is kept: integers past 64 bits, which orjson
refuses, are parsed by `json`; keys that are not strings (a Python producer's records) are
written as strings, as `json` does.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, as `json.dumps(value, separators=(",", ":"), ensure_ascii=False)`."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except TypeError:  # an integer past 64 bits, or a type orjson does not know: json decides
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def loads(data: bytes | str) -> Any:
    """Parse JSON; NaN and Infinity are refused (ValueError), as every target's parser would."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        # Not JSON for orjson: json parses what orjson cannot (big integers) and says where
        # the text is wrong in its own words.
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, parse_constant=_reject_constant)


# The reader's fast path, called inline once per line (a wrapper would cost a tenth of
# the parse): orjson's own parse, and the error it raises for anything it cannot read,
# after which the caller asks `loads`, which parses what orjson cannot or says what is wrong.
fast_loads = orjson.loads
FastDecodeError = orjson.JSONDecodeError


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")
