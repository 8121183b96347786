"""One Workflow Import Queue batch per unit, posted at most once unless the operator says so.

The API adds a batch straight to the processing queue and offers no call to
look one up, so a POST whose answer was lost cannot be checked. Every attempt
therefore notes in job state that it is about to post; an attempt that finds
that note without a queueBatchId does not post again (unless
WORKFLOW_IMPORT_REPOST_UNKNOWN is true) but fails the unit for review, with
the time and the creationPath to search for in the Import Queue.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from importq.errors import FinalError, InputError, NotApplied
from importq.settings import Settings
from workers import keys
from workers.retry import resend
from workers.targets.base import (
    Batches,
    Delivered,
    Located,
    Param,
    Record,
    RunContext,
    Sink,
)
from workers.targets.workflow_import.client import TARGET, QueueBatch, WorkflowImportClient
from workers.targets.workflow_import.limits import WorkflowImportLimits

CREATION_PATH = "creationPath"
QUERY_PARAMS = "WORKFLOW_IMPORT_QUERY_PARAMS"
# Query parameter names as the vendor spells them (creationPath); nothing that needs escaping.
_PARAM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
# Credentials go in the Authorization header from the environment, never in job params.
_SECRET_WORDS = ("apikey", "api_key", "authorization", "password", "secret", "token")
MAX_PARAM_LENGTH = 1000
NO_BATCH_ID = "(not in the answer)"


def search_text(creation_path: str) -> str:
    """What the vendor's UI finds batches of one integration by (the doc's example)."""
    return f"IMPORT_QUEUE_API:{creation_path}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def check_param(name: str, value: Any) -> str:
    """One --param as a query string value; InputError says what to change."""
    if name == "operation_id":
        raise InputError("--operation-id is a sourcing_data option; workflow_import has none")
    if not _PARAM_NAME.fullmatch(name):
        raise InputError(
            f"--param {name!r}: a query parameter name is a letter followed by up to 63 "
            "letters, digits, '_', '.' or '-'"
        )
    if any(word in name.lower() for word in _SECRET_WORDS):
        raise InputError(
            f"--param {name}: credentials do not travel in job parameters; "
            "set WORKFLOW_IMPORT_API_KEY in the workers' environment"
        )
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str | int | float):
        raise InputError(f"--param {name}: expected text or a number, got {type(value).__name__}")
    text = str(value)
    if not text or len(text) > MAX_PARAM_LENGTH:
        raise InputError(f"--param {name}: the value must be 1 to {MAX_PARAM_LENGTH} characters")
    return text


def query_params(settings: Settings) -> tuple[Param, ...]:
    """The params the operator names in WORKFLOW_IMPORT_QUERY_PARAMS, on top of creationPath.

    The vendor doc names only creationPath; the other "control data" of the query string
    are whatever the operator's instance takes, so the operator names them.
    """
    extra = [name.strip() for name in settings.get(QUERY_PARAMS).split(",") if name.strip()]
    return tuple(
        Param(name, "text", f"a query parameter named in {QUERY_PARAMS}") for name in extra
    )


Context = RunContext[WorkflowImportLimits, WorkflowImportClient]


class WorkflowImportSink(Sink[WorkflowImportLimits, WorkflowImportClient]):
    def check_params(self, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
        """Every --param goes to the query string; creationPath here overrides the setting."""
        return {name: check_param(name, value) for name, value in params.items()}

    # preflight: the doc has no harmless call (every POST queues a batch), so none is made.

    def plan(
        self, records: Iterable[Located], limits: WorkflowImportLimits, params: dict[str, Any]
    ) -> Iterator[list[Record]]:
        return self.batches(limits, params).plan(records)

    def batches(self, limits: WorkflowImportLimits, params: dict[str, Any]) -> Batches:
        return Batches(limits.records_per_batch, limits.bytes_per_batch, "batch")

    def slot(self, params: dict[str, Any], limits: WorkflowImportLimits) -> tuple[str, int] | None:
        # One cap across every job and worker: all batches land on the same background queue.
        return "endpoint", limits.batches_in_flight

    def run(self, ctx: Context) -> Delivered:
        if ctx.remote.get("queue_batch_id"):
            # An earlier attempt got its answer but died before finishing the unit.
            ctx.log.info("batch already created", queue_batch_id=ctx.remote["queue_batch_id"])
            return Delivered(len(ctx.records))
        if ctx.remote.get("post_started_at"):
            self._after_unknown_outcome(ctx)
        return self._post(ctx)

    def _after_unknown_outcome(self, ctx: Context) -> None:
        """An earlier POST may have created the batch: hold the unit for review, or repost."""
        limits = ctx.limits
        started = ctx.remote["post_started_at"]
        creation_path = ctx.remote.get("creation_path") or self._creation_path(ctx)
        if limits.repost_unknown:
            ctx.log.warning("posting again a batch whose earlier outcome is unknown",
                            earlier_post=started)  # fmt: skip
            ctx.remember({"reposted_after": started})
            return
        note = (
            f"possible duplicate batch: a POST of these {len(ctx.records)} records at {started} "
            f"got no answer, so the batch may exist; search the Import Queue for "
            f'"{search_text(creation_path)}" around that time'
        )
        ctx.remember({"possible_duplicate": note})
        raise FinalError(
            f"{note}. If the batch is not there, replay the dead letters with "
            f"`importq dlq replay {keys.job_of(ctx.unit_id)}`; set "
            "WORKFLOW_IMPORT_REPOST_UNKNOWN=true to post such batches again without review",
            target=TARGET,
        )

    def _post(self, ctx: Context) -> Delivered:
        limits = ctx.limits
        client = ctx.client
        creation_path = self._creation_path(ctx)
        query = {**ctx.params, CREATION_PATH: creation_path}
        ctx.checkpoint()
        # Noted before the POST: a crash or a lost answer after it must not lead to a repost.
        ctx.remember({"post_started_at": _now(), "creation_path": creation_path})
        try:
            batch: QueueBatch = resend(
                lambda: client.post_batch(ctx.records, query), attempts=limits.resend_attempts
            )
        except (FinalError, NotApplied):
            # The vendor refused or never processed it: a later attempt may post freely.
            ctx.remember({"post_started_at": ""})
            raise
        return self._created(ctx, batch)

    def _created(self, ctx: Context, batch: QueueBatch) -> Delivered:
        warnings = []
        if not batch.id:
            warnings.append("the API answered success without a queueBatchId")
        ctx.remember(
            {"queue_batch_id": batch.id or NO_BATCH_ID, "queue_batch_details": batch.details}
        )
        ctx.log.info("queue batch created", queue_batch_id=batch.id, records=len(ctx.records))
        return Delivered(len(ctx.records), warnings=warnings)

    def _creation_path(self, ctx: Context) -> str:
        client = ctx.client
        return str(ctx.params.get(CREATION_PATH) or client.creation_path)
