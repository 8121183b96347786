"""Vendor limits: a setting may lower one (to 1 at least), never raise it past the vendor's.

`Settings.tightened` is the one place that rule lives; these tests fail if a target
reads one of its hard limits as a plain number instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from importq.errors import ConfigError, InputError
from importq.settings import load
from workers.targets import datasource
from workers.targets.base import Record
from workers.targets.datasource.limits import DataSourceLimits
from workers.targets.datasource.sink import DataSourceSink, requests_for
from workers.targets.sourcing_data.limits import SourcingDataLimits

DATASOURCE = [
    ("DATASOURCE_ROWS_PER_REQUEST", "rows_per_request", 10_000),
    ("DATASOURCE_NEW_ROWS_PER_REQUEST", "new_rows_per_request", 1_500),
    ("DATASOURCE_DELETED_ROWS_PER_REQUEST", "deleted_rows_per_request", 500),
    ("DATASOURCE_MAX_ROWS", "rows_per_data_source", 50_000),
]
SOURCING_DATA = [
    ("SOURCING_DATA_RECORDS_PER_REQUEST", "records_per_request", 500),
    ("SOURCING_DATA_RECORDS_PER_ITEM", "records_per_item", 4_000),
]
LIMITS = [(DataSourceLimits, *case) for case in DATASOURCE] + [
    (SourcingDataLimits, *case) for case in SOURCING_DATA
]


@pytest.mark.parametrize(("limits", "variable", "field", "vendor"), LIMITS)
def test_a_setting_cannot_raise_a_vendor_limit(
    limits: Any, variable: str, field: str, vendor: int
) -> None:
    assert getattr(limits.from_settings(load({})), field) == vendor
    assert getattr(limits.from_settings(load({variable: str(vendor * 3)})), field) == vendor
    assert getattr(limits.from_settings(load({variable: str(vendor + 1)})), field) == vendor


@pytest.mark.parametrize(("limits", "variable", "field", "vendor"), LIMITS)
def test_a_setting_may_lower_a_vendor_limit_to_one_but_not_to_zero(
    limits: Any, variable: str, field: str, vendor: int
) -> None:
    assert getattr(limits.from_settings(load({variable: str(vendor // 4)})), field) == vendor // 4
    assert getattr(limits.from_settings(load({variable: "1"})), field) == 1
    with pytest.raises(ConfigError, match=f"{variable}='0' must be at least 1"):
        limits.from_settings(load({variable: "0"}))


def rows(count: int, width: int = 3) -> Iterator[tuple[Record, str]]:
    for n in range(count):
        yield {"Vals": [f"K{n}", *(f"v{n}.{c}" for c in range(1, width))]}, f"in.jsonl:{n + 1}"


RAISED = {name: str(vendor * 10) for name, _, vendor in DATASOURCE}
PARAMS = {"external_id": "ds-1", "name": "Sports", "headers": "Code,Name,Info"}


@pytest.mark.parametrize(("mode", "count", "width"), [("replace", 16_000, 3), ("upsert", 4_000, 3),
                                                      ("delete", 1_200, 1)])  # fmt: skip
def test_requests_stay_within_the_vendor_limits_whatever_the_settings_say(
    mode: str, count: int, width: int
) -> None:
    settings = load(RAISED)
    sink = DataSourceSink()
    limits = datasource.TARGET.limits(settings)
    params = sink.check_params({**PARAMS, "mode": mode}, settings)
    (unit,) = list(sink.plan(rows(count, width), limits, params))
    sent = [(kind, len(chunk)) for kind, chunk in requests_for(mode, [r["Vals"] for r in unit],
                                                               limits)]  # fmt: skip
    most = {"Rows": 10_000, "NewRows": 1_500, "DeletedRows": 500}
    assert sum(size for _, size in sent) == count
    assert all(size <= most[kind] for kind, size in sent), sent


def test_a_publish_over_the_vendors_row_limit_is_refused_whatever_the_settings_say() -> None:
    settings = load(RAISED)
    sink = DataSourceSink()
    params = sink.check_params({**PARAMS, "mode": "replace"}, settings)
    with pytest.raises(InputError, match=r"more than 50000 rows"):
        list(sink.plan(rows(50_001), datasource.TARGET.limits(settings), params))
