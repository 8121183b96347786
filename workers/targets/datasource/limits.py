"""Data Source API limits, the vendor doc's numbers as defaults; settings may only tighten them.

Vendor doc: Rows (a replace) at most 10,000 per request, NewRows at most 1,500,
DeletedRows at most 500; a data source holds at most 50,000 rows; every row has
as many Vals as there are Headers, and at least two.
"""

from __future__ import annotations

from dataclasses import dataclass

from importq.settings import Settings

VENDOR_ROWS_PER_REQUEST = 10_000
VENDOR_NEW_ROWS_PER_REQUEST = 1_500
VENDOR_DELETED_ROWS_PER_REQUEST = 500
VENDOR_ROWS_PER_DATA_SOURCE = 50_000
VENDOR_MIN_VALS = 2
# A replace must land before its increments, so one data source takes one publish at a time.
DATA_SOURCE_SLOTS = 1


@dataclass(frozen=True)
class DataSourceLimits:
    rows_per_request: int = VENDOR_ROWS_PER_REQUEST
    new_rows_per_request: int = VENDOR_NEW_ROWS_PER_REQUEST
    deleted_rows_per_request: int = VENDOR_DELETED_ROWS_PER_REQUEST
    rows_per_data_source: int = VENDOR_ROWS_PER_DATA_SOURCE
    min_vals: int = VENDOR_MIN_VALS
    request_timeout_seconds: float = 60.0
    resend_attempts: int = 6

    @classmethod
    def from_settings(cls, settings: Settings) -> DataSourceLimits:
        return cls(
            rows_per_request=settings.tightened(
                "DATASOURCE_ROWS_PER_REQUEST", VENDOR_ROWS_PER_REQUEST
            ),
            new_rows_per_request=settings.tightened(
                "DATASOURCE_NEW_ROWS_PER_REQUEST", VENDOR_NEW_ROWS_PER_REQUEST
            ),
            deleted_rows_per_request=settings.tightened(
                "DATASOURCE_DELETED_ROWS_PER_REQUEST", VENDOR_DELETED_ROWS_PER_REQUEST
            ),
            rows_per_data_source=settings.tightened(
                "DATASOURCE_MAX_ROWS", VENDOR_ROWS_PER_DATA_SOURCE
            ),
            request_timeout_seconds=settings.number(
                "DATASOURCE_TIMEOUT", cls.request_timeout_seconds, above=0
            ),
        )
