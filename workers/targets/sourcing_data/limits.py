"""ASOL DataService SourcingData v2 limits, with the vendor doc's numbers as defaults.

Vendor doc: about 500 records per request; a queue item holds roughly
3,000-4,000 records depending on JSON size. Settings may only tighten the
vendor's hard limits; the rest (in-flight cap, polling) are free to tune.
"""

from __future__ import annotations

from dataclasses import dataclass

from importq.settings import Settings

VENDOR_RECORDS_PER_REQUEST = 500
VENDOR_RECORDS_PER_ITEM = 4000
# The doc gives no byte figure; 3 MB keeps a queue item of ~4,000 typical (~700-byte)
# records whole while making wide records form smaller items.
DEFAULT_BYTES_PER_ITEM = 3_000_000


@dataclass(frozen=True)
class SourcingDataLimits:
    records_per_request: int = VENDOR_RECORDS_PER_REQUEST
    records_per_item: int = VENDOR_RECORDS_PER_ITEM
    bytes_per_item: int = DEFAULT_BYTES_PER_ITEM
    items_in_flight_per_operation: int = 8
    poll_budget_seconds: float = 600.0
    poll_interval_seconds: float = 0.25
    request_timeout_seconds: float = 60.0
    resend_attempts: int = 6

    @classmethod
    def from_settings(cls, settings: Settings) -> SourcingDataLimits:
        return cls(
            records_per_request=settings.tightened(
                "SOURCING_DATA_RECORDS_PER_REQUEST", VENDOR_RECORDS_PER_REQUEST
            ),
            records_per_item=settings.tightened(
                "SOURCING_DATA_RECORDS_PER_ITEM", VENDOR_RECORDS_PER_ITEM
            ),
            bytes_per_item=settings.integer(
                "SOURCING_DATA_BYTES_PER_ITEM", DEFAULT_BYTES_PER_ITEM, minimum=1
            ),
            items_in_flight_per_operation=settings.integer(
                "SOURCING_DATA_ITEMS_IN_FLIGHT", cls.items_in_flight_per_operation, minimum=1
            ),
            poll_budget_seconds=settings.number(
                "SOURCING_DATA_POLL_BUDGET", cls.poll_budget_seconds, above=0
            ),
            poll_interval_seconds=settings.number(
                "SOURCING_DATA_POLL_INTERVAL", cls.poll_interval_seconds, above=0
            ),
            request_timeout_seconds=settings.number(
                "SOURCING_DATA_TIMEOUT", cls.request_timeout_seconds, above=0
            ),
            resend_attempts=settings.integer(
                "SOURCING_DATA_RESEND_ATTEMPTS", cls.resend_attempts, minimum=1
            ),
        )
