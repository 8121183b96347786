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
    NotFoundError,
    RateLimited,
    RejectedError,
    RetryableError,
    Unreachable,
)

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Answered by gateways before the application saw the request: resending is safe.
NOT_APPLIED_STATUSES = frozenset({429, 502, 503})


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


def raise_for_status(
    response: httpx.Response, *, target: str, hints: Mapping[int, str] | None = None
) -> None:
    """Raise the matching importq error for a non-2xx response; `hints` say what to do."""
    status = response.status_code
    if status < 400:
        return
    message = vendor_message(response)
    hint = (hints or {}).get(status)
    if hint:
        message = f"{message} ({hint})"
    if status in RETRYABLE_STATUSES:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        cls = RateLimited if status == 429 else RetryableError
        raise cls(message, retry_after=retry_after, resendable=status in NOT_APPLIED_STATUSES,
                  target=target, status=status)  # fmt: skip
    if status in (401, 403):
        raise AuthError(message, target=target, status=status)
    if status == 404:
        raise NotFoundError(message, target=target, status=status)
    if status in (400, 409, 413, 422):
        raise RejectedError(message, target=target, status=status)
    raise FinalError(message, target=target, status=status)


def transport_error(error: httpx.TransportError, *, target: str, what: str) -> Unreachable:
    """A network failure; only a refused connection certainly sent nothing."""
    if isinstance(error, httpx.TimeoutException):
        reason = f"{what} timed out ({type(error).__name__}); the outcome is unknown"
    else:
        reason = f"{what} failed: {type(error).__name__}: {error}"
    resendable = isinstance(error, httpx.ConnectError)
    return Unreachable(reason, target=target, resendable=resendable)
