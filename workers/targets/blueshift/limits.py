"""Blueshift trigger-import limits: the vendor's one trigger at a time, and importq's budgets.

The vendor doc gives no numbers beyond "an import already being processed
answers 405" and "429 when the request limit is exceeded", so everything here
but the one-at-a-time rule is importq's own budget and free to tune.
"""

from __future__ import annotations

from dataclasses import dataclass

from importq.settings import Settings

MIB = 1024 * 1024
# All records of a job are one CSV and one unit, held whole in the producer, in Redis (one
# claim-check payload) and in the worker. 50 MB of record JSON is about 300,000 customer rows
# of seven attributes (a 26 MB CSV) and ~250 MB of worker memory; larger files belong in S3
# directly, written by the upstream system, with a bare trigger.
DEFAULT_MAX_IMPORT_BYTES = 50_000_000
S3_MIN_PART_BYTES = 5 * MIB  # S3 refuses smaller parts (all but the last)


@dataclass(frozen=True)
class BlueshiftLimits:
    triggers_in_flight_per_import: int = 1  # the vendor answers 405 while an import runs
    max_import_bytes: int = DEFAULT_MAX_IMPORT_BYTES
    busy_attempts: int = 3  # 405s before the trigger fails for good
    busy_retry_seconds: float = 180.0  # an import run takes minutes: wait that long after a 405
    server_error_attempts: int = 3  # 500s before the trigger fails for good
    resend_attempts: int = 4  # in-place resends of a 429/502/503 before the unit is rescheduled
    resend_wait_cap_seconds: float = 30.0  # a longer Retry-After reschedules the unit instead
    request_timeout_seconds: float = 30.0
    multipart_threshold_bytes: int = 8 * MIB
    multipart_chunk_bytes: int = 8 * MIB

    @classmethod
    def from_settings(cls, settings: Settings) -> BlueshiftLimits:
        def at_least_one(name: str, default: int) -> int:
            return settings.integer(name, default, minimum=1)

        return cls(
            max_import_bytes=at_least_one("BLUESHIFT_MAX_IMPORT_BYTES", cls.max_import_bytes),
            busy_attempts=at_least_one("BLUESHIFT_405_ATTEMPTS", cls.busy_attempts),
            busy_retry_seconds=settings.number(
                "BLUESHIFT_405_RETRY_SECONDS", cls.busy_retry_seconds
            ),
            server_error_attempts=at_least_one("BLUESHIFT_500_ATTEMPTS", cls.server_error_attempts),
            request_timeout_seconds=settings.number(
                "BLUESHIFT_TIMEOUT", cls.request_timeout_seconds, above=0
            ),
            multipart_threshold_bytes=at_least_one(
                "BLUESHIFT_S3_MULTIPART_THRESHOLD", cls.multipart_threshold_bytes
            ),
            # S3 refuses parts under 5 MiB (all but the last): a smaller size means nothing.
            multipart_chunk_bytes=settings.integer(
                "BLUESHIFT_S3_MULTIPART_CHUNKSIZE",
                cls.multipart_chunk_bytes,
                minimum=S3_MIN_PART_BYTES,
            ),
        )
