"""Turn httpx responses and transport failures into importq's error tree.

Shared by the REST targets: each passes its own name and what to tell the
operator for 401/403/404, and the vendor's message is kept verbatim.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import httpx

from importq.errors import (
    AuthError,
    FinalError,
    NotApplied,
    NotConnected,
    NotFoundError,
    RateLimited,
    RejectedError,
    RetryableError,
    TargetError,
    Unreachable,
    VendorAnswer,
)

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Refusals that say the request was not processed: sending it again is safe whatever it does.
NOT_APPLIED_STATUSES = frozenset({429, 503})
# A gateway's 502 or 504 may come after the application behind it processed the request
# (retries-outages-ha.md: an unknown outcome), so only a read may be sent again in place.
GATEWAY_STATUSES = frozenset({502, 504})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Client errors that are final whatever the request: the rest of 4xx is a FinalError.
FINAL_CLASSES: dict[int, type[FinalError]] = {
    401: AuthError, 403: AuthError, 404: NotFoundError,
    400: RejectedError, 409: RejectedError, 413: RejectedError, 422: RejectedError,
}  # fmt: skip


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def vendor_message(response: httpx.Response) -> str:
    """The vendor's own words from an error body (JSON title/detail/message, or text)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict):
        parts = [
            str(body[k]) for k in ("title", "detail", "message", "errorMessage") if body.get(k)
        ]
        errors = body.get("errors")
        if isinstance(errors, list):
            parts += [_error_text(e) for e in errors]
        elif errors:
            parts.append(str(errors))
        if parts:
            return "; ".join(parts)[:1000]
    return str(body)[:1000]


def _error_text(error: object) -> str:
    """One entry of a vendor's `errors` list: its detail or message, else the whole entry."""
    if isinstance(error, dict):
        for key in ("detail", "message", "title"):
            if error.get(key):
                return str(error[key])
    return str(error)


def is_read(response: httpx.Response) -> bool:
    """True when the answered request only read (GET, HEAD, OPTIONS); unknown: False."""
    try:
        method = response.request.method
    except RuntimeError:  # a Response built by hand carries no request
        return False
    return method.upper() in READ_METHODS


def had_no_effect(response: httpx.Response) -> bool:
    """True when the same request may go again in place: the vendor certainly did not apply
    it (429, 503), or it only read. A 502/504 after a POST (a Workflow batch, a Blueshift
    trigger, a SourcingData start) is an unknown outcome, like a timeout: never resent."""
    status = response.status_code
    return status in NOT_APPLIED_STATUSES or (status in GATEWAY_STATUSES and is_read(response))


def answer_of(response: httpx.Response) -> VendorAnswer:
    """What an HTTP vendor answered: its status, its own words and its Retry-After."""
    return VendorAnswer(
        status=response.status_code,
        said=vendor_message(response),
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )


def error_class(response: httpx.Response) -> type[TargetError]:
    """The importq error type a non-2xx response maps to."""
    status = response.status_code
    if status == 429:
        return RateLimited
    if status in RETRYABLE_STATUSES:
        return NotApplied if had_no_effect(response) else RetryableError
    return FINAL_CLASSES.get(status, FinalError)


def raise_for_status(
    response: httpx.Response, *, target: str, hints: Mapping[int, str] | None = None
) -> None:
    """Raise the matching importq error for a non-2xx response; `hints` say what to do."""
    status = response.status_code
    if status < 400:
        return
    answer = answer_of(response)
    hint = (hints or {}).get(status)
    message = f"{answer.said} ({hint})" if hint else answer.said
    raise error_class(response)(message, target=target, answer=answer)


def transport_error(error: httpx.TransportError, *, target: str, what: str) -> Unreachable:
    """A network failure; only a connection never made certainly sent nothing."""
    if isinstance(error, httpx.TimeoutException):
        reason = f"{what} timed out ({type(error).__name__}); the outcome is unknown"
    else:
        reason = f"{what} failed: {type(error).__name__}: {error}"
    cls = NotConnected if isinstance(error, httpx.ConnectError) else Unreachable
    return cls(reason, target=target)
