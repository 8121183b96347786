"""One Blueshift trigger per job: stage its records as a CSV in S3 (when it has any), then trigger.

A job's records are one unit because Blueshift imports a file as a whole; a
job without records is a bare trigger of an import whose files someone else
writes. Blueshift answers 405 while an import is processing, so triggers of one
import run one at a time and in publish order, and a 405 is tried again a few
times after a long wait before it fails with the vendor's three possible causes.

A trigger whose answer is lost (a timeout, a gateway's 502 or 504: Blueshift
may have started the import) is never resent in place, and the API has no call
to ask. The next attempt triggers again: a 405 then most likely means the import
is running that trigger, so the unit fails for review instead of triggering once
the run ends; a 200 delivers, warning that the import may have run twice. That
double-trigger window, from the lost answer to the next attempt, is the unit's
first retry backoff (about a second) unless the target is paused.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from importq.errors import FinalError, InputError, NotApplied, RetryableError, TargetError
from importq.settings import Settings
from workers import keys
from workers.retry import resend, safe_to_resend
from workers.targets.base import (
    Delivered,
    Located,
    Record,
    RunContext,
    Sink,
    record_size,
)
from workers.targets.blueshift.client import TARGET, BlueshiftClient, ImportNotTriggerable
from workers.targets.blueshift.limits import BlueshiftLimits
from workers.targets.blueshift.s3 import S3Staging, columns_of

PARAMS = ("uuid", "columns", "s3_prefix")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
WHERE_UUID = "it is in the import task's URL, .../customer/import_show/<uuid>"
# The vendor doc's three reasons for a 405; only the last one passes by itself.
CAUSES = (
    "the import's data source is not Amazon S3 (only S3 imports can be triggered)",
    "the import is not launched (a draft or paused import cannot be triggered)",
    "the import is still processing an earlier run",
)


@dataclass
class BlueshiftConnections:
    """What a worker holds for Blueshift: the API client and, when configured, the S3 staging."""

    api: BlueshiftClient
    staging: S3Staging | None

    def close(self) -> None:
        self.api.close()


def import_uuid(value: Any) -> str:
    """The import's uuid, checked and lower-cased; InputError says where to find it."""
    if not value:
        raise InputError(f"blueshift needs the import's uuid: --param uuid=<uuid> ({WHERE_UUID})")
    text = str(value).strip()
    if not UUID.fullmatch(text):
        raise InputError(
            f"uuid {text!r} is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx); {WHERE_UUID}"
        )
    return text.lower()


def column_list(value: Any) -> list[str]:
    """The `columns` option ("a,b,c" or a list) as a list of distinct, non-empty names."""
    names = value.split(",") if isinstance(value, str) else list(value)
    columns = [str(name).strip() for name in names]
    if not all(columns):
        raise InputError(f"columns {value!r} has an empty name; give them as columns=a,b,c")
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise InputError(f"columns lists {', '.join(duplicates)} more than once")
    return columns


def check_row(record: Record, where: str, columns: Sequence[str]) -> None:
    """Refuse a record that cannot be a CSV row under `columns` (empty: any columns)."""
    if not record:
        raise InputError("empty record: a CSV row needs at least one field", where)
    extra = [name for name in record if name not in columns] if columns else []
    if extra:
        raise InputError(
            f"{extra[0]}: not one of the columns given with --param columns "
            f"({', '.join(columns)}); add it there or drop the field",
            where,
        )


Context = RunContext[BlueshiftLimits, BlueshiftConnections]


class BlueshiftSink(Sink[BlueshiftLimits, BlueshiftConnections]):
    def check_params(self, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
        unknown = sorted(set(params) - set(PARAMS))
        if unknown:
            raise InputError(
                f"unknown blueshift option(s): {', '.join(unknown)} (known: {', '.join(PARAMS)})"
            )
        checked: dict[str, Any] = {"uuid": import_uuid(params.get("uuid"))}
        if params.get("columns"):
            checked["columns"] = column_list(params["columns"])
        prefix = str(params.get("s3_prefix") or "").strip("/")
        if prefix.startswith("s3:"):
            raise InputError("s3_prefix is a key prefix inside BLUESHIFT_S3_BUCKET, not a URL")
        if prefix:
            checked["s3_prefix"] = prefix
        return checked

    def check_job(self, params: dict[str, Any], settings: Settings, *, has_records: bool) -> None:
        # The producer reads the same deployment settings as the workers: without a bucket
        # here, records would be staged, then fail on the worker.
        if has_records and not settings.get("BLUESHIFT_S3_BUCKET").strip():
            raise InputError(
                "records for blueshift are staged as a CSV in S3, but BLUESHIFT_S3_BUCKET is "
                "not set: set it (and BLUESHIFT_S3_PREFIX, the import's S3 folder) here and on "
                "the workers, or publish a bare trigger without FILE"
            )

    def plan(
        self, records: Iterable[Located], limits: BlueshiftLimits, params: dict[str, Any]
    ) -> Iterator[list[Record]]:
        """All records in one unit (one CSV, one trigger), refused whole above the byte budget."""
        budget: int = limits.max_import_bytes
        columns: list[str] = params.get("columns") or []
        unit: list[Record] = []
        size = 0
        for record, where in records:
            check_row(record, where, columns)
            size += record_size(record) + 1
            if size > budget:
                raise InputError(
                    f"the import's records pass {budget} bytes here (one job is one CSV, held "
                    "whole): split the input into several jobs or raise BLUESHIFT_MAX_IMPORT_BYTES",
                    where,
                )
            unit.append(record)
        if unit:
            yield unit

    def slot(self, params: dict[str, Any], limits: BlueshiftLimits) -> tuple[str, int] | None:
        return f"uuid:{params['uuid']}", limits.triggers_in_flight_per_import

    def order_key(self, params: dict[str, Any]) -> str | None:
        # Later files of one import must land after earlier ones (attribute upserts).
        return f"uuid:{params['uuid']}"

    def run(self, ctx: Context) -> Delivered:
        uuid: str = ctx.params["uuid"]
        if ctx.remote.get("triggered_at"):  # accepted before this worker's predecessor died
            ctx.log.info("the trigger was accepted by an earlier attempt", uuid=uuid)
            return Delivered(len(ctx.records))
        connections = ctx.client
        if ctx.records:
            self._stage(ctx, connections.staging, uuid)
            ctx.checkpoint()  # a worker that lost its lease while uploading must not trigger
        warnings = self._trigger(ctx, connections.api, uuid)
        ctx.remember({"triggered_at": f"{time.time():.3f}"})
        ctx.log.info("import triggered", uuid=uuid, records=len(ctx.records))
        return Delivered(len(ctx.records), warnings=warnings)

    def _stage(self, ctx: Context, staging: S3Staging | None, uuid: str) -> None:
        if staging is None:
            raise FinalError(
                f"records were published for import {uuid} but BLUESHIFT_S3_BUCKET is not set "
                "on the worker: set it (and BLUESHIFT_S3_PREFIX, the import's S3 folder), or "
                "publish a bare trigger without records",
                target=TARGET,
            )
        key = staging.key_for(keys.job_of(ctx.unit_id), ctx.params.get("s3_prefix"))
        uri = staging.uri(key)
        if ctx.remote.get("staged") == uri:  # a 405 retry: the file is already in place
            return
        columns = ctx.params.get("columns") or columns_of(ctx.records)
        size = staging.upload(key, ctx.records, columns)
        ctx.remember({"staged": uri})
        ctx.log.info("records staged as CSV", s3=uri, rows=len(ctx.records), bytes=size)

    def _trigger(self, ctx: Context, api: BlueshiftClient, uuid: str) -> list[str]:
        """Trigger the import; the warnings of a delivery that may have run it twice."""
        limits = ctx.limits
        unknown_at = ctx.remote.get("trigger_unknown_at")

        def resend_now(error: BaseException) -> bool:
            # A Retry-After longer than the cap reschedules the unit instead of blocking here.
            # Only refusals are resent: a lost answer (502, 504, timeout) may have triggered.
            wait = getattr(error, "retry_after", None) or 0.0
            return safe_to_resend(error) and wait <= limits.resend_wait_cap_seconds

        try:
            resend(
                lambda: api.trigger(uuid),
                attempts=limits.resend_attempts,
                cap=limits.resend_wait_cap_seconds,
                when=resend_now,
            )
        except ImportNotTriggerable as error:
            if unknown_at:
                raise self._maybe_running(ctx, uuid, error) from None
            raise self._not_triggerable(ctx, uuid, error) from None
        except RetryableError as error:
            if error.status == 500:
                raise self._server_error(ctx, uuid, error) from None
            if not isinstance(error, NotApplied) and not unknown_at:
                # Blueshift may have taken it: the next attempt knows, and says so.
                ctx.remember({"trigger_unknown_at": _now(), "trigger_unknown": _what(error)})
            raise
        if not unknown_at:
            return []
        return [
            f"the trigger of import {uuid} at {unknown_at} got no answer Blueshift vouched for "
            f"({ctx.remote.get('trigger_unknown', 'unknown outcome')}); it was sent again and "
            "accepted. Blueshift offers no way to look a trigger up: if the first one had "
            "started the import, the import may have run twice over the same file"
        ]

    def _maybe_running(self, ctx: Context, uuid: str, error: ImportNotTriggerable) -> FinalError:
        """405 after a lost answer: most likely the import runs that trigger. Triggering
        again once the run ends would run it twice, so a person decides."""
        unknown_at = ctx.remote["trigger_unknown_at"]
        return FinalError(
            f"the trigger of import {uuid} at {unknown_at} got no clear answer "
            f"({ctx.remote.get('trigger_unknown', 'unknown outcome')}), so Blueshift may have "
            f"started the import then; now it answers 405 ({error.message}): most likely that "
            "run is still processing, and importq does not trigger it again (that could run "
            f"the import twice). Check the import's runs in the Blueshift dashboard "
            f"(.../customer/import_show/{uuid}): if none started at {unknown_at}, publish the "
            f"trigger again (`importq dlq replay {keys.job_of(ctx.unit_id)}` if it had records)",
            target=TARGET,
            answer=error.answer,
        )

    def _not_triggerable(self, ctx: Context, uuid: str, error: ImportNotTriggerable) -> TargetError:
        limits = ctx.limits
        count = _count(ctx, "http_405")
        if count < limits.busy_attempts:
            return RetryableError(
                f"import {uuid} cannot be triggered now ({error.message}; 405 {count} of "
                f"{limits.busy_attempts}): it may still be processing an earlier run, so it is "
                f"tried again in {limits.busy_retry_seconds:g} s or more",
                retry_after=limits.busy_retry_seconds,
                target=TARGET,
                answer=error.answer,
            )
        causes = "; ".join(f"({n}) {cause}" for n, cause in enumerate(CAUSES, start=1))
        return FinalError(
            f"import {uuid} could not be triggered: {error.message} (405, {count} times). "
            f"Blueshift answers this when {causes}. Open the import in the Blueshift dashboard "
            "(.../customer/import_show/<uuid>), make sure it reads from S3, is launched and is "
            "scheduled for a future date or recurring, then publish the trigger again",
            target=TARGET,
            answer=error.answer,
        )

    def _server_error(self, ctx: Context, uuid: str, error: RetryableError) -> TargetError:
        limits = ctx.limits
        count = _count(ctx, "http_500")
        if count < limits.server_error_attempts:
            return error
        return FinalError(
            f"Blueshift answered 500 to the trigger of import {uuid} {count} times "
            f"({error.message}): contact Blueshift support with the import's uuid, then publish "
            "the trigger again",
            target=TARGET,
            answer=error.answer,
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _what(error: RetryableError) -> str:
    """How a trigger's answer was lost, for the unit's state and the warning."""
    return f"HTTP {error.status}" if error.status else error.message


def _count(ctx: Context, name: str) -> int:
    """Count one more `name` answer for this unit, across its attempts (in job state)."""
    count = int(ctx.remote.get(name) or 0) + 1
    ctx.remember({name: str(count)})
    return count
