"""schemathesis fuzzes the committed OpenAPI document against a real `importq serve`.

Every operation gets generated requests (with a write token, so publishes, replays and
pauses really run against the session's Redis): no answer is a 500, and each one's
status, content type, headers and body match what the document promises.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from importq.serve.app import OPENAPI_PATH
from tests.serving import WRITER, Api, api
from tests.test_import_graph import ROOT

__all__ = ["api"]  # the fixture

_values = st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.none())
_records = st.lists(st.dictionaries(st.text(max_size=6), _values, max_size=3), max_size=4)
_lines = _records.map(lambda rs: "\n".join(json.dumps(r) for r in rs).encode())
_junk = st.binary(max_size=64)
schemathesis.openapi.media_type("application/x-ndjson", st.one_of(_lines, _junk))
_csv = st.one_of(st.just(b"eventId,type\nev-1,sale\n"), st.text(max_size=40).map(str.encode))
schemathesis.openapi.media_type("text/csv", _csv)

schema = schemathesis.openapi.from_dict(json.loads((ROOT / OPENAPI_PATH).read_text()))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_answer_is_a_500_and_each_matches_the_document(case: Any, api: Api) -> None:
    case.call_and_validate(
        base_url=api.url, headers={"Authorization": f"Bearer {WRITER}"}, checks=CHECKS
    )
