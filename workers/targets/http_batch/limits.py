"""Limits of one HTTP batch receiver: records and bytes per request, requests in flight, timeout.

A generic receiver comes with no vendor doc, so the defaults are ours, and a
setting may move each one either way: the operator knows the receiver. One unit
is one request.
"""

from __future__ import annotations

from dataclasses import dataclass

from importq.settings import Settings

# The whole-number limits a setting may change: field, variable, and the least value that
# means something (a body of 1 byte holds no record once its framing is counted).
_WHOLE_NUMBERS = (
    ("records_per_request", "HTTP_BATCH_RECORDS_PER_REQUEST", 1),
    ("bytes_per_request", "HTTP_BATCH_BYTES_PER_REQUEST", 2),
    ("requests_in_flight", "HTTP_BATCH_REQUESTS_IN_FLIGHT", 1),
)


@dataclass(frozen=True)
class HttpBatchLimits:
    records_per_request: int = 500
    bytes_per_request: int = 1_000_000
    """Bytes of one request body in either format; under 1 MiB, the cap nginx
    (client_max_body_size) and many API gateways apply unless it is raised."""
    requests_in_flight: int = 4
    """Requests being posted at once across all workers: internal APIs are often small."""
    timeout_seconds: float = 60.0
    resend_attempts: int = 5
    """Sends in all of a request refused before processing (429, 503), in place."""

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpBatchLimits:
        whole = {
            field: settings.integer(variable, getattr(cls, field), minimum=least)
            for field, variable, least in _WHOLE_NUMBERS
        }
        timeout = settings.number("HTTP_BATCH_TIMEOUT", cls.timeout_seconds, above=0)
        return cls(**whole, timeout_seconds=timeout)
