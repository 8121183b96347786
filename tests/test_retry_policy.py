"""The backoff policy: unit-level delays and in-place resends honouring Retry-After."""

from __future__ import annotations

import itertools
import random
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
import tenacity

from importq.errors import (
    AuthError,
    NotApplied,
    NotConnected,
    RateLimited,
    RejectedError,
    RetryableError,
    VendorAnswer,
)
from workers.retry import resend, safe_to_resend, unit_delay

SAMPLES = 2000


@pytest.fixture(autouse=True)
def seeded_random() -> Iterator[None]:
    """Jitter draws from the module-level generator: seed it, then put it back."""
    state = random.getstate()
    random.seed(20240611)
    yield
    random.setstate(state)


class RecordingRetrying(tenacity.Retrying):
    """tenacity.Retrying that records the waits it computes instead of sleeping them."""

    made: ClassVar[list[RecordingRetrying]] = []

    def __init__(self, **kw: Any) -> None:
        self.waits: list[float] = []
        kw.setdefault("sleep", self.waits.append)
        super().__init__(**kw)
        RecordingRetrying.made.append(self)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Callable[[], RecordingRetrying]:
    """The Retrying that the last resend() built: its waits and tenacity's statistics."""
    RecordingRetrying.made.clear()
    monkeypatch.setattr(tenacity, "Retrying", RecordingRetrying)

    def last() -> RecordingRetrying:
        assert RecordingRetrying.made, "resend() built no tenacity.Retrying"
        return RecordingRetrying.made[-1]

    return last


class Flaky:
    """A request that raises the given errors in turn, then answers `result`."""

    def __init__(self, *errors: BaseException, result: str = "ok") -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


def unavailable(retry_after: float | None = None) -> NotApplied:
    answer = VendorAnswer(status=503, retry_after=retry_after)
    return NotApplied("Service Unavailable", target="t", answer=answer)


# --- unit_delay --------------------------------------------------------------------------------


def test_unit_delay_never_exceeds_the_cap() -> None:
    for attempt in range(0, 30, 3):
        delays = [unit_delay(attempt, base=1.0, cap=20.0) for _ in range(300)]
        assert min(delays) >= 0.0
        assert max(delays) <= 20.0


def test_unit_delay_is_at_least_retry_after() -> None:
    for attempt in (0, 1, 5, 12):
        delays = [unit_delay(attempt, base=1.0, cap=60.0, retry_after=7.5) for _ in range(300)]
        assert min(delays) >= 7.5
        assert max(delays) <= 60.0


def test_unit_delay_grows_in_expectation_until_the_cap() -> None:
    means = [
        statistics.fmean(unit_delay(attempt, base=1.0, cap=300.0) for _ in range(SAMPLES))
        for attempt in (0, 2, 4, 6)
    ]
    for lower, higher in itertools.pairwise(means):
        assert higher > 1.5 * lower  # up to 4x per two attempts in theory
    capped = statistics.fmean(unit_delay(20, base=1.0, cap=300.0) for _ in range(SAMPLES))
    assert 120 < capped < 180  # full jitter over [0, cap]: mean about cap / 2


def test_unit_delay_is_jittered_over_the_whole_window() -> None:
    delays = [unit_delay(5, base=1.0, cap=300.0) for _ in range(SAMPLES)]  # window 16 or 32 s
    assert min(delays) < 1
    assert max(delays) > 14
    assert len(set(delays)) > SAMPLES // 2  # continuous, not whole seconds


def test_unit_delay_accepts_fractional_base_and_cap() -> None:
    # The tests' own IMPORTQ_BACKOFF_BASE/MAX; celery's integer backoff once raised on these.
    delays = [unit_delay(attempt, base=0.05, cap=0.5) for attempt in range(12) for _ in range(50)]
    assert all(0.0 <= d <= 0.5 for d in delays)
    assert max(delays) > 0.4


# --- resend ------------------------------------------------------------------------------------


def test_not_applied_error_is_resent_until_it_succeeds(
    recorded: Callable[[], RecordingRetrying],
) -> None:
    call = Flaky(unavailable(), unavailable())
    assert resend(call, attempts=5, base=0.001, cap=0.01) == "ok"
    assert call.calls == 3
    assert len(recorded().waits) == 2
    assert recorded().statistics["attempt_number"] == 3


def test_not_applied_error_is_reraised_after_the_last_attempt(
    recorded: Callable[[], RecordingRetrying],
) -> None:
    errors = [unavailable() for _ in range(4)]
    call = Flaky(*errors)
    with pytest.raises(RetryableError) as caught:
        resend(call, attempts=3, base=0.001, cap=0.01)
    assert caught.value is errors[2]  # the error itself, not tenacity.RetryError
    assert call.calls == 3
    assert len(recorded().waits) == 2


def test_refused_connection_without_status_is_resent() -> None:
    refused = NotConnected("connect failed", target="t")
    call = Flaky(refused)
    assert resend(call, attempts=2, base=0.001, cap=0.001) == "ok"
    assert call.calls == 2


@pytest.mark.parametrize(
    "error",
    [
        RetryableError("read timed out; the outcome is unknown", target="t"),
        RetryableError("Gateway Timeout", target="t", answer=VendorAnswer(status=504)),
        RejectedError("Invalid record", target="t", answer=VendorAnswer(status=400)),
        AuthError("Unauthorized", target="t", answer=VendorAnswer(status=401)),
    ],
)
def test_request_that_may_have_been_applied_is_not_resent(
    error: Exception, recorded: Callable[[], RecordingRetrying]
) -> None:
    call = Flaky(error)
    with pytest.raises(type(error)) as caught:
        resend(call, attempts=5, base=0.001, cap=0.01)
    assert caught.value is error
    assert call.calls == 1
    assert recorded().waits == []


def test_plain_exception_is_not_resent() -> None:
    call = Flaky(KeyError("bug"))
    with pytest.raises(KeyError):
        resend(call, attempts=5, base=0.001, cap=0.01)
    assert call.calls == 1


def test_resend_waits_at_least_retry_after(recorded: Callable[[], RecordingRetrying]) -> None:
    limited = [
        RateLimited(
            "Too Many Requests", target="t", answer=VendorAnswer(status=429, retry_after=0.4)
        )
        for _ in range(3)
    ]
    assert resend(Flaky(*limited), attempts=5, base=0.001, cap=5.0) == "ok"
    waits = recorded().waits
    assert len(waits) == 3
    assert all(w >= 0.4 for w in waits)
    assert all(w < 0.41 for w in waits)  # jitter of base 0.001 adds next to nothing
    assert recorded().statistics["idle_for"] == pytest.approx(sum(waits))


def test_resend_caps_the_wait_at_the_cap(recorded: Callable[[], RecordingRetrying]) -> None:
    call = Flaky(unavailable(retry_after=20), unavailable(retry_after=20))
    assert resend(call, attempts=3, base=0.001, cap=0.05) == "ok"
    assert recorded().waits == [0.05, 0.05]


def test_a_long_retry_after_goes_back_to_the_core_instead_of_sleeping_in_place() -> None:
    error = unavailable(retry_after=3600)
    call = Flaky(error)
    with pytest.raises(RetryableError) as raised:
        resend(call, attempts=3)
    assert raised.value is error and raised.value.retry_after == 3600
    assert call.calls == 1


def test_resend_backoff_is_jittered_exponential_and_bounded(
    recorded: Callable[[], RecordingRetrying],
) -> None:
    for _ in range(50):
        call = Flaky(*[unavailable() for _ in range(7)])
        resend(call, attempts=8, base=0.01, cap=0.2)
        waits = recorded().waits
        assert len(waits) == 7
        for number, wait in enumerate(waits):
            assert 0.0 <= wait <= min(0.2, 0.01 * 2**number)
    all_waits = [w for r in RecordingRetrying.made for w in r.waits]
    assert len(set(all_waits)) > 300  # jittered, not a fixed schedule
    late = [r.waits[6] for r in RecordingRetrying.made]
    early = [r.waits[0] for r in RecordingRetrying.made]
    assert statistics.fmean(late) > 5 * statistics.fmean(early)


def test_resend_really_sleeps_retry_after() -> None:
    call = Flaky(unavailable(retry_after=0.05))
    started = time.monotonic()
    assert resend(call, attempts=2, base=0.001, cap=1.0) == "ok"
    assert time.monotonic() - started >= 0.05
    assert call.calls == 2


def test_custom_predicate_decides_what_is_resent() -> None:
    call = Flaky(RetryableError("timeout", target="t"))
    assert resend(call, attempts=2, base=0.001, cap=0.001, when=lambda e: True) == "ok"
    assert call.calls == 2


def test_safe_to_resend_only_for_errors_the_vendor_did_not_apply() -> None:
    assert safe_to_resend(unavailable())
    assert not safe_to_resend(RetryableError("timeout", target="t"))
    assert not safe_to_resend(RejectedError("bad", target="t"))
    assert not safe_to_resend(ConnectionError("raw socket error"))
