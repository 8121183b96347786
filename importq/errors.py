"""Every failure importq raises; its type alone says where the core routes it.

    ImportqError
    ├── InputError            bad input refused before anything is enqueued (file:line: field: why)
    ├── ConfigError           a missing or invalid setting; fix the environment and run again
    ├── RedisUnavailable      Redis does not answer, refuses the login, or REDIS_URL is no URL
    ├── UnknownJob            a job id Redis does not know (mistyped, or its state expired)
    ├── PortUnavailable       a port the metrics or Flower should listen on is taken
    ├── QueueFull             the target's queue is full and the producer may not wait: retry later
    └── TargetError           the vendor failed us: target, message and what it answered (answer)
        ├── RetryableError    may succeed later; the vendor may have applied it (outcome unknown)
        │   ├── NotApplied    certainly had no effect (503, a read's 502/504, Blue's database down)
        │   │   ├── RateLimited   429; carries the vendor's Retry-After
        │   │   └── NotConnected  no connection was made, so nothing was sent; also Unreachable
        │   ├── Unreachable   no answer at all (reset, timed out): maybe the whole target is down
        │   └── VendorBusy    not failing, waiting: another import is open, an item still processing
        └── FinalError        will fail again until someone fixes something
            ├── AuthError     401/403: credentials or permissions
            ├── NotFoundError 404: unknown agent, queue item, datasource...
            └── RejectedError 400 or a failed unit: the vendor refused the data, maybe one record

`VendorAnswer` is what the vendor answered (HTTP status, its code, its words, Retry-After);
an error raised without an answer (a timeout, importq's own check) has `answer=None`.
A target may subclass these for its own except clauses (Blue's BlueBusy, Blueshift's
ImportNotTriggerable); the core routes them by the class they extend.

Where each type goes (workers/retry.py, workers/routing.py, workers/breaker.py):

    NotApplied                  resent in place inside the unit (a short Retry-After only), then
                                as any RetryableError
    RetryableError              the unit is retried with backoff and uses an attempt; dead-lettered
                                once the attempts are used up
    VendorBusy                  the unit waits without using an attempt (IMPORTQ_MAX_WAIT_SECONDS)
    RejectedError               a unit of several records of a splittable sink is bisected to
                                isolate the record; otherwise dead-lettered
    FinalError                  dead-lettered with the vendor's reason
    Unreachable, a 5xx answer,  count toward pausing the target (breaker.target_wide); AuthError
    AuthError, ConfigError      and ConfigError pause it at once

What stops a running unit without being a failure (a lost lease, a worker shutting
down) is a control signal, outside this tree: see workers/signals.py.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VendorAnswer:
    """What the vendor answered, when it answered at all (a timeout has no VendorAnswer)."""

    status: int | None = None  # HTTP status; None for a refusal inside a 200 (Blue's Message)
    code: str | None = None  # the vendor's own error code, or a SOAP fault's code
    said: str = ""  # the vendor's own words, without importq's hint
    retry_after: float | None = None  # the vendor's Retry-After, in seconds


class ImportqError(Exception):
    """Root of every importq error."""


class InputError(ImportqError):
    """Producer input refused before anything was enqueued."""

    def __init__(self, message: str, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class ConfigError(ImportqError):
    """A setting is missing or invalid."""


class RedisUnavailable(ImportqError):
    """The chosen Redis cannot be used: it does not answer, or REDIS_URL cannot be read."""


class QueueFull(ImportqError):
    """The target's queue holds IMPORTQ_MAX_QUEUED_UNITS units and the producer may not wait
    (the API answers 429): nothing was staged, so the same publish succeeds later."""


class UnknownJob(ImportqError):
    """No job has this id: it was mistyped, or its state expired (IMPORTQ_JOB_TTL)."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job {job_id}: mistyped, or its state expired (see `importq jobs`)")


class PortUnavailable(ImportqError):
    """A port importq should listen on is taken (or the address is not this machine's)."""


class TargetError(ImportqError):
    """The target API failed; the message is the vendor's own, plus what to do."""

    def __init__(self, message: str, *, target: str, answer: VendorAnswer | None = None) -> None:
        self.target = target
        self.answer = answer
        self.message = message
        status = self.status
        prefix = f"{target}: HTTP {status}: " if status else f"{target}: "
        super().__init__(prefix + message)

    @property
    def status(self) -> int | None:
        """The HTTP status the vendor answered, if it answered over HTTP."""
        return self.answer.status if self.answer else None

    @property
    def vendor_code(self) -> str | None:
        return self.answer.code if self.answer else None


class RetryableError(TargetError):
    """The same request may succeed later; the vendor may have applied it already."""

    def __init__(
        self,
        message: str,
        *,
        target: str,
        answer: VendorAnswer | None = None,
        retry_after: float | None = None,
    ) -> None:
        # importq's own wait (a busy import, a 405 retried) overrides the vendor's Retry-After.
        self.retry_after = retry_after if retry_after is not None else _vendor_wait(answer)
        super().__init__(message, target=target, answer=answer)


class NotApplied(RetryableError):
    """The vendor certainly did not apply the request (it refused it before processing, or it
    only read), so the same request may be sent again in place."""


class RateLimited(NotApplied):
    """429: wait at least Retry-After seconds."""


class Unreachable(RetryableError):
    """The vendor could not be reached or did not answer; the outcome may be unknown."""


class NotConnected(Unreachable, NotApplied):
    """The connection was refused or could not be made: the request never left."""


class VendorBusy(RetryableError):
    """Waiting, not failing: someone else's import is open, an item is still processing.
    Such waits do not use up the unit's attempts."""


class FinalError(TargetError):
    """Retrying will not help until the data or the configuration changes."""


class AuthError(FinalError):
    """401/403: the credentials are missing, wrong, or lack a permission."""


class NotFoundError(FinalError):
    """404: an id in the configuration or in the request does not exist."""


class RejectedError(FinalError):
    """The vendor refused the data; one record may be the cause, so the core bisects."""


def _vendor_wait(answer: VendorAnswer | None) -> float | None:
    return answer.retry_after if answer else None
