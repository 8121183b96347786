"""One SourcingData queue item per unit: start with the first chunk, append the rest.

Every chunk but the last carries incompleteData: true, so the vendor commits
nothing until the last chunk lands; an item a dead attempt left Pending is
cancelled before the unit runs again, and one it had completed is polled to
its end instead of being sent twice.

The start itself may open an item whose id importq never learns: its answer is
lost (a timeout, a gateway's 502/504 after the vendor took it) or recording the
id fails. So every attempt notes `start_sent_at` and the start's operationId
before sending, and the next attempt (or the unit's end) lists the agent's items
and cancels the Pending ones that start may have opened: those of that
operationId created since then. A job without --operation-id gives each start
an operationId of its own, which finds exactly that item. Units sharing a job's
operationId open their items one at a time (a short Redis lock per operation)
and register each item they learned, so an item nobody registered, of that
operation and created within the lost start's window, is an orphan.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from importq.errors import (
    FinalError,
    InputError,
    NotApplied,
    RejectedError,
    RetryableError,
    VendorBusy,
)
from importq.settings import Settings
from workers.retry import RESEND_WAIT_CAP, resend
from workers.target_state import OpenSet
from workers.targets.base import (
    Batches,
    Delivered,
    Located,
    Record,
    RunContext,
    Sink,
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
# How far the vendor's clock (an item's createdOn) may be from the worker's.
CLOCK_MARGIN = timedelta(seconds=10)
LIST_PAGES = 50  # pages of 100 items read when looking for a lost start's item
LIST_PAGE_SIZE = 100  # the client's default page
# A start that carries the whole unit (one request, an operationId of its own) completes
# its item at once: noted with start_sent_at, so a lost answer is settled by finding it.
WHOLE_START = "start_whole"
_START_SETTLED = {"start_sent_at": "", "start_operation_id": ""}
_WHOLE_START_SETTLED = {**_START_SETTLED, WHOLE_START: ""}
START_TURN_WAIT = 10.0  # seconds a unit waits in place for its operation's start turn
# The turn's release wakes the next waiter at once; a holder that died wakes nobody, so a
# waiter asks again after this long (and checkpoints: its lease, a shutdown).
TURN_WAKE_SECONDS = 0.25
CLAIMS_KEPT_MS = 2 * 86400 * 1000  # how long a registered item id stays registered
_FRACTION = re.compile(r"(\.\d{6})\d+")  # .NET writes 7 fractional digits


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _moment(text: str) -> datetime | None:
    """An ISO 8601 time (the vendor's createdOn, our start_sent_at) as aware UTC, or None."""
    try:
        moment = datetime.fromisoformat(_FRACTION.sub(r"\1", text.strip()).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


FIRST_POLL_FRACTION = 0.1  # of the poll interval: when the first status poll comes


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


Context = RunContext[SourcingDataLimits, SourcingDataClient]


class SourcingDataSink(Sink[SourcingDataLimits, SourcingDataClient]):
    def check_params(self, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
        unknown = set(params) - {"operation_id"}
        if unknown:
            raise InputError(f"unknown sourcing_data option(s): {', '.join(sorted(unknown))}")
        return params

    def preflight(self, client: SourcingDataClient, params: dict[str, Any]) -> None:
        client.list_items(limit=1)  # 401/403 bad token, 404 unknown agent

    def plan(
        self, records: Iterable[Located], limits: SourcingDataLimits, params: dict[str, Any]
    ) -> Iterator[list[Record]]:
        return self.batches(limits, params).plan(records)

    def batches(self, limits: SourcingDataLimits, params: dict[str, Any]) -> Batches:
        return Batches(limits.records_per_item, limits.bytes_per_item, "queue item")

    def slot(self, params: dict[str, Any], limits: SourcingDataLimits) -> tuple[str, int] | None:
        # Without --operation-id every start gets its own operationId: no operation to cap.
        operation = params.get("operation_id")
        return (
            (f"operation:{operation}", limits.items_in_flight_per_operation) if operation else None
        )

    def run(self, ctx: Context) -> Delivered:
        client = ctx.client
        found = self._lost_whole_start(ctx, client)
        open_item = ctx.remote.get("queue_item_id") or ""
        if found is not None or open_item:
            item = found or self._call(ctx, lambda: client.status(open_item))
            ctx.log.info("earlier queue item found", queue_item_id=item.id, status=item.status)
            sent = int(ctx.remote.get("chunks_sent") or 0)
            if item.status == PENDING and ctx.handed_back and sent:
                # The last attempt stopped cleanly after chunk `sent`: carry on from there.
                return self._append_rest(ctx, client, item, sent)
            finished = self._resume(ctx, client, item)
            if finished is not None:
                return finished
        self._settle_lost_start(ctx, client)
        return self._send_item(ctx, client)

    def abandon(self, ctx: Context) -> Delivered | None:
        """Cancel the item a dead attempt left Pending, or count it if it committed."""
        client = ctx.client
        found = self._lost_whole_start(ctx, client, wait=False)
        self._settle_lost_start(ctx, client)  # an orphan never completes: it holds nothing
        open_item = ctx.remote.get("queue_item_id") or ""
        if found is None and not open_item:
            return None
        item = found or self._call(ctx, lambda: client.status(open_item))
        try:
            return self._resume(ctx, client, item)
        except RejectedError:  # the item failed on its own: it holds nothing
            return None

    def _resume(
        self, ctx: Context, client: SourcingDataClient, item: QueueItem
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

    def _send_item(self, ctx: Context, client: SourcingDataClient) -> Delivered:
        limits = ctx.limits
        shared = ctx.params.get("operation_id") or None
        # Without a job-wide operationId each start gets one of its own: a lost start's item
        # is then the one item of that operation. Such a unit that fits in one request goes
        # whole, complete, in its start (see _lost_whole_start for a lost answer).
        whole = not shared and len(ctx.records) <= limits.records_per_request
        first = ctx.records if whole else request_chunks(ctx.records, limits.records_per_request)[0]
        operation_id = shared or str(uuid.uuid4())
        with self._start_turn(ctx, client, shared):
            # Noted before sending: a lost answer or a failed write of the id below leaves an
            # item the next attempt must find (and cancel, unless it was sent whole).
            ctx.remember({"start_sent_at": _now(), "start_operation_id": operation_id,
                          **({WHOLE_START: "1"} if whole else {})})  # fmt: skip
            settled = _WHOLE_START_SETTLED if whole else _START_SETTLED
            try:
                item = self._call(
                    ctx,
                    lambda: client.start(first, operation_id=operation_id, incomplete=not whole),
                )
            except (FinalError, NotApplied):
                # Refused or never processed: no item was opened.
                ctx.remember(settled)
                raise
            if whole and item.succeeded:  # committed in the answer: nothing left to wait for
                return self._committed_whole(ctx, item, operation_id)
            ctx.log.info("queue item opened", queue_item_id=item.id, operation_id=operation_id)
            if shared:
                self._register(ctx, client, shared, item.id)
            try:
                ctx.remember({"queue_item_id": item.id, "chunks_sent": "1", **settled})
            except BaseException:
                if shared:  # unregistered, it is an orphan the next attempt cancels
                    self._unregister(ctx, client, shared, item.id)
                raise
        if whole:
            return self._settle(ctx, self._poll(ctx, client, item))
        return self._append_rest(ctx, client, item, sent=1)

    @staticmethod
    def _committed_whole(ctx: Context, item: QueueItem, operation_id: str) -> Delivered:
        """A whole start the vendor answered committed: its id goes with the unit's finish.

        No write of its own before the finish (one Redis round trip and a log line less on
        a single record's way): should the finish never land, the next attempt finds the
        item by its operationId (_lost_whole_start), exactly as after a lost answer.
        """
        ctx.log.info("queue item committed", queue_item_id=item.id, operation_id=operation_id,
                     records=len(ctx.records))  # fmt: skip
        notes = {"queue_item_id": item.id, "chunks_sent": "1", **_WHOLE_START_SETTLED}
        return Delivered(len(ctx.records), remote=notes)

    def _lost_whole_start(
        self, ctx: Context, client: SourcingDataClient, *, wait: bool = True
    ) -> QueueItem | None:
        """The item a start sent whole (complete, under an operationId of its own) opened
        when its answer was lost or its id not recorded; None if it opened none.

        Such an item commits on its own, so it is found rather than cancelled: the agent's
        items of that operationId. One that is not cancelled is adopted (its id recorded, then
        polled to its end, or cancelled if Pending); none means the start opened nothing,
        once it can no longer be in flight: until then (the request timeout and the clock
        margin after it was sent) the unit waits (VendorBusy), or, with `wait` False (the
        unit is ending), FinalError says to check the vendor, and the notes stay.
        """
        operation_id = ctx.remote.get("start_operation_id")
        began = _moment(ctx.remote.get("start_sent_at") or "")
        if not ctx.remote.get(WHOLE_START) or not operation_id or began is None:
            return None
        items, whole_list = self._items_of(client, operation_id, began - CLOCK_MARGIN)
        live = [item for item in items if item.status not in CANCELLED]
        if len(live) > 1 or (not live and not whole_list):
            why = f"{len(live)} items" if live else "more items than importq reads"
            raise FinalError(
                f"the start sent at {began.isoformat()} (operationId {operation_id}) left {why} "
                "at the vendor: check them and replay the unit's records if none committed",
                target=TARGET,
            )
        if live:
            ctx.log.warning("found the queue item of a start whose answer was lost",
                            queue_item_id=live[0].id, status=live[0].status)  # fmt: skip
            ctx.remember({"queue_item_id": live[0].id, "chunks_sent": "1", **_WHOLE_START_SETTLED})
            return live[0]
        in_flight_until = began + timedelta(seconds=ctx.limits.request_timeout_seconds)
        left = (in_flight_until + CLOCK_MARGIN - datetime.now(UTC)).total_seconds()
        if left > 0:
            if wait:
                raise VendorBusy(
                    f"the start sent at {began.isoformat()} opened no queue item so far; it "
                    f"is sent again once it can no longer be in flight, in {left:.0f} s",
                    target=TARGET,
                    retry_after=left,
                )
            # The unit ends now, but the start commits on its own if it lands.
            raise FinalError(
                f"the start sent at {began.isoformat()} (operationId {operation_id}) may still "
                "open a queue item, which commits on its own: check the vendor for it before "
                "replaying the unit's records",
                target=TARGET,
            )
        ctx.log.info("the start whose answer was lost opened no item", start_sent_at=began)
        ctx.remember(_WHOLE_START_SETTLED)
        return None

    @staticmethod
    def _items_of(
        client: SourcingDataClient, operation_id: str, since: datetime
    ) -> tuple[list[QueueItem], bool]:
        """The agent's items of `operation_id` created since `since`, and whether the list
        was read that far back (False: LIST_PAGES pages were not enough)."""
        found: list[QueueItem] = []
        read = 0
        for item in client.recent_items(LIST_PAGES):
            read += 1
            created = _moment(item.created_on)
            if created is not None and created < since:
                return found, True  # latest first: the rest are older still
            if item.operation_id == operation_id:
                found.append(item)
        return found, read < LIST_PAGES * LIST_PAGE_SIZE

    def _settle_lost_start(self, ctx: Context, client: SourcingDataClient) -> None:
        """Cancel the Pending item an earlier start may have opened without importq learning
        its id (the answer was lost, or recording it failed)."""
        sent_at = ctx.remote.get("start_sent_at")
        operation_id = ctx.remote.get("start_operation_id")
        if not sent_at or not operation_id or ctx.remote.get(WHOLE_START):
            return  # a start sent whole is settled by _lost_whole_start
        shared = operation_id if operation_id == ctx.params.get("operation_id") else None
        began = _moment(sent_at)
        with self._start_turn(ctx, client, shared):
            orphans = [] if began is None else self._orphans(ctx, client, operation_id, began,
                                                              shared)  # fmt: skip
            for item in orphans:
                try:
                    self._call(ctx, lambda i=item: client.cancel(i.id))
                except RejectedError as error:  # no longer Pending: nobody appends to it
                    ctx.log.warning("could not cancel an orphaned queue item",
                                    queue_item_id=item.id, error=str(error))  # fmt: skip
                    continue
                ctx.log.warning("cancelled the queue item of a start whose answer was lost",
                                queue_item_id=item.id, start_sent_at=sent_at)  # fmt: skip
            found = ",".join(item.id for item in orphans)
            if not orphans:
                ctx.log.info("the start whose answer was lost opened no item",
                             start_sent_at=sent_at)  # fmt: skip
            ctx.remember({"start_sent_at": "", "start_operation_id": "",
                          **({"lost_start_cancelled": found} if found else {})})  # fmt: skip

    def _orphans(
        self,
        ctx: Context,
        client: SourcingDataClient,
        operation_id: str,
        began: datetime,
        shared: str | None,
    ) -> list[QueueItem]:
        """Pending items of `operation_id` a start sent at `began` may have opened."""
        since = began - CLOCK_MARGIN
        # A shared operation's starts take turns, so its item is no younger than one turn.
        until = began + timedelta(seconds=self._turn_seconds(ctx.limits)) + CLOCK_MARGIN
        registered = self._registered(ctx, client, shared) if shared else set()
        found = []
        for item in client.recent_items(LIST_PAGES):
            created = _moment(item.created_on)
            if created is not None and created < since:
                break  # latest first: the rest are older still
            if (
                item.operation_id == operation_id
                and item.status == PENDING
                and created is not None
                and (not shared or created <= until)
                and item.id not in registered
            ):
                found.append(item)
        return found

    # --- one start at a time per shared operation, and the items units learned -----------

    @staticmethod
    def _turn_seconds(limits: SourcingDataLimits) -> float:
        """Longest a start (with its resends) can hold its operation's turn."""
        per_request = limits.request_timeout_seconds + RESEND_WAIT_CAP
        return max(1, limits.resend_attempts) * per_request + CLOCK_MARGIN.total_seconds()

    @contextmanager
    def _start_turn(
        self, ctx: Context, client: SourcingDataClient, operation_id: str | None
    ) -> Iterator[None]:
        """Hold the operation's start turn (no other start of it in flight) inside the block.

        The turn expires after the longest a start can take, and passes at once to the next
        unit when its holder's unit lease is gone (the worker died holding it)."""
        if not operation_id or ctx.target_state is None:
            yield
            return
        ttl_ms = int(self._turn_seconds(ctx.limits) * 1000)
        turn = ctx.target_state.lock("start", *_operation(client, operation_id), ttl_ms=ttl_ms)
        deadline = time.monotonic() + START_TURN_WAIT
        while not turn.take():
            if time.monotonic() > deadline:
                raise VendorBusy(
                    f"another unit of operation {operation_id} is opening its queue item; "
                    "this one opens its own after it",
                    target=TARGET,
                )
            ctx.checkpoint()
            turn.wait(TURN_WAKE_SECONDS)
        try:
            yield
        finally:
            try:
                turn.release()
            except Exception as error:  # expires by itself
                ctx.log.warning("could not release the start turn", error=str(error))

    def _register(
        self, ctx: Context, client: SourcingDataClient, operation_id: str, item_id: str
    ) -> None:
        items = _items(ctx, client, operation_id)
        if items is not None:
            items.add(item_id, CLAIMS_KEPT_MS)

    def _unregister(
        self, ctx: Context, client: SourcingDataClient, operation_id: str, item_id: str
    ) -> None:
        items = _items(ctx, client, operation_id)
        if items is None:
            return
        try:
            items.remove(item_id)
        except Exception as error:  # then it stays Pending: a leak, never a wrong cancel
            ctx.log.warning("could not unregister a queue item", queue_item_id=item_id,
                            error=str(error))  # fmt: skip

    def _registered(self, ctx: Context, client: SourcingDataClient, operation_id: str) -> set[str]:
        items = _items(ctx, client, operation_id)
        return set() if items is None else items.members()

    def _append_rest(
        self, ctx: Context, client: SourcingDataClient, item: QueueItem, sent: int
    ) -> Delivered:
        """Append the chunks after the first `sent`, remembering each, then settle the item."""
        limits = ctx.limits
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

    def _poll(self, ctx: Context, client: SourcingDataClient, item: QueueItem) -> QueueItem:
        limits = ctx.limits
        started = time.monotonic()
        interval = limits.poll_interval_seconds
        # A small item is often committed a moment after its last request: look once soon
        # (a tenth of the interval) before the usual rhythm, which adds one status request
        # per item and takes most of the interval off a single record's latency.
        sleep = interval * FIRST_POLL_FRACTION
        item_id = item.id
        while not item.finished:
            waited = time.monotonic() - started
            if waited > limits.poll_budget_seconds:
                raise still_processing(item, waited)
            ctx.checkpoint()
            time.sleep(sleep)
            sleep, interval = interval, min(interval * 1.5, 5.0)
            item = self._call(ctx, lambda: client.status(item_id))
        return item

    def _settle(self, ctx: Context, item: QueueItem) -> Delivered:
        if item.succeeded:
            ctx.log.info("queue item committed", queue_item_id=item.id, records=len(ctx.records))
            return Delivered(len(ctx.records))
        reason = item.error_message or f"queue item ended '{item.status}'"
        ctx.remember({"queue_item_id": ""})  # a failed item holds nothing to resume
        raise RejectedError(f"queue item {item.id} failed: {reason}", target=TARGET)

    def _call(self, ctx: Context, request: Any) -> Any:
        limits = ctx.limits
        return resend(request, attempts=limits.resend_attempts)

    def _cancel_quietly(self, ctx: Context, client: SourcingDataClient, item_id: str) -> None:
        try:
            client.cancel(item_id)
            ctx.remember({"queue_item_id": ""})
        except (FinalError, RetryableError) as error:
            # The next attempt finds the id in job state and cancels it then.
            ctx.log.warning("could not cancel queue item", queue_item_id=item_id, error=str(error))


def _operation(client: SourcingDataClient, operation_id: str) -> tuple[str, str, str]:
    """The name of an operation's start turn and items: one agent, client and operationId."""
    return client.agent_id, client.client_id or "", operation_id


def _items(ctx: Context, client: SourcingDataClient, operation_id: str) -> OpenSet | None:
    """The queue items of a shared operation whose id a unit recorded (None: no store)."""
    if ctx.target_state is None:
        return None
    return ctx.target_state.open_set("items", *_operation(client, operation_id))
