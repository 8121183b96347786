"""Every failure importq raises, and whether waiting can fix it.

    ImportqError
    ├── InputError            bad input refused before anything is enqueued (file:line: field: why)
    ├── ConfigError           a missing or invalid setting; fix the environment and run again
    └── TargetError           the vendor answered badly (keeps target, status, vendor message)
        ├── RetryableError    may succeed later: timeouts, connection errors, 429, 502/503/504
        │   ├── RateLimited   429; carries the vendor's Retry-After
        │   └── Unreachable   no answer at all (refused, reset, timed out): maybe the whole target
        └── FinalError        will fail again until someone fixes something
            ├── AuthError     401/403: credentials or permissions
            ├── NotFoundError 404: unknown agent, queue item, datasource...
            └── RejectedError 400 or a failed unit: the vendor refused the data itself

`FinalError.record_level` says the refusal may be caused by one record in the
unit, so the core bisects the unit to isolate it instead of failing it whole.

What stops a running unit without being a failure (a lost lease, a worker shutting
down) is a control signal, outside this tree: see workers/signals.py.
"""

from __future__ import annotations


class ImportqError(Exception):
    """Root of every importq error."""

    retryable = False


class InputError(ImportqError):
    """Producer input refused before anything was enqueued."""

    def __init__(self, message: str, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class ConfigError(ImportqError):
    """A setting is missing or invalid."""


class TargetError(ImportqError):
    """The target API failed; the message is the vendor's own, plus what to do."""

    def __init__(
        self,
        message: str,
        *,
        target: str,
        status: int | None = None,
        vendor_code: str | None = None,
    ) -> None:
        self.target = target
        self.status = status
        self.vendor_code = vendor_code
        self.message = message
        prefix = f"{target}: HTTP {status}: " if status else f"{target}: "
        super().__init__(prefix + message)


class RetryableError(TargetError):
    """The same request may succeed later."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        resendable: bool = False,
        counts_attempt: bool = True,
        **kw: object,
    ) -> None:
        # resendable: the vendor certainly did not apply the request (429, 502, 503, refused
        # connection), so the same request may be sent again in place.
        # counts_attempt False: waiting, not failing (someone else's import is open, an item
        # is still processing); such waits do not use up the unit's attempts.
        self.retry_after = retry_after
        self.resendable = resendable
        self.counts_attempt = counts_attempt
        super().__init__(message, **kw)  # type: ignore[arg-type]


class RateLimited(RetryableError):
    """429: wait at least Retry-After seconds."""


class Unreachable(RetryableError):
    """The vendor could not be reached or did not answer; the outcome may be unknown."""


class FinalError(TargetError):
    """Retrying will not help until the data or the configuration changes."""

    record_level = False


class AuthError(FinalError):
    """401/403: the credentials are missing, wrong, or lack a permission."""


class NotFoundError(FinalError):
    """404: an id in the configuration or in the request does not exist."""


class RejectedError(FinalError):
    """The vendor refused the data; one record may be the cause."""

    record_level = True
