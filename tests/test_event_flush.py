"""Task events leave the worker after the unit's message reached a pool process, not before."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workers.celery_consumer import EVENT_FLUSH_DELAY, Consumer


class Hub:
    """The event loop's scheduling calls, kept instead of run."""

    def __init__(self) -> None:
        self.soon: list[Callable[..., Any]] = []
        self.later: list[tuple[float, Callable[..., Any]]] = []

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        self.soon.append(callback)

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Entry:
        self.later.append((delay, callback))
        return Entry()


class Entry:
    """A scheduled call, as kombu's timer hands it back."""

    canceled = False


def _consumer(hub: Hub, flushed: list[int]) -> Any:
    consumer: Any = Consumer.__new__(Consumer)  # the loop's hooks only: no broker needed
    consumer.hub = hub
    consumer._flush_events = lambda: flushed.append(1)
    return consumer


def test_buffered_task_events_are_published_a_moment_later_in_one_flush() -> None:
    hub, flushed = Hub(), []
    consumer = _consumer(hub, flushed)
    consumer.on_send_event_buffered()  # task-received: the unit's message is not written yet
    consumer.on_send_event_buffered()  # another event before the flush: the same flush
    # Not at the loop's next turn, where the flush (a Redis round trip) came before the
    # write of the message to a pool process, on every unit's way to its claim.
    assert hub.soon == []
    assert [delay for delay, _ in hub.later] == [EVENT_FLUSH_DELAY] and EVENT_FLUSH_DELAY > 0
    hub.later[0][1]()
    assert flushed == [1]
    consumer.on_send_event_buffered()  # the next event gets a flush of its own
    assert len(hub.later) == 2


def test_a_flush_the_loop_cancelled_is_scheduled_again() -> None:
    # Celery cancels the loop's timers after a lost connection: a flush that never runs
    # must not leave the events waiting until the buffer fills.
    hub, flushed = Hub(), []
    consumer = _consumer(hub, flushed)
    consumer.on_send_event_buffered()
    consumer._events_flush.canceled = True  # dropped with the loop's timers
    consumer.on_send_event_buffered()
    assert len(hub.later) == 2
    hub.later[1][1]()
    assert flushed == [1]
