"""An httpx client that POSTs one batch of records to a configured URL and reads the answer.

Failures come out as importq errors (workers/http.py holds the shared mapping):

    401, 403            AuthError: the credential in HTTP_BATCH_AUTH_SECRET (final)
    404                 NotFoundError: HTTP_BATCH_URL or the job's path is wrong (final)
    400, 413, 422       RejectedError: one record may be the cause, so the core bisects
    408, 429, 5xx       RetryableError, with Retry-After; 429 and 503 are resent in place
    409                 VendorBusy: the same idempotency key is still being processed (a
                        wait, not an attempt)
    timeout, reset      Unreachable: the outcome is unknown (sink.py: why resending is safe)
    2xx                 the records it lists as refused (answers.py); the rest were taken
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import httpx

from importq.errors import ConfigError, FinalError, RejectedError, RetryableError, VendorBusy
from importq.settings import Secret, Settings
from workers import vendor_calls
from workers.http import (
    RETRYABLE_STATUSES,
    answer_of,
    raise_for_status,
    transport_error,
    vendor_message,
)
from workers.targets.http_batch.answers import ErrorList, UnreadableList
from workers.targets.http_batch.limits import HttpBatchLimits

TARGET = "http_batch"
MEDIA_TYPES = {"json": "application/json", "jsonl": "application/x-ndjson"}
FORMATS = tuple(MEDIA_TYPES)
# A header name is an HTTP token (RFC 9110, section 5.6.2).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# 501 and 505 say the receiver will never take this request, however long one waits.
_NEVER_LATER = frozenset({501, 505})
# Compact, non-ASCII kept: the bytes the byte budget counted (workers/targets/base.record_size).
_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def encode_body(records: Iterable[Mapping[str, Any]], body_format: str) -> bytes:
    """A JSON array of the records, or JSON Lines (one object per line, each line ended)."""
    items = [_compact(record) for record in records]
    if body_format == "json":
        return f"[{','.join(items)}]".encode()
    return "".join(f"{item}\n" for item in items).encode()


def _header_name(settings: Settings, name: str, default: str) -> str:
    value = settings.get(name).strip() or default
    if not _HEADER_NAME.fullmatch(value):
        raise ConfigError(f"{name}={value!r} is not a header name: letters, digits and '-'")
    return value


def _endpoint(url: str) -> httpx.URL:
    """HTTP_BATCH_URL, refused when it cannot be where batches go."""
    if not url.strip():
        raise ConfigError("http_batch needs HTTP_BATCH_URL: the URL every batch is POSTed to")
    try:
        endpoint = httpx.URL(url.strip())
    except httpx.InvalidURL as error:
        raise ConfigError(f"HTTP_BATCH_URL is not a URL: {error}") from None
    if endpoint.scheme not in ("http", "https"):
        raise ConfigError(
            f"HTTP_BATCH_URL: the scheme must be http or https, not {endpoint.scheme or 'none'!r}"
        )
    if not endpoint.host:
        raise ConfigError("HTTP_BATCH_URL names no host: write it as https://host/path")
    if endpoint.userinfo:  # it would be logged with every request line
        raise ConfigError("HTTP_BATCH_URL holds a user and password: put the credential in "
                          "HTTP_BATCH_AUTH_SECRET instead")  # fmt: skip
    return endpoint


class HttpBatchClient:
    """POSTs batches to one receiver. Errors come out as importq.errors."""

    def __init__(
        self,
        url: str,
        *,
        auth: tuple[str, Secret] | None = None,
        body_format: str = "json",
        idempotency_header: str = "Idempotency-Key",
        errors: ErrorList | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = _endpoint(url)
        self.body_format = body_format
        self.idempotency_header = idempotency_header
        self.errors = errors or ErrorList()
        headers = {"Content-Type": MEDIA_TYPES[body_format]}
        credential = auth if auth and auth[1] else None  # unset: the receiver wants none
        if credential:
            headers[credential[0]] = credential[1].reveal()
        self._http = vendor_calls.http_client(
            headers=headers, timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            transport=transport,
        )  # fmt: skip
        self._hints = _hints(has_credential=credential is not None)

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpBatchClient:
        auth_header = _header_name(settings, "HTTP_BATCH_AUTH_HEADER", "Authorization")
        return cls(
            settings.get("HTTP_BATCH_URL"),
            auth=(auth_header, settings.secret("HTTP_BATCH_AUTH_SECRET")),
            body_format=settings.choice("HTTP_BATCH_FORMAT", "json", FORMATS),
            idempotency_header=_header_name(
                settings, "HTTP_BATCH_IDEMPOTENCY_HEADER", "Idempotency-Key"
            ),
            errors=ErrorList.from_settings(settings),
            timeout=HttpBatchLimits.from_settings(settings).timeout_seconds,
        )

    def close(self) -> None:
        self._http.close()

    def post(
        self, records: Sequence[Mapping[str, Any]], key: str, path: str = ""
    ) -> dict[int, str]:
        """POST one batch under idempotency key `key`; the positions it refused, with why."""
        url = self.url.copy_with(path=f"{self.url.path.rstrip('/')}/{path}") if path else self.url
        body = encode_body(records, self.body_format)
        try:
            response = self._http.post(url, content=body, headers={self.idempotency_header: key})
        except httpx.TransportError as error:
            raise transport_error(error, target=TARGET, what="POST of the batch") from None
        self._raise_for_failure(response, len(records))
        return self._refused_in(response, len(records))

    def _raise_for_failure(self, response: httpx.Response, count: int) -> None:
        status = response.status_code
        if status == 409:  # the idempotency draft's "a request with this key is in progress"
            raise VendorBusy(
                f"{vendor_message(response)} (a request with the same idempotency key is still "
                "being processed: this one waits for it to finish)",
                target=TARGET, answer=answer_of(response),
            )  # fmt: skip
        if status >= 500 and status not in RETRYABLE_STATUSES | _NEVER_LATER:
            raise RetryableError(
                vendor_message(response), target=TARGET, answer=answer_of(response)
            )
        try:
            raise_for_status(response, target=TARGET, hints=self._hints)
        except RejectedError as error:
            raise self._with_reasons(error, response, count) from None
        if not response.is_success:  # a redirect (to a login page?) took nothing
            where = response.headers.get("Location", "elsewhere")
            raise FinalError(f"answered {status} and pointed to {where}: set HTTP_BATCH_URL to "
                             "the receiver itself", target=TARGET,
                             answer=answer_of(response))  # fmt: skip

    def _with_reasons(
        self, error: RejectedError, response: httpx.Response, count: int
    ) -> RejectedError:
        """A refusal of the whole request, with the receiver's per-record reasons if it lists
        them; still record-level: the core bisects until each refused record stands alone."""
        try:
            found = self.errors.find(_body(response)) if self.errors.path else None
            refused = self.errors.refusals(found or [], count)
        except UnreadableList:
            return error
        # The shared reading of an error body already quotes an `errors` list's messages.
        reasons = "; ".join(
            reason if count == 1 else f"record {position + 1} of {count}: {reason}"
            for position, reason in sorted(refused.items())
            if count > 1 or reason not in error.message
        )
        if not reasons:
            return error
        return RejectedError(f"{error.message}: {reasons}", target=TARGET, answer=error.answer)

    def _refused_in(self, response: httpx.Response, count: int) -> dict[int, str]:
        """The records a 2xx answer lists as refused (none when no list is configured)."""
        if not self.errors.path:
            return {}
        try:
            found = self.errors.find(_body(response))
            if found is None:
                raise UnreadableList(f"the answer has no {self.errors.dotted!r}")
            return self.errors.refusals(found, count)
        except UnreadableList as unreadable:
            raise FinalError(
                f"answered {response.status_code}, so the receiver may have taken these records, "
                f"but {unreadable}. Set HTTP_BATCH_ERRORS_PATH (and HTTP_BATCH_ERROR_*) to where "
                "it lists refused records, or unset it if it lists none; check the receiver "
                "before replaying, since a replay is a new job with new idempotency keys",
                target=TARGET, answer=answer_of(response),
            ) from None  # fmt: skip


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _hints(has_credential: bool) -> dict[int, str]:
    """What to do about a status, in the operator's words."""
    unauthorized = (
        "HTTP_BATCH_AUTH_SECRET was refused: set the value the receiver expects in the "
        "HTTP_BATCH_AUTH_HEADER header"
        if has_credential
        else "the receiver wants a credential: set HTTP_BATCH_AUTH_SECRET (and "
        "HTTP_BATCH_AUTH_HEADER if it is not Authorization)"
    )
    return {
        401: unauthorized,
        403: "the credential in HTTP_BATCH_AUTH_SECRET may not post here: ask the receiver's "
        "owner for the permission",
        404: "check HTTP_BATCH_URL and the job's --param path: the receiver has no such route",
        413: "the body is too large for the receiver: lower HTTP_BATCH_BYTES_PER_REQUEST",
        415: "the receiver takes another body: set HTTP_BATCH_FORMAT to json or jsonl",
    }
