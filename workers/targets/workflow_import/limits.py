"""Workflow Import Queue limits: batch size, batches in flight, timeouts, the repost choice.

The vendor doc gives no numbers: it only says the body must be JSON Lines "to
support large number of records in an API call". The defaults below are ours,
chosen so one batch stays a reviewable unit in the Import Queue UI and its body
stays under the 4 MiB request cap that ASP.NET hosts apply unless raised.
"""

from __future__ import annotations

from dataclasses import dataclass

from importq.settings import Settings

DEFAULT_RECORDS_PER_BATCH = 1000
# 4,000,000 < 4 MiB (ASP.NET's default maxRequestLength): a batch body never trips it.
DEFAULT_BYTES_PER_BATCH = 4_000_000
DEFAULT_BATCHES_IN_FLIGHT = 8
DEFAULT_TIMEOUT_SECONDS = 120.0  # one POST inserts every row of the batch before answering


@dataclass(frozen=True)
class WorkflowImportLimits:
    records_per_batch: int = DEFAULT_RECORDS_PER_BATCH
    bytes_per_batch: int = DEFAULT_BYTES_PER_BATCH
    batches_in_flight: int = DEFAULT_BATCHES_IN_FLIGHT
    request_timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    resend_attempts: int = 5
    repost_unknown: bool = False
    """Post a batch again when an earlier attempt's answer was lost (may duplicate it)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkflowImportLimits:
        def at_least_one(name: str, default: int) -> int:
            return settings.integer(name, default, minimum=1)

        return cls(
            records_per_batch=at_least_one(
                "WORKFLOW_IMPORT_RECORDS_PER_BATCH", DEFAULT_RECORDS_PER_BATCH
            ),
            bytes_per_batch=at_least_one(
                "WORKFLOW_IMPORT_BYTES_PER_BATCH", DEFAULT_BYTES_PER_BATCH
            ),
            batches_in_flight=at_least_one(
                "WORKFLOW_IMPORT_BATCHES_IN_FLIGHT", DEFAULT_BATCHES_IN_FLIGHT
            ),
            request_timeout_seconds=settings.number(
                "WORKFLOW_IMPORT_TIMEOUT", DEFAULT_TIMEOUT_SECONDS, above=0
            ),
            repost_unknown=settings.flag("WORKFLOW_IMPORT_REPOST_UNKNOWN"),
        )
