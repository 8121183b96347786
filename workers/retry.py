"""The backoff policy: exponential with full jitter, bounded, honouring Retry-After.

Two levels use it. Inside a unit, a request the vendor refused *before
processing it* (429, 503, connection refused), or a read (GET) that failed at a
gateway (502, 504), is sent again in place with tenacity (workers/http.py raises
those as NotApplied). A request whose outcome is unknown (a timeout, a reset, a 502 or
504 after a POST, which the application behind the gateway may have applied)
is never resent in place: the unit goes back to the core, which reschedules it
after `unit_delay`, and its next attempt settles what the last one may have
left with the vendor before it sends anything.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar

import tenacity

from importq.errors import NotApplied

T = TypeVar("T")


def unit_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds before attempt `attempt + 1` of a unit: full jitter, at least Retry-After."""
    # tenacity's "full jitter": uniform in [0, min(cap, base * 2**attempt)].
    state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = max(1, attempt)
    jittered = tenacity.wait_random_exponential(multiplier=base, max=cap)(state)
    return max(float(jittered), retry_after or 0.0)


# A vendor asking for a longer pause than this gets the unit handed back to the core,
# which reschedules it, rather than a worker process sleeping in place.
RESEND_WAIT_CAP = 30.0


def safe_to_resend(error: BaseException) -> bool:
    """True when the failed request certainly had no effect and the pause asked is short."""
    if not isinstance(error, NotApplied):
        return False
    return error.retry_after is None or error.retry_after <= RESEND_WAIT_CAP


def _wait(base: float, cap: float) -> Callable[[tenacity.RetryCallState], float]:
    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        jitter = random.uniform(0, min(cap, base * 2 ** (state.attempt_number - 1)))
        return max(jitter, min(retry_after or 0.0, cap))

    return wait


def resend(
    call: Callable[[], T],
    *,
    attempts: int,
    base: float = 0.2,
    cap: float = RESEND_WAIT_CAP,
    when: Callable[[BaseException], bool] = safe_to_resend,
) -> T:
    """Run `call`, sending it again while `when(error)` says that is safe."""
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=_wait(base, cap),
        retry=tenacity.retry_if_exception(when),
        reraise=True,
    )
    return retrying(call)
