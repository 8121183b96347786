"""One Blue unit: a whole datasource import, from its data block to FinalizeImport.

    resolve datasource and block -> check columns -> settle what an earlier attempt
    left -> cancel a dead transaction of ours -> RegisterImport -> PushObjectDataV2 xN
    -> PrepareDataToFinzalizeImportV2 -> FinalizeImport

A failure after RegisterImport cancels the transaction before it is raised, except
once FinalizeImport was sent: its outcome is then unknown, and the next attempt
asks Blue whether it committed instead of importing the rows a second time. A
RegisterImport whose answer is lost or names no transaction cancels the one it
just opened (-4, recorded by no other importq unit), and so does a unit that ends
for good after such an answer. Between prepare and finalize the unit does not
stop for a shutdown: it finalizes.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from importq.errors import (
    AuthError,
    FinalError,
    ImportqError,
    NotApplied,
    NotFoundError,
    RetryableError,
    TargetError,
)
from workers.retry import resend
from workers.targets.base import Delivered, RunContext
from workers.targets.blue.answers import DONE, CurrentImport, ImportOptions
from workers.targets.blue.blocks import ImportTarget, target_for
from workers.targets.blue.client import BlueClient
from workers.targets.blue.limits import BlueLimits
from workers.targets.blue.refusals import BlueBusy
from workers.targets.blue.registry import FINALIZING, Registry
from workers.targets.blue.row_warnings import Outcome
from workers.targets.blue.stale import REGISTERED, settle_open

T = TypeVar("T")
# Phases in job state (and FINALIZING). REGISTERING: RegisterImport was sent and its
# answer is not in yet; a transaction it opened has no id in job state.
REGISTERING, PUSHING, PREPARING = "registering", "pushing", "preparing"
FINALIZED, CANCELLED = "finalized", "cancelled"


class BlueImport:
    def __init__(self, ctx: RunContext[BlueLimits, BlueClient]) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.limits = ctx.limits
        self.records = ctx.records
        state = ctx.target_state
        self.registry = Registry(state, self.limits.instance) if state else None
        self.target: ImportTarget | None = None

    def run(self) -> Delivered:
        self.target = self._call(lambda: target_for(self.client, self.ctx.params, self.records))
        if not self.target.columns_reported:
            self.ctx.log.warning(
                "Blue does not report the columns of this data block: the rows' columns are "
                "checked at the first push",
                datasource=self._source_id,
                block=self.target.block,
                columns=self.target.columns,
            )
        earlier = self._settle_earlier_attempt()
        if earlier is not None:
            return earlier
        current = self._call(self.client.current_import)
        if current.open:
            self._settle_open(current)
        transaction_id = self._register()
        try:
            self._opened(transaction_id)
            outcome = self._push(transaction_id)
            self._prepare(transaction_id, outcome)
        except BaseException:
            self._cancel_quietly(transaction_id)
            raise
        return self._finalize(transaction_id, outcome)

    def abandon(self) -> Delivered | None:
        """The unit ends for good: cancel the transaction an earlier attempt left open, or
        report it delivered if its FinalizeImport committed. Never finalizes on its own."""
        if self.ctx.remote.get("phase") == REGISTERING:
            # An attempt's RegisterImport answer was lost. If the registry still holds that
            # attempt's intent, nobody has cancelled what it may have opened: do it now.
            intent = self.registry.dead_intent() if self.registry else None
            if intent is not None and intent.unit == self.ctx.unit_id:
                self._cancel_unnamed_registration()
            return None
        transaction_id = int(self.ctx.remote.get("transaction_id") or 0)
        if not transaction_id or self.ctx.remote.get("phase") == CANCELLED:
            return None
        current = self._call(self.client.current_import)
        if current.open and current.transaction_id == transaction_id:
            self._cancel_quietly(transaction_id)
            return None
        if self.ctx.remote.get("phase") not in (FINALIZING, FINALIZED):
            return None  # closed without a FinalizeImport: it committed nothing
        self.target = self._call(lambda: target_for(self.client, self.ctx.params, self.records))
        return self._settle_earlier_attempt()

    # -- before RegisterImport -----------------------------------------------------------

    def _settle_earlier_attempt(self) -> Delivered | None:
        """After a FinalizeImport whose answer was lost: commit it, or find it committed."""
        remote = self.ctx.remote
        transaction_id = int(remote.get("transaction_id") or 0)
        if not transaction_id or remote.get("phase") not in (FINALIZING, FINALIZED):
            return None  # a transaction it left open is cancelled as a dead one of ours
        if remote.get("phase") == FINALIZED:  # Blue said Success; only the finish was lost
            return self._delivered(transaction_id, self._saved_outcome())
        current = self._call(self.client.current_import)
        if current.open and current.transaction_id == transaction_id:
            self.ctx.log.info(
                "finalizing the transaction an earlier attempt prepared",
                transaction_id=transaction_id,
            )
            return self._finalize(transaction_id, self._saved_outcome())
        # Closed: its own status if Blue still reports it, else the datasource's latest.
        status = current.progress if current.transaction_id == transaction_id else None
        if status is None:
            status = self._call(lambda: self.client.progress(self._source_id))
        if status == DONE:
            self.ctx.log.info(
                "the earlier attempt's FinalizeImport committed; not importing again",
                transaction_id=transaction_id,
            )
            self._finished(transaction_id)
            return self._delivered(transaction_id, self._saved_outcome())
        self.ctx.log.warning(
            "the earlier attempt's transaction ended without committing",
            transaction_id=transaction_id,
            progress=status,
        )
        self.ctx.remember({"phase": CANCELLED, "progress": str(status)})
        return None

    def _settle_open(self, current: CurrentImport) -> None:
        remembered = int(self.ctx.remote.get("transaction_id") or 0)
        settle_open(current, remembered, self.registry, self.ctx.log, self.limits,
                    cancel=lambda t: self._call(lambda: self.client.cancel(t)))  # fmt: skip

    def _register(self) -> int:
        try:
            return self._register_once()
        except BlueBusy:
            # Blue says an import is open: whose? A dead one of ours is cancelled here.
            current = self._call(self.client.current_import)
            if current.open:
                self._settle_open(current)
            return self._register_once()

    def _register_once(self) -> int:
        options = import_options(self.ctx.params)
        if self.registry:
            self.registry.intend()
        # Job state says so too: a unit that ends for good with this phase settles it.
        self.ctx.remember({"phase": REGISTERING})
        try:
            return self._call(lambda: self.client.register(self._source_id, options))
        except TargetError as error:
            if not _registered_nothing(error):
                # Sent, but the answer is lost, unreadable or names no transaction: Blue
                # may hold one open that nobody can name. Giving up must not leave it.
                self._cancel_unnamed_registration()
                raise
            if self.registry:  # Blue answered, so no transaction of ours is pending
                self.registry.drop_intent()
            with contextlib.suppress(ImportqError):  # a lost lease must not hide the refusal
                self.ctx.remember({"phase": ""})
            raise

    def _cancel_unnamed_registration(self) -> None:
        """Cancel the transaction a RegisterImport opened whose answer never named it: the
        one just registered (-4) that no other importq unit recorded. Left to the next
        attempt (the registry's intent) when Blue cannot be asked now."""
        try:
            current = self._call(self.client.current_import)
        except TargetError as error:
            self.ctx.log.warning("could not ask Blue for the transaction a lost RegisterImport "
                                 "answer may have opened", error=str(error))  # fmt: skip
            return
        cancelled = True
        claimed = self.registry.find(current.transaction_id) if self.registry else None
        if current.open and current.progress == REGISTERED and claimed is None:
            self.ctx.log.warning(
                "cancelling the transaction whose RegisterImport answer was lost",
                transaction_id=current.transaction_id,
            )
            cancelled = self._cancel_quietly(current.transaction_id)
        if cancelled:
            if self.registry:
                self.registry.drop_intent()
            with contextlib.suppress(ImportqError):
                self.ctx.remember({"phase": CANCELLED})

    # -- the transaction -----------------------------------------------------------------

    def _opened(self, transaction_id: int) -> None:
        if self.registry:
            self.registry.record(transaction_id)
        self.ctx.log.info(
            "transaction registered",
            transaction_id=transaction_id,
            datasource=self._source_id,
            rows=len(self.records),
        )
        self.ctx.remember(
            {
                "transaction_id": str(transaction_id),
                "progress": str(REGISTERED),
                "phase": PUSHING,
                "pushed": f"0/{len(self.records)}",
                "percent": "0",
            }
        )

    def _push(self, transaction_id: int) -> Outcome:
        target = self._target
        outcome = Outcome.empty()
        total = len(self.records)
        for start in range(0, total, self.limits.rows_per_push):
            self.ctx.checkpoint()
            sent = range(start, min(start + self.limits.rows_per_push, total))
            rows = [[_cell(self.records[i].get(c)) for c in target.columns] for i in sent]
            push = functools.partial(
                self.client.push, transaction_id, target.block, target.columns, rows
            )
            try:
                result = self._call(push)
            except FinalError as error:
                if start == 0 and not target.columns_reported:
                    raise _columns_refused(error, target) from None
                raise
            outcome.add(result.warnings, self.records, sent, target.id_column)
            # The bar of `importq status`: pushing is the first half, prepare the second.
            percent = 50 * sent.stop // total
            self.ctx.remember({"pushed": f"{sent.stop}/{total}", "percent": str(percent)})
        self._remember_progress()
        return outcome

    def _prepare(self, transaction_id: int, outcome: Outcome) -> None:
        self.ctx.checkpoint()
        self.ctx.remember({"phase": PREPARING})
        with self._progress_watch():
            result = self._call(lambda: self.client.prepare(transaction_id))
        outcome.add(result.warnings, self.records, range(len(self.records)), self._target.id_column)
        self._remember_progress()

    def _finalize(self, transaction_id: int, outcome: Outcome) -> Delivered:
        # No checkpoint between prepare and finalize: a unit handed back here would leave a
        # prepared transaction that the next attempt cancels and prepares again (20-45
        # minutes on a real instance). A worker shutting down finishes the unit first; the
        # lease is still checked before FinalizeImport is sent.
        if self.registry:
            self.registry.save_skipped(outcome.rejected)
        self.ctx.remember({"phase": FINALIZING})
        try:
            self._call(lambda: self.client.finalize(transaction_id))
        except RetryableError:
            raise  # the outcome is unknown: the next attempt asks Blue how it ended
        except BaseException:
            self._cancel_quietly(transaction_id)  # Blue refused to commit it
            raise
        self._finished(transaction_id)
        return self._delivered(transaction_id, outcome)

    def _finished(self, transaction_id: int) -> None:
        if self.registry:
            self.registry.forget(transaction_id)
        self.ctx.remember({"phase": FINALIZED, "progress": str(DONE), "percent": "100"})

    def _delivered(self, transaction_id: int, outcome: Outcome) -> Delivered:
        skipped = dict(outcome.rejected)  # a row Blue warned about twice is skipped once
        rejected = [(self.records[i], reason) for i, reason in sorted(skipped.items())]
        count = len(self.records) - len(rejected)
        self.ctx.log.info(
            "Blue import committed",
            transaction_id=transaction_id,
            rows=count,
            skipped=len(rejected),
            warnings=len(outcome.warnings),
        )
        return Delivered(count, rejected, outcome.warnings)

    def _cancel_quietly(self, transaction_id: int) -> bool:
        try:
            self._call(lambda: self.client.cancel(transaction_id))
        except TargetError as error:  # the next attempt finds it open and cancels it then
            self.ctx.log.warning(
                "could not cancel the transaction", transaction_id=transaction_id, error=str(error)
            )
            return False
        self.ctx.log.info("transaction cancelled", transaction_id=transaction_id)
        if self.registry:
            self.registry.forget(transaction_id)
        with contextlib.suppress(ImportqError):  # a lost lease must not hide the first error
            self.ctx.remember({"phase": CANCELLED, "progress": "-3"})
        return True

    # -- helpers -------------------------------------------------------------------------

    @property
    def _target(self) -> ImportTarget:
        assert self.target is not None, "resolved at the start of run()"
        return self.target

    @property
    def _source_id(self) -> str:
        return self._target.source.source_id

    def _remember_progress(self) -> None:
        status = self._call(lambda: self.client.progress(self._source_id))
        self.ctx.remember(progress_fields(status))

    @contextlib.contextmanager
    def _progress_watch(self) -> Iterator[None]:
        """Blue's progress in job state while prepare blocks (it can take most of an hour)."""
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(self.limits.progress_interval_seconds):
                try:
                    status = self.client.progress(self._source_id)
                    if not stop.is_set():
                        self.ctx.remember(progress_fields(status))
                except Exception:  # a blip or a lost lease: the import itself decides
                    return

        thread = threading.Thread(target=watch, name="blue-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)

    def _saved_outcome(self) -> Outcome:
        return Outcome(self.registry.load_skipped() if self.registry else [], [])

    def _call(self, request: Callable[[], T]) -> T:
        # Only what Blue certainly did not apply (refused connection, 502/503) is sent again.
        return resend(request, attempts=self.limits.resend_attempts)


def import_options(params: dict[str, Any]) -> ImportOptions:
    return ImportOptions(
        abort_on_empty=bool(params.get("abort_on_empty", True)),
        replace_blue_role=bool(params.get("replace_blue_role", False)),
        replace_datasource_access_key=bool(params.get("replace_datasource_access_key", False)),
        replace_language_preferences=bool(params.get("replace_language_preferences", False)),
    )


def _registered_nothing(error: TargetError) -> bool:
    """True when RegisterImport's failure says Blue opened no transaction: Blue's own
    refusal (busy, unknown datasource, bad key) or a request that never arrived."""
    return isinstance(error, BlueBusy | AuthError | NotFoundError | NotApplied)


def _columns_refused(error: FinalError, target: ImportTarget) -> FinalError:
    """The first push's refusal, said as the column check it stands in for."""
    return type(error)(
        f"{error.message}. The rows' columns ({', '.join(target.columns)}) were checked at the "
        f"first push, as Blue does not report the columns of data block '{target.block}' of "
        f"datasource {target.source.source_id} '{target.source.caption}'; the transaction is "
        "cancelled. Fix the input's column names",
        target=error.target,
        answer=error.answer,
    )


def _cell(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def progress_fields(status: int) -> dict[str, str]:
    """Blue's progress status (-4..100) for job state, and the bar's share (prepare: 50-100)."""
    fields = {"progress": str(status)}
    if 0 <= status <= DONE:
        fields["percent"] = str(50 + status // 2)
    return fields
