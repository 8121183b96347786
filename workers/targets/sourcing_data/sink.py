"""One SourcingData queue item per unit: start with the first chunk, append the rest.

Every chunk but the last carries incompleteData: true, so the vendor commits
nothing until the last chunk lands; an item a dead attempt left Pending is
cancelled before the unit runs again, and one it had completed is polled to
its end instead of being sent twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from importq.errors import FinalError, InputError, RejectedError, RetryableError
from importq.settings import Settings
from workers.retry import resend
from workers.targets.base import (
    CsvColumns,
    Delivered,
    Located,
    Param,
    Record,
    RunContext,
    Sink,
    batched,
)
from workers.targets.sourcing_data.client import (
    TARGET,
    QueueItem,
    SourcingDataClient,
    still_processing,
)
from workers.targets.sourcing_data.limits import SourcingDataLimits

PENDING = "Pending"  # the vendor's state of an item still waiting for chunks
CANCELLED = frozenset({"Canceled", "Cancelled"})


def request_chunks(records: list[Record], size: int) -> list[list[Record]]:
    """The requests of one queue item: never over `size` records, and always at least two.

    The start request opens the item with incompleteData: true, so the vendor commits
    nothing before the item's id is in job state; only the last request completes it.
    A crash between the two therefore leaves a Pending item, which the next attempt
    cancels, never a committed one it cannot see.
    """
    chunks = [records[i : i + size] for i in range(0, len(records), size)]
    if len(chunks) == 1:
        chunks = [records[:-1], records[-1:]] if len(records) > 1 else [records, []]
    return chunks


class SourcingDataSink(Sink):
    name = TARGET
    csv_columns = CsvColumns(
        fields=("entityId", "recordId", "entityMappingId", "referenceId", "mandantCode"),
        booleans=("isDeleted",),
        prefixes=("data", "customData"),
        required=("entityId", "recordId"),
    )
    params = (Param("operation_id", "text", "the queue items' operationId (also --operation-id)"),)

    def load_limits(self, settings: Settings) -> SourcingDataLimits:
        return SourcingDataLimits.from_settings(settings)

    def make_client(self, settings: Settings) -> SourcingDataClient:
        limits = self.load_limits(settings)
        return SourcingDataClient.from_settings(settings, limits.request_timeout_seconds)

    def check_params(self, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
        unknown = set(params) - {"operation_id"}
        if unknown:
            raise InputError(f"unknown sourcing_data option(s): {', '.join(sorted(unknown))}")
        return params

    def preflight(self, client: SourcingDataClient, params: dict[str, Any]) -> None:
        client.list_items(limit=1)  # 401/403 bad token, 404 unknown agent

    def plan(
        self, records: Iterable[Located], limits: Any, params: dict[str, Any]
    ) -> Iterator[list[Record]]:
        return batched(records, limits.records_per_item, limits.bytes_per_item, "queue item")

    def slot(self, params: dict[str, Any], limits: Any) -> tuple[str, int] | None:
        operation = params.get("operation_id") or "-"
        return f"operation:{operation}", limits.items_in_flight_per_operation

    def run(self, ctx: RunContext) -> Delivered:
        client: SourcingDataClient = ctx.client
        open_item = ctx.remote.get("queue_item_id")
        if open_item:
            item = self._call(ctx, lambda: client.status(open_item))
            ctx.log.info("earlier queue item found", queue_item_id=open_item, status=item.status)
            sent = int(ctx.remote.get("chunks_sent") or 0)
            if item.status == PENDING and ctx.handed_back and sent:
                # The last attempt stopped cleanly after chunk `sent`: carry on from there.
                return self._append_rest(ctx, client, item, sent)
            finished = self._resume(ctx, client, item)
            if finished is not None:
                return finished
        return self._send_item(ctx, client)

    def abandon(self, ctx: RunContext) -> Delivered | None:
        """Cancel the item a dead attempt left Pending, or count it if it committed."""
        client: SourcingDataClient = ctx.client
        open_item = ctx.remote.get("queue_item_id")
        if not open_item:
            return None
        item = self._call(ctx, lambda: client.status(open_item))
        try:
            return self._resume(ctx, client, item)
        except RejectedError:  # the item failed on its own: it holds nothing
            return None

    def _resume(
        self, ctx: RunContext, client: SourcingDataClient, item: QueueItem
    ) -> Delivered | None:
        """Settle the item an earlier attempt left behind; None means send afresh."""
        if item.status in CANCELLED:  # an earlier attempt cancelled it: it holds nothing
            ctx.remember({"queue_item_id": ""})
            return None
        if item.status != PENDING:  # all chunks arrived: it commits or fails on its own
            return self._settle(ctx, self._poll(ctx, client, item))
        try:  # Pending after a crash: whether its last chunk landed is unknown; drop it
            self._call(ctx, lambda: client.cancel(item.id))
        except RejectedError:  # it moved on between the two calls: settle it by its state
            return self._settle(ctx, self._poll(ctx, client, client.status(item.id)))
        ctx.log.info("cancelled the incomplete queue item of an earlier attempt",
                     queue_item_id=item.id)  # fmt: skip
        ctx.remember({"queue_item_id": ""})
        return None

    def _send_item(self, ctx: RunContext, client: SourcingDataClient) -> Delivered:
        limits: SourcingDataLimits = ctx.limits
        first = request_chunks(ctx.records, limits.records_per_request)[0]
        operation_id = ctx.params.get("operation_id")
        item = self._call(
            ctx, lambda: client.start(first, operation_id=operation_id, incomplete=True)
        )
        ctx.remember({"queue_item_id": item.id, "chunks_sent": "1"})
        return self._append_rest(ctx, client, item, sent=1)

    def _append_rest(
        self, ctx: RunContext, client: SourcingDataClient, item: QueueItem, sent: int
    ) -> Delivered:
        """Append the chunks after the first `sent`, remembering each, then settle the item."""
        limits: SourcingDataLimits = ctx.limits
        chunks = request_chunks(ctx.records, limits.records_per_request)
        item_id = item.id
        try:
            for number in range(sent + 1, len(chunks) + 1):
                ctx.checkpoint()
                last = number == len(chunks)
                chunk = chunks[number - 1]
                item = self._call(
                    ctx, lambda c=chunk, done=last: client.append(item_id, c, incomplete=not done)
                )
                ctx.remember({"chunks_sent": str(number)})
        except (FinalError, RetryableError):
            self._cancel_quietly(ctx, client, item_id)
            raise
        return self._settle(ctx, self._poll(ctx, client, item))

    def _poll(self, ctx: RunContext, client: SourcingDataClient, item: QueueItem) -> QueueItem:
        limits: SourcingDataLimits = ctx.limits
        started = time.monotonic()
        interval = limits.poll_interval_seconds
        item_id = item.id
        while not item.finished:
            waited = time.monotonic() - started
            if waited > limits.poll_budget_seconds:
                raise still_processing(item, waited)
            ctx.checkpoint()
            time.sleep(interval)
            interval = min(interval * 1.5, 5.0)
            item = self._call(ctx, lambda: client.status(item_id))
        return item

    def _settle(self, ctx: RunContext, item: QueueItem) -> Delivered:
        if item.succeeded:
            ctx.log.info("queue item committed", queue_item_id=item.id, records=len(ctx.records))
            return Delivered(len(ctx.records))
        reason = item.error_message or f"queue item ended '{item.status}'"
        ctx.remember({"queue_item_id": ""})  # a failed item holds nothing to resume
        raise RejectedError(f"queue item {item.id} failed: {reason}", target=TARGET)

    def _call(self, ctx: RunContext, request: Any) -> Any:
        limits: SourcingDataLimits = ctx.limits
        return resend(request, attempts=limits.resend_attempts)

    def _cancel_quietly(self, ctx: RunContext, client: SourcingDataClient, item_id: str) -> None:
        try:
            client.cancel(item_id)
            ctx.remember({"queue_item_id": ""})
        except (FinalError, RetryableError) as error:
            # The next attempt finds the id in job state and cancels it then.
            ctx.log.warning("could not cancel queue item", queue_item_id=item_id, error=str(error))
