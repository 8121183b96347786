"""One POST per unit, under an idempotency key that is the unit's id.

The key is the same on every attempt of a unit and different for each half of a
split unit (a child's id is its parent's plus ".0" or ".1"), so a receiver that
honours the key takes a unit at most once. That is why a POST whose answer was
lost (a timeout, a reset, a gateway's 502 or 504 after the receiver may have
taken it) is posted again here, where workflow_import, whose API has no such key,
holds the batch for review: the core reschedules the unit, and its next attempt
sends the same body under the same key, which the receiver answers as it
answered the first. A receiver that ignores the header could take such a unit
twice: set HTTP_BATCH_IDEMPOTENCY_HEADER to the header it honours.

A 2xx answer that lists refused records (answers.py) dead-letters exactly those,
with the receiver's reason, and counts the rest delivered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from importq.errors import InputError
from workers.retry import resend
from workers.targets.base import Batches, Delivered, Param, Sink
from workers.targets.http_batch.client import HttpBatchClient
from workers.targets.http_batch.limits import HttpBatchLimits

if TYPE_CHECKING:
    from importq.settings import Settings
    from workers.targets.base import Located, Record, RunContext

PATH = "path"
MAX_PATH_LENGTH = 200
# Unreserved URL characters only, so a path is sent as written; "." and ".." are refused.
_PATH = re.compile(r"[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*")


def check_path(value: Any) -> str:
    """The job's path below HTTP_BATCH_URL, without its outer slashes; InputError if unfit."""
    path = value.strip().strip("/") if isinstance(value, str) else ""
    segments = path.split("/")
    if (
        len(path) > MAX_PATH_LENGTH
        or not _PATH.fullmatch(path)
        or any(segment in (".", "..") for segment in segments)
    ):
        raise InputError(
            f"--param path={value!r}: a path below HTTP_BATCH_URL is names of letters, digits, "
            f"'.', '_', '~' or '-' joined by '/' (users, v2/groups), {MAX_PATH_LENGTH} "
            "characters at most"
        )
    return path


PARAMS = (
    Param(PATH, "text", "where below HTTP_BATCH_URL this job's batches go (users: "
          "<HTTP_BATCH_URL>/users); default: HTTP_BATCH_URL itself"),
)  # fmt: skip


class HttpBatchSink(Sink[HttpBatchLimits, HttpBatchClient]):
    def check_params(self, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
        if PATH not in params:
            return params
        return {**params, PATH: check_path(params[PATH])}

    # preflight: a generic receiver has no harmless call (a POST delivers), so none is made.

    def plan(
        self, records: Iterable[Located], limits: HttpBatchLimits, params: dict[str, Any]
    ) -> Iterator[list[Record]]:
        return self.batches(limits, params).plan(records)

    def batches(self, limits: HttpBatchLimits, params: dict[str, Any]) -> Batches:
        # batched counts each record plus one byte: JSON Lines is exactly that, a JSON array
        # one byte more ("[" and "]" around records joined by commas), so one is kept back.
        budget = limits.bytes_per_request - 1
        return Batches(limits.records_per_request, budget, "request")

    def slot(self, params: dict[str, Any], limits: HttpBatchLimits) -> tuple[str, int] | None:
        # One cap across every job and worker: all batches land on the same receiver.
        return "endpoint", limits.requests_in_flight

    def run(self, ctx: RunContext[HttpBatchLimits, HttpBatchClient]) -> Delivered:
        limits, client = ctx.limits, ctx.client
        key = ctx.unit_id  # attempt-stable; each half of a split unit has its own
        path = str(ctx.params.get(PATH) or "")
        ctx.checkpoint()
        ctx.log.info("posting the batch", idempotency_key=key, records=len(ctx.records))
        refused = resend(
            lambda: client.post(ctx.records, key, path), attempts=limits.resend_attempts
        )
        rejected = [(ctx.records[position], reason) for position, reason in sorted(refused.items())]
        if rejected:
            ctx.log.warning("the receiver refused records", refused=len(rejected))
        return Delivered(len(ctx.records) - len(rejected), rejected=rejected)
